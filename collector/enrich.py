"""Flow enrichment: the customer, site and subnet of both ends of a flow, by longest-prefix match.

The prefix file names address ranges. It is CSV or YAML, chosen by its extension:

- ``.csv``: a header line ``cidr,customer,site`` (any order), then one prefix per line. Blank lines
  and lines starting with ``#`` are skipped; fields may be quoted; every line has all three columns
  (leave customer or site empty when unknown: ``10.9.0.0/16,,paris``).
- ``.yaml`` / ``.yml``: a list of mappings with ``cidr`` and optionally ``customer`` and ``site``,
  either at the top level or under ``prefixes:``.

Prefixes are written as networks with their length (``10.0.0.0/8``, ``2001:db8::/32``; one host is
``/32`` or ``/128``). IPv4 prefixes match IPv4 addresses, which flows store mapped into IPv6
(``::ffff:10.1.2.3``); IPv6 prefixes match the other IPv6 addresses. The most specific prefix wins.
Everything wrong with a file is reported at once, each problem with its line number and the fix.

`enrich` fills SrcPrefix/SrcCustomer/SrcSite and DstPrefix/DstCustomer/DstSite; "" means unknown
(no prefix matched, or the matching line left the field empty), as the flows schema says. Prefixes
nest or are disjoint, so a map is kept as the sorted starts of the address ranges that have one most
specific prefix each; a batch's distinct addresses are found among them with one `numpy.searchsorted`
and the answers taken back to the rows, with no Python work per address.

`ReloadingPrefixMap` re-reads the file when it changes. Replace the file atomically (write a new
file, then rename it over the old one) so that a half-written file is never read.

>>> prefixes = PrefixMap.from_text("cidr,customer,site\\n10.0.0.0/8,acme,\\n10.1.0.0/16,acme,lyon\\n", fmt="csv")
>>> prefixes.lookup(ipaddress.IPv6Address("::ffff:10.1.2.3").packed)
Match(prefix='10.1.0.0/16', customer='acme', site='lyon')
>>> prefixes.lookup(ipaddress.IPv6Address("::ffff:10.2.0.1").packed)
Match(prefix='10.0.0.0/8', customer='acme', site='')
>>> prefixes.lookup(ipaddress.IPv6Address("::ffff:192.0.2.1").packed) is None
True
"""

from __future__ import annotations

import bisect
import csv
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import yaml  # type: ignore[import-untyped]

from vigil.errors import ConfigError
from vigil.store.schema import FLOWS_ARROW_SCHEMA

__all__ = [
    "ENRICHED_COLUMNS",
    "Match",
    "PrefixFileError",
    "PrefixMap",
    "ReloadingPrefixMap",
    "enrich",
]

logger = logging.getLogger(__name__)

