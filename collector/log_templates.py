"""Log templates: group log bodies that come from the same print statement, at ingest.

``"Connection from 10.0.0.1 port 22"`` and ``"Connection from 10.0.0.7 port 2201"`` are one
*template*, ``Connection from <IP> port <NUM>``: the constant words of the message with its variable
parts replaced by placeholders. Each log record is stored with its template id and template so that
logs can be counted, compared and alerted on by kind of message rather than by exact text.

Templates are mined online with Drain (drain3). A body is first *masked*: regular expressions
replace well-known kinds of variable by named placeholders. It is then split on whitespace and
looked up in Drain's prefix tree, by token count and then by its first two tokens. Among the
clusters found there, the one with the largest share of equal tokens takes the body if that share
reaches the similarity threshold; otherwise the body starts a new cluster. Joining a cluster may
*generalise* the cluster's template: tokens that differ become ``<*>``.

Placeholders in templates:

- named masks, applied before Drain and so the same whatever came before: ``<URL>``, ``<EMAIL>``,
  ``<UUID>``, ``<MAC>``, ``<TIME>`` (dates, times, timestamps), ``<HOST>`` (host names of three
  labels or more), ``<IP>`` (IPv4 or IPv6, with or without a port), ``<HEX>`` (``0x1f``, and bare
  words of 8+ hex digits), ``<PATH>``, ``<ID>`` (words and numbers joined by underscores:
  ``blk_-123``, ``job_1445_0020``), ``<NUM>`` (integers and decimals standing alone or glued to a
  unit: ``15ms`` is ``<NUM>ms``; not inside words: ``ext4`` stays). A list of one kind (``<ID> <ID>
  <ID>``) becomes one placeholder, so that lists of any length are one template;
- ``<*>``, Drain's own: a token that differed between bodies of the cluster.

A template id names a cluster by the template it started with (a 63-bit hash of the first masked
body that formed it): it never changes for a cluster, even when the cluster's template generalises,
and clusters never merge, so the id assigned to a body is final. Because it depends on content and
not on arrival order, miners in different collector processes, or a miner restored from an older
snapshot, give the same id to a message shape they each start a cluster for. Id 0 is reserved for
empty (blank) bodies. One configuration serves every log source; its grouping accuracy on Loghub
is measured by ``tests/bench/loghub.py``.

`LogTemplateMiner` is not thread-safe: one owner mines, in arrival order.

>>> miner = LogTemplateMiner()
>>> miner.mine("Connection from 10.0.0.1 port 22 after 15ms").template
'Connection from <IP> port <NUM> after <NUM>ms'
>>> miner.mine("Disk /dev/sda1 is full")
MinedTemplate(template_id=8048039285100846793, template='Disk <PATH> is full')
>>> miner.mine("Disk /dev/sdb2 is failing")
MinedTemplate(template_id=8048039285100846793, template='Disk <PATH> is <*>')
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drain3 import TemplateMiner
from drain3.drain import LogCluster, Node
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

__all__ = [
    "DIGIT_SHAPE",
    "EMPTY_TEMPLATE_ID",
    "MAX_BODY_CHARS",
    "LogTemplateMiner",
    "MinedTemplate",
    "template_id_of",
]

EMPTY_TEMPLATE_ID = 0

# Masking and Drain cost grow with the body's length while a template is decided by its first
# words; a multi-megabyte body (a dumped payload, a stack of traces) would stall ingest.
MAX_BODY_CHARS = 4096

# Bodies repeat heavily, and most differ from one seen before only in the values of their numbers
# ("order 17 took 35 ms", "order 18 took 210 ms"). A body of a known *shape* (the same text with
# every digit 1-9 read as 1: lengths and zeros kept, which is all the masks look at) skips masking
# and the tree and takes the cluster its shape was first given, with that cluster's current template.
_BODY_CACHE_SIZE = 4096
DIGIT_SHAPE = "[2-9]"  # as a regular expression, for vectorised shapes (replaced by "1")
_DIGIT_SHAPE = str.maketrans("23456789", "11111111")

# A variable part is a whole alphanumeric run: "core.114" masks 114, "workers2" masks nothing.
_B = r"(?<![A-Za-z0-9])"
_E = r"(?![A-Za-z0-9])"
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
_ZONE = r"(?:\s?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?"
# Units glued to a number stay as text: "15ms" is "<NUM>ms", "64MB" is "<NUM>MB".
_UNIT = r"(?:[nuµm]?s|min|[hd]|[kKMGTP]i?[Bb]?|[Bb]|%)?"

# (pattern, mask name, substrings one of which a match must contain; none: always try).
# Applied in order, the specific before the general: a URL's digits must not become <NUM> first.
_MASKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+", "URL", ("://",)),
    (rf"{_B}[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+{_E}", "EMAIL", ("@",)),
    (rf"{_B}[0-9A-Fa-f]{{8}}(?:-[0-9A-Fa-f]{{4}}){{3}}-[0-9A-Fa-f]{{12}}{_E}", "UUID", ("-",)),
    (rf"{_B}[0-9A-Fa-f]{{2}}(?:([:-])[0-9A-Fa-f]{{2}})(?:\1[0-9A-Fa-f]{{2}}){{4}}{_E}", "MAC", (":", "-")),
    # Dates and times before addresses: 02:38:22 would otherwise read as an IPv6 address.
    (rf"{_B}\d{{4}}-\d{{2}}-\d{{2}}(?:[T ]{_CLOCK}{_ZONE})?{_E}", "TIME", ("-",)),
    (rf"{_B}(?:{_DAY},?\s+)?{_MONTH}\s+\d{{1,2}},?\s+{_CLOCK}(?:\s+\d{{4}})?{_E}", "TIME", (":",)),
    (rf"{_B}\d{{1,2}}/{_MONTH}/\d{{4}}(?::{_CLOCK}{_ZONE})?{_E}", "TIME", ("/",)),
    (rf"{_B}\d{{4}}/\d{{2}}/\d{{2}}{_E}", "TIME", ("/",)),
    # Not after a dot: in 10.0.0.1:80 the 1:80 is the end of an address.
    (rf"(?<![\w:.]){_CLOCK}{_ZONE}(?![\w:])", "TIME", (":",)),
    # Host names: three labels or more ending in a lowercase word, so that class names
    # (org.example.Main) stay; before IP, as a name may start with the address it was made from.
    (
        r"(?<![\w.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.){2,}[a-z]{2,24}(?::\d{1,5})?(?![\w.-])",
        "HOST",
        (".",),
    ),
    # IPv4 with an optional port; the slash of Java's InetSocketAddress ("/10.0.0.1:80") too.
    (rf"/?{_B}(?:\d{{1,3}}\.){{3}}\d{{1,3}}(?::\d{{1,5}})?{_E}", "IP", (".",)),
    # IPv6: bracketed with a port, full, or compressed ("::1"; a bare "::" is not an address).
    (
        rf"\[(?:{_HEX4})?(?::(?:{_HEX4})?){{2,7}}(?:%\w+)?\](?::\d{{1,5}})?"
        rf"|(?<![\w:])(?=[0-9A-Fa-f:]*[0-9A-Fa-f])"
        rf"(?:{_HEX4}(?::{_HEX4}){{7}}|(?:{_HEX4}(?::{_HEX4}){{0,6}})?::(?:{_HEX4}(?::{_HEX4}){{0,6}})?)"
        r"(?:%\w+)?(?![\w:])",
        "IP",
        (":",),
    ),
    (rf"{_B}0[xX][0-9A-Fa-f]+{_E}", "HEX", ("0x", "0X")),
    # Bare hex: 8+ digits with a letter or a leading zero (fixed-width words such as 0010a2fc and
    # 00106210 are one kind); words without a digit and plain numbers stay as they are.
    (rf"{_B}(?=[0-9A-Fa-f]*\d)(?=[0-9A-Fa-f]*[A-Fa-f]|0)[0-9A-Fa-f]{{8,}}{_E}", "HEX", ()),
    (r"(?<![\w.:/~-])(?:/[\w.@%+=~:-]+)+/?|(?<![\w.])[A-Za-z]:\\[^\s\"']*", "PATH", ("/", "\\")),
    # Words and numbers joined by underscores: blk_-123, broadcast_9_piece0, attempt_16_0020_m_000001_0.
    (r"(?<![\w-])[A-Za-z]+(?:_-?[A-Za-z0-9]+)*_-?\d+(?:_[A-Za-z0-9]+)*(?![\w-])", "ID", ("_",)),
    (rf"{_B}[-+]?\d+(?:\.\d+)*(?={_UNIT}{_E})", "NUM", ()),
)

# Drain, tuned on Loghub (tests/bench/loghub.py) for one configuration across sources. The masks
# make most variable tokens equal, so what still differs is mostly words that tell messages apart:
# a body joins a template when at least 3 tokens in 4 are equal (drain3 counts a template's <*> as
# unequal). Any value from 0.72 to 0.75 scores the same (0.955); 0.78-0.80 scores 0.984 only because
# of how one Linux sample happens to mix host names and user names, and 0.82 and above splits
# "Invalid user <name> from <IP>" by name.
_SIM_TH = 0.74
# The prefix tree keys on the token count and the first two tokens ("Failed password ..." and
# "Failed none ..." are different events); with masks these are rarely variable.
_DEPTH = 5
_MAX_CHILDREN = 100
# Bounds memory when a source logs free text that never repeats; the least recently used go first.
_MAX_CLUSTERS = 50_000
# Splitting on "=", ",", ":" or "_" as well as whitespace did not help, or hurt, on Loghub.
_EXTRA_DELIMITERS: tuple[str, ...] = ()
# Tokens with a digit that survive masking (MSRA-SA-41, x86) take the tree's wildcard branch.
_PARAMETRIZE_NUMERIC_TOKENS = True

_SNAPSHOT_VERSION = 2


@dataclass(frozen=True, slots=True)
class MinedTemplate:
    template_id: int
    template: str


_EMPTY = MinedTemplate(EMPTY_TEMPLATE_ID, "")


def template_id_of(first_template: str) -> int:
    """The id of a cluster that started as `first_template`: 63 bits, so it fits signed and unsigned columns."""
    digest = hashlib.blake2b(first_template.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


class _Mask(MaskingInstruction):  # type: ignore[misc]
    """A drain3 masking instruction that skips the regex when the body lacks every hint: most do."""

    def __init__(self, pattern: str, mask_with: str, hints: tuple[str, ...]) -> None:
        super().__init__(pattern, mask_with)
        self.hints = hints

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        if self.hints and not any(hint in content for hint in self.hints):
            return content
        return str(self.regex.sub(mask_prefix + self.mask_with + mask_suffix, content))


class _CollapseLists(_Mask):
    """A list of values of one kind is one value, whatever its length: "delete blk_1 blk_2 blk_3"."""

    def __init__(self, names: Sequence[str]) -> None:
        alternatives = "|".join(dict.fromkeys(names))
        super().__init__(rf"<({alternatives})>(?:,? <\1>)+(?![\w%])", "*", ("> <", ">, <"))

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        if not any(hint in content for hint in self.hints):
            return content
        return str(self.regex.sub(mask_prefix + r"\1" + mask_suffix, content))


def _config() -> Any:
    config = TemplateMinerConfig()
    masks = [_Mask(pattern, name, hints) for pattern, name, hints in _MASKS]
    config.masking_instructions = [*masks, _CollapseLists([name for _, name, _ in _MASKS])]
    config.mask_prefix = "<"
    config.mask_suffix = ">"
    config.drain_sim_th = _SIM_TH
    config.drain_depth = _DEPTH
    config.drain_max_children = _MAX_CHILDREN
    config.drain_max_clusters = _MAX_CLUSTERS
    config.drain_extra_delimiters = list(_EXTRA_DELIMITERS)
    config.parametrize_numeric_tokens = _PARAMETRIZE_NUMERIC_TOKENS
    return config


class LogTemplateMiner:
    """Assigns each log body a template id and template; see the module docstring."""

    def __init__(self) -> None:
        # Passing a config keeps drain3 from reading drain3.ini from the working directory.
        self._miner: Any = TemplateMiner(config=_config())
        self._drain: Any = self._miner.drain
        self._mask = self._miner.masker.mask
        # Drain's cluster id (arrival order, local to this miner) -> the template id (content-derived).
        self._template_ids: dict[int, int] = {}
        self._body_to_id: dict[str, int] = {}

    def mine(self, body: str, count: int = 1) -> MinedTemplate:
        """The template of `body`, learning from it (`count` times: a batch's bodies of one shape
        are mined once). Bodies over `MAX_BODY_CHARS` are mined truncated."""
        if len(body) > MAX_BODY_CHARS:
            body = body[:MAX_BODY_CHARS]
        if not body or body.isspace():
            return _EMPTY
        shape = body.translate(_DIGIT_SHAPE)
        cluster_id = self._body_to_id.pop(shape, None)
        if cluster_id is not None:
            # Reading through the cluster cache marks the cluster as recently used, as Drain would.
            cluster = self._drain.id_to_cluster[cluster_id]
            if cluster is not None:
                cluster.size += count
                self._body_to_id[shape] = cluster_id
                return MinedTemplate(self._template_ids[cluster_id], cluster.get_template())
        cluster, change = self._drain.add_log_message(self._mask(body))
        cluster.size += count - 1
        template = cluster.get_template()
        if change == "cluster_created" or cluster.cluster_id not in self._template_ids:
            self._template_ids[cluster.cluster_id] = template_id_of(template)
        if len(self._template_ids) > 2 * len(self._drain.id_to_cluster) + 1024:
            self._forget_evicted()
        if len(self._body_to_id) >= _BODY_CACHE_SIZE:
            del self._body_to_id[next(iter(self._body_to_id))]
        self._body_to_id[shape] = cluster.cluster_id
        return MinedTemplate(self._template_ids[cluster.cluster_id], template)

    def _forget_evicted(self) -> None:
        # Drain evicts least recently used clusters past its bound; their ids go with them.
        live = self._drain.id_to_cluster
        self._template_ids = {cid: tid for cid, tid in self._template_ids.items() if cid in live}

    def mine_many(self, bodies: Sequence[str]) -> list[MinedTemplate]:
        """`mine` each body in order."""
        mine = self.mine
        return [mine(body) for body in bodies]

    @property
    def template_count(self) -> int:
        """How many templates (clusters) are known."""
        return len(self._drain.id_to_cluster)

    def snapshot(self) -> bytes:
        """The learned state, for `restore`: plain JSON (nothing executable), compressed.

        The masks are configuration, not state: restore with the same version of this module.
        """
        drain = self._drain
        clusters = [
            [c.cluster_id, list(c.log_template_tokens), c.size, self._template_ids[c.cluster_id]]
            for c in drain.id_to_cluster.values()
        ]
        state = {
            "version": _SNAPSHOT_VERSION,
            "clusters_counter": drain.clusters_counter,
            "clusters": clusters,
            "tree": _dump_node(drain.root_node),
        }
        # ASCII escapes keep lone surrogates (bodies decoded with errors="surrogateescape") encodable.
        return zlib.compress(json.dumps(state, separators=(",", ":")).encode("ascii"))

    @classmethod
    def restore(cls, data: bytes) -> LogTemplateMiner:
        """A miner that continues from `snapshot`'s state: known bodies keep their ids, new ones number on."""
        try:
            state = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError) as exc:
            raise ValueError(f"not a log template snapshot: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"unsupported log template snapshot version; expected {_SNAPSHOT_VERSION}")
        miner = cls()
        drain: Any = miner._drain
        try:
            for cluster_id, tokens, size, template_id in state["clusters"]:
                cluster = LogCluster(tokens, int(cluster_id))
                cluster.size = int(size)
                drain.id_to_cluster[cluster.cluster_id] = cluster
                miner._template_ids[cluster.cluster_id] = int(template_id)
            drain.clusters_counter = int(state["clusters_counter"])
            drain.root_node = _load_node(state["tree"])
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a log template snapshot: {exc!r}") from exc
        return miner


def _dump_node(node: Any) -> list[Any]:
    """A prefix tree node as [cluster ids, {token: child}]."""
    return [node.cluster_ids, {key: _dump_node(child) for key, child in node.key_to_child_node.items()}]


def _load_node(data: list[Any]) -> Any:
    node = Node()
    node.cluster_ids = data[0]
    node.key_to_child_node = {key: _load_node(child) for key, child in data[1].items()}
    return node