# The columns `enrich` writes, per end: (address column, (prefix, customer, site) columns).
ENRICHED_COLUMNS = (
    ("SrcAddr", ("SrcPrefix", "SrcCustomer", "SrcSite")),
    ("DstAddr", ("DstPrefix", "DstCustomer", "DstSite")),
)
_FIELDS = ("cidr", "customer", "site")
# IPv4 lives at ::ffff:0:0/96 in the 16-byte addresses flows store.
_V4_MAPPED = 0xFFFF << 32
_ADDRESS_SPACE = 1 << 128
# Problems listed in one error; a generated file with a systematic mistake would otherwise flood the log.
_MAX_PROBLEMS = 20
_YAML_NULL = "tag:yaml.org,2002:null"
# libyaml when present: composing a 10,000-entry file in pure Python takes about a second.
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A problem with a prefix file: (line number, or 0 for the whole file; what is wrong and the fix).
_Problem = tuple[int, str]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PrefixFileError(ConfigError):
    """The prefix file cannot be used; `problems` holds each one as ``file:line: problem; fix``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            shown = "\n".join(f"  {p}" for p in self.problems[:_MAX_PROBLEMS])
            more = len(self.problems) - _MAX_PROBLEMS
            message = f"{source}: {len(self.problems)} problems in the prefix file:\n{shown}"
            if more > 0:
                message += f"\n  ... and {more} more"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[PrefixFileError], tuple[str, tuple[str, ...]]]:
        return (PrefixFileError, (self.source, self.problems))


@dataclass(frozen=True, slots=True)
class Match:
    """The most specific prefix holding an address, as written in the file ("" = unknown)."""

    prefix: str
    customer: str
    site: str


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    cidr: str
    customer: str
    site: str


class PrefixMap:
    """An immutable set of prefixes with their customer and site, for longest-prefix lookups."""

    __slots__ = ("_columns", "_count", "_labels", "_matches", "_starts", "_starts_array")

    def __init__(self, entries: Iterable[tuple[_Network, Match]] = ()) -> None:
        """Build from validated entries; use `load`, `from_text` or `empty` instead."""
        self._matches: list[Match] = []
        # (first address, prefix length, label) in the 16-byte space, IPv4 mapped. Label -1, at
        # ::ffff:0:0/96 itself, is a hole: an IPv6 prefix such as ::/0 holds those addresses as bytes,
        # but IPv6 prefixes are for IPv6 traffic, so IPv4 addresses no IPv4 prefix holds match nothing.
        spans = [(_V4_MAPPED, 96, -1)]
        for network, match in entries:
            offset, extra = (_V4_MAPPED, 96) if network.version == 4 else (0, 0)
            spans.append((offset | int(network.network_address), extra + network.prefixlen, len(self._matches)))
            self._matches.append(match)
        self._count = len(self._matches)
        # Outer prefixes first (the hole before an IPv4 0.0.0.0/0 on the same range); prefixes nest or
        # are disjoint, so one pass with a stack of the open ones cuts the space into ranges.
        spans.sort(key=lambda span: (span[0], span[1], span[2] >= 0))
        starts, labels = [0], [-1]
        open_: list[tuple[int, int]] = []  # (end, label), innermost last

        def mark(at: int, label: int) -> None:
            if starts[-1] == at:
                labels[-1] = label
            else:
                starts.append(at)
                labels.append(label)

        for start, length, label in spans:
            while open_ and open_[-1][0] <= start:
                end, _ = open_.pop()
                mark(end, open_[-1][1] if open_ else -1)
            mark(start, label)
            open_.append((start + (1 << (128 - length)), label))
        while open_:
            end, _ = open_.pop()
            if end < _ADDRESS_SPACE:
                mark(end, open_[-1][1] if open_ else -1)
        self._starts = [start.to_bytes(16, "big") for start in starts]
        # Big-endian bytes compare as the numbers do, so numpy searches these as fixed-width strings.
        self._starts_array = np.array(self._starts, "S16")
        # A range's match; no match points one past the prefixes, at the "" that ends each column.
        self._labels: npt.NDArray[np.int32] = np.array([self._count if x < 0 else x for x in labels], np.int32)
        self._columns = tuple(
            pa.array([*(getattr(m, name) for m in self._matches), ""], pa.string())
            for name in ("prefix", "customer", "site")
        )

    @classmethod
    def empty(cls) -> PrefixMap:
        return cls()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrefixMap:
        """Read a prefix file; the format follows the extension (.csv, .yaml, .yml). Raises ConfigError."""
        source = os.fspath(path)
        fmt = _format_of(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PrefixFileError(
                source, [f"{source}: the prefix file does not exist; create it or unset VIGIL_PREFIX_FILE"]
            ) from None
        except UnicodeDecodeError as e:
            raise PrefixFileError(
                source, [f"{source}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); save it as UTF-8"]
            ) from None
        except OSError as e:
            raise PrefixFileError(
                source, [f"{source}: cannot read the prefix file ({e.strerror}); check its permissions"]
            ) from None
        return cls.from_text(text, fmt=fmt, source=source)

    @classmethod
    def from_text(cls, text: str, *, fmt: str, source: str = "<text>") -> PrefixMap:
        """Parse the contents of a prefix file; `fmt` is "csv" or "yaml", `source` names it in errors."""
        text = text.removeprefix("\ufeff")  # spreadsheets save CSV with a byte order mark
        if fmt == "csv":
            rows, problems = _parse_csv(text)
        elif fmt == "yaml":
            rows, problems = _parse_yaml(text)
        else:
            raise ValueError(f"prefix file format must be 'csv' or 'yaml', got {fmt!r}")
        entries, more = _validate(rows)
        problems += more
        if problems:
            problems.sort(key=lambda item: item[0])
            raise PrefixFileError(
                source,
                [f"{source}:{line}: {problem}" if line else f"{source}: {problem}" for line, problem in problems],
            )
        return cls(entries)

    def lookup(self, address16: bytes) -> Match | None:
        """The most specific prefix holding a 16-byte address (IPv4 mapped as ::ffff:a.b.c.d), or None."""
        if len(address16) != 16:
            raise ValueError(f"addresses are 16 bytes (IPv4 mapped into IPv6), got {len(address16)}")
        label = int(self._labels[bisect.bisect_right(self._starts, address16) - 1])
        return self._matches[label] if label < self._count else None

    def tag(self, addresses: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
        """The prefix, customer and site of each 16-byte address ("" where none matches, or for null).

        Each distinct address is searched once, all of them in one `numpy.searchsorted`.
        """
        encoded = pc.dictionary_encode(addresses)
        distinct = encoded.dictionary  # no nulls: a null address has a null index instead
        keys = np.frombuffer(distinct.buffers()[1], "S16", count=len(distinct), offset=distinct.offset * 16)
        found = pa.array(self._labels[np.searchsorted(self._starts_array, keys, side="right") - 1])
        labels = pc.take(found, encoded.indices).fill_null(self._count)
        prefix, customer, site = (pc.take(column, labels) for column in self._columns)
        return prefix, customer, site

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<PrefixMap of {self._count} prefixes>"


def enrich(flows: pa.Table, prefixes: PrefixMap) -> pa.Table:
    """`flows` (FLOWS_ARROW_SCHEMA) with the prefix, customer and site of both ends filled ("" = unknown).

    Existing values in those columns are replaced (see `PrefixMap.tag`).
    """
    if not flows.schema.equals(FLOWS_ARROW_SCHEMA):
        raise ValueError("enrich takes flow rows in FLOWS_ARROW_SCHEMA")
    n = flows.num_rows
    if n == 0 or len(prefixes) == 0:
        blank = pa.nulls(n, pa.string()).fill_null("")
        per_end = [(blank, blank, blank)] * len(ENRICHED_COLUMNS)
    else:
        # Both ends at once: flows share addresses between their sources and destinations.
        addresses = pa.concat_arrays([chunk for address, _ in ENRICHED_COLUMNS for chunk in flows[address].chunks])
        filled = prefixes.tag(addresses)
        per_end = [tuple(column.slice(end * n, n) for column in filled) for end in range(len(ENRICHED_COLUMNS))]
    for (_, names), columns in zip(ENRICHED_COLUMNS, per_end, strict=True):
        for name, column in zip(names, columns, strict=True):
            index = FLOWS_ARROW_SCHEMA.get_field_index(name)
            flows = flows.set_column(index, FLOWS_ARROW_SCHEMA.field(index), column)
    return flows


class ReloadingPrefixMap:
    """The prefix file's current map, re-read when the file changes. Thread-safe.

    `current` looks at the file's modification time, size and inode at most every `check_interval_s`
    and re-reads it when they changed. A file that cannot be used, or that was deleted, leaves the
    last good map in place; the problem is logged once per version of the file. A missing or broken
    file at start raises ConfigError: a file was configured, so running without it would be a surprise.
    With no path (None or "", the setting's default) the map is always empty.
    """

    def __init__(
        self,
        path: str | None,
        *,
        check_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not check_interval_s >= 0:
            raise ConfigError(f"prefix file check interval must be 0 or more seconds, got {check_interval_s}")
        self._path = path or None
        self._interval = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._map = PrefixMap.empty()
        # (mtime_ns, size, inode) of the file the map came from; None once it is gone.
        self._version: tuple[int, int, int] | None = None
        # What was last logged as a problem (a file version, or an error text), so it is logged once.
        self._reported: object = None
        if self._path is not None:
            try:
                stat = os.stat(self._path)
            except FileNotFoundError:
                raise ConfigError(
                    f"prefix file {self._path} does not exist; create it or unset VIGIL_PREFIX_FILE"
                ) from None
            except OSError as e:
                raise ConfigError(
                    f"prefix file {self._path} cannot be read ({e.strerror}); check the path and its permissions"
                ) from None
            self._map = PrefixMap.load(self._path)
            self._version = _version_of(stat)
        self._checked_at = clock()

    @property
    def path(self) -> str | None:
        return self._path

    def current(self) -> PrefixMap:
        """The latest good map; re-reads the file first if it is time to check and it changed."""
        if self._path is None or self._clock() - self._checked_at < self._interval:
            return self._map
        # One thread checks; the others use the map they have rather than wait for a reload.
        if self._lock.acquire(blocking=False):
            try:
                now = self._clock()
                if now - self._checked_at >= self._interval:
                    self._check(self._path)
                    self._checked_at = now
            finally:
                self._lock.release()
        return self._map

    def _check(self, path: str) -> None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            # Forget the version, so the file is read again when it comes back, even unchanged.
            self._version = None
            self._report(
                "deleted",
                logging.WARNING,
                "prefix file %s was deleted; keeping the %d prefixes last loaded until it is back",
                path,
                len(self._map),
            )
            return
        except OSError as e:
            self._report(
                str(e), logging.ERROR, "prefix file %s cannot be checked (%s); keeping the previous map", path, e
            )
            return
        version = _version_of(stat)
        if version == self._version or version == self._reported:
            return
        try:
            new = PrefixMap.load(path)
        except ConfigError as e:
            self._report(
                version,
                logging.ERROR,
                "prefix file %s changed but cannot be used; keeping the %d prefixes last loaded. %s",
                path,
                len(self._map),
                e,
            )
            return
        self._map = new
        self._version = version
        self._reported = None
        logger.info("prefix file %s loaded: %d prefixes", path, len(new))

    def _report(self, key: object, level: int, message: str, *args: object) -> None:
        if key != self._reported:
            self._reported = key
            logger.log(level, message, *args)


def _version_of(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _format_of(source: str) -> str:
    suffix = Path(source).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise PrefixFileError(
        source,
        [f"{source}: unknown prefix file format {suffix or '(no extension)'!r}; name it .csv, .yaml or .yml"],
    )


def _parse_csv(text: str) -> tuple[list[_Row], list[_Problem]]:
    rows: list[_Row] = []
    problems: list[_Problem] = []
    order: list[int] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = [field.strip() for field in next(csv.reader([line]))]
        except csv.Error as e:
            problems.append((number, f"not a CSV line ({e}); fix or remove the line"))
            continue
        if order is None:
            names = [field.lower() for field in fields]
            if sorted(names) != sorted(_FIELDS):
                problems.append(
                    (number, f"expected the header line cidr,customer,site, got {stripped!r}; add it as the first line")
                )
                return rows, problems
            order = [names.index(name) for name in _FIELDS]
            continue
        if len(fields) != len(_FIELDS):
            problems.append(
                (
                    number,
                    f"expected 3 columns (cidr,customer,site), got {len(fields)} in {stripped!r}; give every line "
                    "all three, leaving customer or site empty when unknown (10.9.0.0/16,,paris)",
                )
            )
            continue
        rows.append(_Row(number, *(fields[i] for i in order)))
    if order is None:
        problems.append((0, "no header line; start the file with cidr,customer,site"))
    return rows, problems


def _parse_yaml(text: str) -> tuple[list[_Row], list[_Problem]]:
    try:
        root = yaml.compose(text, Loader=_YamlLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        return [], [(mark.line + 1 if mark else 0, f"not valid YAML ({e.problem or e.context}); fix the syntax")]
    except yaml.YAMLError as e:
        return [], [(0, f"not valid YAML ({e}); fix the syntax")]
    expected = "a list of mappings with cidr, customer and site (or that list under prefixes:)"
    if root is None:
        return [], [(0, f"the file is empty; write {expected}, or [] for no prefixes")]
    if isinstance(root, yaml.MappingNode):
        entries = None
        for key, value in root.value:
            if _text(key) != "prefixes":
                return [], [(_line(key), f"unknown top-level key {_text(key)!r}; the only key is prefixes")]
            entries = value
        if entries is None:
            return [], [(_line(root), f"no prefixes key; write {expected}")]
        root = entries
    if not isinstance(root, yaml.SequenceNode):
        return [], [(_line(root), f"expected {expected}, got {_text(root)!r}")]
    rows: list[_Row] = []
    problems: list[_Problem] = []
    for item in root.value:
        if not isinstance(item, yaml.MappingNode):
            problems.append((_line(item), f"expected a mapping with cidr, customer and site, got {_text(item)!r}"))
            continue
        before = len(problems)
        fields: dict[str, str] = {}
        for key, value in item.value:
            name = _text(key)
            if name not in _FIELDS:
                problems.append((_line(key), f"unknown key {name!r}; the keys are cidr, customer and site"))
            elif name in fields:
                problems.append((_line(key), f"{name} is given twice in one entry; keep one"))
            elif not isinstance(value, yaml.ScalarNode):
                problems.append((_line(value), f"{name} must be a single value, got {_text(value)}"))
            else:
                # Quoted spaces are kept: YAML already trims plain values.
                fields[name] = "" if value.tag == _YAML_NULL else str(value.value)
        if len(problems) > before:
            continue
        if "cidr" not in fields:
            problems.append((_line(item), "the entry has no cidr; add cidr: followed by a network such as 10.0.0.0/8"))
            continue
        rows.append(_Row(_line(item), fields["cidr"].strip(), fields.get("customer", ""), fields.get("site", "")))
    return rows, problems


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


def _text(node: Any) -> str:
    """A node as written, for error messages (collections are only named)."""
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _validate(rows: list[_Row]) -> tuple[list[tuple[_Network, Match]], list[_Problem]]:
    entries: list[tuple[_Network, Match]] = []
    problems: list[_Problem] = []
    first_line: dict[_Network, int] = {}
    for row in rows:
        network = _network(row.cidr)
        if isinstance(network, str):
            problems.append((row.line, network))
            continue
        seen = first_line.setdefault(network, row.line)
        if seen != row.line:
            problems.append(
                (row.line, f"duplicate CIDR {row.cidr!r}: {network} is already on line {seen}; keep one of the two")
            )
            continue
        entries.append((network, Match(str(network), row.customer, row.site)))
    return entries, problems


def _network(cidr: str) -> _Network | str:
    """`cidr` as a network, or what is wrong with it and the fix."""
    if not cidr:
        return "the CIDR is empty; write a network such as 10.0.0.0/8 or 2001:db8::/32"
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError as e:
        try:
            loose = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return f"{cidr!r} is not a valid CIDR ({e}); write a network such as 10.0.0.0/8 or 2001:db8::/32"
        host = f"{cidr.split('/', 1)[0]}/{loose.max_prefixlen}"
        return f"CIDR {cidr!r} has host bits set; write the network address {loose} (or {host} for the one host)"
    if "/" not in cidr:
        # ipaddress reads a bare address as one host; a forgotten length is the likelier mistake.
        return f"CIDR {cidr!r} has no prefix length; write {network} for one host, or the network with its length"
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return f"{cidr!r} is an IPv4-mapped IPv6 prefix; write it as IPv4: {mapped}/{network.prefixlen - 96}"
    return network
