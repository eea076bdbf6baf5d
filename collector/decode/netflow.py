"""Decode NetFlow v5, v9 (RFC 3954) and IPFIX (RFC 7011) datagrams into rows of the flows table.

`NetflowDecoder` is stateful but does no I/O: v9 and IPFIX data only make sense with the templates
an exporter sent earlier, so it keeps a template cache per (exporter, version, observation domain),
the sampling rates and init times that options data announced, and data sets that arrived before
their template (held, bounded by bytes and time, and decoded when the template comes). It never
raises on packet bytes: a bad packet or set is counted under a short reason category and described
in `FlowBatch.problems`, and the valid sets of the same packet are kept.

Records are decoded column-wise, for many datagrams at once (`decode_many`): each packet's headers,
templates and options are read in Python, its flow data sets only noted (bytes, offset, count,
header times). Then the records of every set under one template are joined into one buffer, read
with one `np.frombuffer` through the template's compiled dtype (a big-endian numpy structured dtype
holding only the fields Vigil maps, at their offsets; v5 records are read through such a template
too), and each column is a numpy assignment for all of them: the cost per packet is the Python that
reads its headers (about 7-9 µs), not the columns. Templates with variable-length IPFIX fields go
through a Python loop that copies the mapped fields into a packed layout of the same fields.

>>> import struct
>>> header = struct.pack("!HHIIIIBBH", 5, 1, 100_000, 1_700_000_000, 0, 0, 0, 0, 0)
>>> record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7]), bytes(4),
...                      1, 2, 10, 5000, 90_000, 99_000, 1234, 443, 0, 0x1B, 6, 0, 64500, 64501, 24, 24, 0)
>>> batch = NetflowDecoder().decode(header + record, exporter_key("192.0.2.254"), 1_700_000_000_000_000_000)
>>> row = batch.flows.to_pylist()[0]
>>> row["Bytes"], row["Packets"], row["DstPort"], row["SrcAs"], row["FlowEnd"].isoformat()
(5000, 10, 443, 64500, '2023-11-14T22:13:19+00:00')
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from vigil.store.schema import FLOWS_ARROW_SCHEMA

__all__ = ["PROBLEM_CATEGORIES", "ExporterStatus", "FlowBatch", "NetflowConfig", "NetflowDecoder", "exporter_key"]

# Reason categories of `ExporterStatus.malformed` (stable keys for the health API).
PROBLEM_CATEGORIES: Final = (
    "truncated",  # the datagram ends inside a header, a record or the length its header gives
    "bad_version",  # not NetFlow v5, v9 or IPFIX
    "bad_length",  # an IPFIX message length shorter than its own header
    "set_length",  # a set shorter than its 4-byte header or running past the packet
    "reserved_set",  # a set id that is neither a template, an options template nor data
    "bad_template",  # an unusable (options) template: zero-length field, overrun, bad ids or counts
    "bad_record",  # a variable-length field running past its data set
    "template_missing",  # a held data set given up: its template did not arrive in time or room
    "too_many_templates",  # a new template beyond NetflowConfig.max_templates_per_domain
    "internal",  # a bug in this decoder, caught so that one packet cannot stop the receiver
)

_Array = npt.NDArray[Any]
_Field = tuple[int, int, int]  # information element id, length (65535: variable), enterprise number
_DomainKey = tuple[bytes, int, int]  # exporter (16 bytes), version, observation domain / source id

_V4_PREFIX: Final = bytes(10) + b"\xff\xff"
_VARIABLE: Final = 65535
_MAX_MS: Final = (2**63 - 1) // 1_000_000
_MAX_S: Final = (2**63 - 1) // 1_000_000_000
_NTP_TO_UNIX_S: Final = 2_208_988_800
_U32: Final = 2**32
_SWEEP_INTERVAL_S: Final = 1.0
_PLAN_CACHE_SIZE: Final = 4096
_MAX_SAMPLERS: Final = 1024  # per domain; sampler ids come from the wire
_B16 = pa.binary(16)
_NUMPY_TYPES: Final[dict[pa.DataType, Any]] = {
    pa.timestamp("ns", tz="UTC"): np.int64,
    pa.uint8(): np.uint8,
    pa.uint16(): np.uint16,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
}
# Per flows column: its name, Arrow type, and the numpy type and row shape of its values (None for
# strings, which the decoder leaves ""); comparing Arrow types costs a microsecond, so once here.
_COLUMNS: Final = tuple(
    (f.name, f.type, None, ())
    if f.type == pa.string()
    else (f.name, f.type, np.uint8, (16,))
    if f.type == _B16
    else (f.name, f.type, _NUMPY_TYPES[f.type], ())
    for f in FLOWS_ARROW_SCHEMA
)
_EMPTY: Final = FLOWS_ARROW_SCHEMA.empty_table()  # tables are immutable, and building one costs ~0.1 ms

_V5_HEADER = struct.Struct("!HHIIIIBBH")
_V9_HEADER = struct.Struct("!HHIIII")
_IPFIX_HEADER = struct.Struct("!HHIII")
_SET_HEADER = struct.Struct("!HH")
# Flow roles and the information elements that fill them, preferred first. Kinds: "v4"/"v6" are
# addresses (exactly 4/16 bytes), "int" any unsigned integer of 1..8 bytes (RFC 7011 §6.2 reduced
# size), "ms"/"s" absolute unix times, "us"/"ns" NTP timestamps (RFC 7011 §6.1.9-10, 8 bytes),
# "uptime" milliseconds of sysUpTime (v9 header, or IPFIX systemInitTimeMilliseconds).
_ROLES: Final[dict[str, tuple[tuple[int, str], ...]]] = {
    "src": ((8, "v4"), (27, "v6")),
    "dst": ((12, "v4"), (28, "v6")),
    "sport": ((7, "int"),),
    "dport": ((11, "int"),),
    "icmp": ((32, "int"), (139, "int")),  # type*256 + code
    "icmp_type": ((176, "int"), (178, "int")),
    "icmp_code": ((177, "int"), (179, "int")),
    "proto": ((4, "int"),),
    "flags": ((6, "int"),),
    "tos": ((5, "int"),),
    "in_if": ((10, "int"),),
    "out_if": ((14, "int"),),
    "bytes": ((1, "int"), (85, "int"), (23, "int")),
    "packets": ((2, "int"), (86, "int"), (24, "int")),
    "src_as": ((16, "int"),),
    "dst_as": ((17, "int"),),
    "start": ((152, "ms"), (150, "s"), (154, "us"), (156, "ns"), (22, "uptime")),
    "end": ((153, "ms"), (151, "s"), (155, "us"), (157, "ns"), (21, "uptime")),
    "sampler": ((48, "int"),),
    "interval": ((34, "int"),),
}
# Roles copied as they are into their column (numpy casts to the column's type).
_DIRECT: Final = (("sport", "SrcPort"), ("dport", "DstPort"), ("proto", "Protocol"), ("flags", "TcpFlags"),
                  ("tos", "Tos"), ("in_if", "InputInterface"), ("out_if", "OutputInterface"), ("bytes", "Bytes"),
                  ("packets", "Packets"), ("src_as", "SrcAs"), ("dst_as", "DstAs"))  # fmt: skip
# Options data fields that tell the sampling rate or the exporter's boot time.
_OPTION_IES: Final = frozenset({34, 48, 50, 160, 305, 306})
_INT_FORMATS: Final = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}


@dataclass(frozen=True, slots=True)
class NetflowConfig:
    """Template and held-data limits; the timeout default is RFC 6728's collector template lifetime."""

    template_timeout_s: float = 1800.0
    pending_timeout_s: float = 10.0
    max_pending_bytes: int = 4 * 1024 * 1024
    # Exporter addresses and domain ids come from the wire (UDP sources are easy to forge), so the
    # state they create is bounded: the least recently seen domain makes room for a new one, and a
    # domain's templates beyond the cap are refused (real exporters use a handful).
    max_domains: int = 4096
    max_templates_per_domain: int = 512


@dataclass(frozen=True, slots=True)
class FlowBatch:
    """What datagrams gave: rows of the flows table (exactly `FLOWS_ARROW_SCHEMA`, enrichment columns
    "", one record batch; the rows of one template and version together, groups in the order they
    first appear), one reason per malformed set or packet, and how many held data records were given
    up (estimated; see `NetflowDecoder.expire`). Give-ups happen when they fall due, so they may
    concern another exporter than the datagrams'; each reason names its exporter."""

    flows: pa.Table
    problems: list[str] = field(default_factory=list)
    given_up: int = 0

    @property
    def num_flows(self) -> int:
        return int(self.flows.num_rows)


@dataclass(frozen=True, slots=True)
class ExporterStatus:
    """One (exporter, version, observation domain): traffic, problems, templates and sampling.

    `exporter` is the 16-byte address, as in the flows table, and `host` its text. `domain` is the
    IPFIX observation domain, the v9 source id, or v5's engine_type << 8 | engine_id. `malformed`
    counts problems by `PROBLEM_CATEGORIES` key. `sampling_rate` is the domain-wide rate last
    announced (v5 header, options data; None if never) and `sampler_rates` the rate of each sampler
    id. `sequence_gaps` counts packets whose sequence number was not the one expected (a metric:
    exporters get sequence numbers wrong). Times are unix seconds from the decoder's clock. Datagrams
    whose version cannot be read or is unknown are counted under version 0, domain 0.
    """

    exporter: bytes
    host: str
    version: int
    domain: int
    first_seen: float
    last_seen: float
    packets: int
    flows: int
    malformed: dict[str, int]
    templates: tuple[int, ...]
    options_templates: tuple[int, ...]
    pending_sets: int
    given_up: int
    sampling_rate: int | None
    sampler_rates: dict[int, int]
    sequence_gaps: int


def exporter_key(host: str) -> bytes:
    """The 16-byte exporter address `NetflowDecoder.decode` takes; IPv4 is mapped into ::ffff:0:0/96.

    >>> exporter_key("192.0.2.1").hex()
    '00000000000000000000ffffc0000201'
    """
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv4Address):
        return _V4_PREFIX + address.packed
    return address.packed


def _host(exporter: bytes) -> str:
    if exporter[:12] == _V4_PREFIX:
        return str(ipaddress.IPv4Address(exporter[12:]))
    return str(ipaddress.IPv6Address(exporter))


# ---- templates -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    """A compiled data template: the dtype of the mapped fields and which role each one fills.

    Fixed-length templates place the fields at their record offsets (`itemsize` = record length);
    variable-length ones pack them, and `steps`/`keep` drive the Python loop that copies them.
    """

    dtype: np.dtype[np.void]
    record_length: int  # the fixed length, or the minimum for a variable-length template
    variable: bool
    roles: dict[str, tuple[str, int, str]]  # role -> (dtype field, length, kind)
    steps: tuple[int, ...]  # per field: its length, or -1 when variable
    keep: tuple[bool, ...]  # per field: copied into the packed layout
    is_flow: bool  # has an address or a counter; other data templates carry no flows


@dataclass(slots=True)
class _Template:
    fields: tuple[_Field, ...]
    scope_count: int  # options templates: the leading scope fields
    options: bool
    min_length: int
    refreshed: float
    plan: _Plan | None  # data templates only


def _fits(kind: str, length: int) -> bool:
    if kind == "v4":
        return length == 4
    if kind == "v6":
        return length == 16
    if kind in ("us", "ns"):
        return length == 8
    return 1 <= length <= 8


def _format(kind: str, length: int) -> Any:
    if kind in ("v4", "v6"):
        return ("u1", (length,))
    return _INT_FORMATS.get(length, ("u1", (length,)))  # 3, 5, 6, 7 bytes: combined with numpy ops


def _compile(fields: tuple[_Field, ...]) -> _Plan:
    first: dict[int, int] = {}
    for i, (ie, length, enterprise) in enumerate(fields):
        if enterprise == 0 and length != _VARIABLE and ie not in first:
            first[ie] = i
    chosen: dict[str, tuple[int, str]] = {}
    for role, candidates in _ROLES.items():
        for ie, kind in candidates:
            i = first.get(ie, -1)
            if i >= 0 and _fits(kind, fields[i][1]):
                chosen[role] = (i, kind)
                break
    used = sorted({i for i, _ in chosen.values()})
    variable = any(length == _VARIABLE for _, length, _ in fields)
    names = [f"f{i}" for i in used]
    formats = [_format(next(k for j, k in chosen.values() if j == i), fields[i][1]) for i in used]
    if variable:
        offsets, packed = [], 0
        for i in used:
            offsets.append(packed)
            packed += fields[i][1]
        itemsize = packed
        record_length = sum(1 if length == _VARIABLE else length for _, length, _ in fields)
    else:
        starts = np.cumsum([0] + [length for _, length, _ in fields])
        offsets = [int(starts[i]) for i in used]
        itemsize = record_length = int(starts[-1])
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})
    roles = {role: (f"f{i}", fields[i][1], kind) for role, (i, kind) in chosen.items()}
    kept = set(used)
    return _Plan(
        dtype=dtype,
        record_length=record_length,
        variable=variable,
        roles=roles,
        steps=tuple(-1 if length == _VARIABLE else length for _, length, _ in fields),
        keep=tuple(i in kept for i in range(len(fields))),
        is_flow=any(role in roles for role in ("src", "dst", "bytes", "packets")),
    )


# A v5 record read as a template (IANA ids; 210 is paddingOctets), so that v5 takes the v9/IPFIX path.
_V5_PLAN: Final = _compile(tuple((ie, length, 0) for ie, length in (
    (8, 4), (12, 4), (15, 4), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4), (7, 2), (11, 2), (210, 1), (6, 1),
    (4, 1), (5, 1), (16, 2), (17, 2), (9, 1), (13, 1), (210, 2))))  # fmt: skip


# ---- per-domain state ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Domain:
    host: str
    exporter: bytes
    version: int
    domain_id: int
    templates: dict[int, _Template] = field(default_factory=dict)
    record_lengths: dict[int, int] = field(default_factory=dict)  # last known per id, to estimate give-ups
    packets: int = 0
    flows: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    first_seen: float = 0.0
    last_seen: float = 0.0
    rate: int | None = None
    sampler_rates: dict[int, int] = field(default_factory=dict)
    init_ms: int | None = None  # IPFIX systemInitTimeMilliseconds
    next_sequence: int | None = None
    sequence_gaps: int = 0
    given_up: int = 0
    # What decoded records take from this domain; rebuilt after the rate or init time changes.
    source: _Source | None = None


class _Context(NamedTuple):
    """The header facts a data set's times depend on; a held set keeps those of its own packet."""

    received_ns: int
    export_ns: int
    uptime_ms: int  # v9 header sysUptime; IPFIX has none


@dataclass(slots=True)
class _Held:
    domain: _Domain
    key: tuple[_DomainKey, int]  # and the template id
    body: bytes
    context: _Context
    held_at: float
    released: bool = False


class _Source(NamedTuple):
    """What the records of a packet share: where they come from, and the domain's sampling and init
    time as the whole packet left them (options data may come after the data it applies to)."""

    exporter: bytes
    version: int
    domain_id: int
    rate: int
    init_ms: int | None
    sampler_rates: dict[int, int]  # never mutated: the domain replaces its dict on change


@dataclass(slots=True)
class _Sets:
    """Flow data sets waiting to become columns: entry i of every list describes set i (its records'
    bytes and where they start, how many, their plan, the header times and the source of its packet).
    Lists rather than an object per set: objects made per packet, alive until the batch is decoded,
    made garbage collection about a tenth of a receiver's time."""

    data: list[bytes] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    plans: list[_Plan] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    exported: list[int] = field(default_factory=list)
    uptimes: list[int] = field(default_factory=list)
    sources: list[_Source] = field(default_factory=list)

    def add(self, data: bytes, start: int, n: int, plan: _Plan, context: _Context) -> None:
        self.data.append(data)
        self.starts.append(start)
        self.counts.append(n)
        self.plans.append(plan)
        self.received.append(context.received_ns)
        self.exported.append(context.export_ns)
        self.uptimes.append(context.uptime_ms)

    def close(self, domain: _Domain) -> None:
        """The packet is read: its sets take the domain's state as it left it (held sets only come back
        to their own domain, so one domain covers them all)."""
        missing = len(self.counts) - len(self.sources)
        if missing:
            source = domain.source
            if source is None:
                source = domain.source = _Source(
                    domain.exporter, domain.version, domain.domain_id, domain.rate or 1, domain.init_ms,
                    domain.sampler_rates,
                )  # fmt: skip
            self.sources += [source] * missing

    def truncate(self, size: int) -> None:
        for values in (self.data, self.starts, self.counts, self.plans, self.received, self.exported, self.uptimes):
            del values[size:]
        del self.sources[size:]

    def subset(self, indices: list[int]) -> _Sets:
        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in indices]

        return _Sets(
            pick(self.data), pick(self.starts), pick(self.counts), pick(self.plans), pick(self.received),
            pick(self.exported), pick(self.uptimes), pick(self.sources),
        )  # fmt: skip


@dataclass(slots=True)
class _Out:
    """What one `decode_many` call gathers: the flow data sets of every packet, problems and give-ups."""

    sets: _Sets = field(default_factory=_Sets)
    problems: list[str] = field(default_factory=list)
    given_up: int = 0

    def problem(self, domain: _Domain, category: str, message: str) -> None:
        domain.malformed[category] = domain.malformed.get(category, 0) + 1
        where = f" domain {domain.domain_id}" if domain.domain_id else ""
        self.problems.append(f"{domain.host} v{domain.version}{where}: {message}")


# ---- the decoder ---------------------------------------------------------------------------------


class NetflowDecoder:
    """Turns NetFlow v5/v9/IPFIX datagrams into `FlowBatch`es, keeping templates between calls.

    Not thread-safe: use one decoder per receiving thread.

    >>> decoder = NetflowDecoder(NetflowConfig(pending_timeout_s=5.0), clock=lambda: 1000.0)
    >>> decoder.decode(b"\\x00\\x07junk", exporter_key("192.0.2.9"), 0).problems
    ['192.0.2.9 v0: unknown version 7 (NetFlow v5, v9 and IPFIX are decoded)']
    >>> [(s.host, s.malformed) for s in decoder.exporters()]
    [('192.0.2.9', {'bad_version': 1})]
    """

    def __init__(self, config: NetflowConfig = NetflowConfig(), *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._domains: dict[_DomainKey, _Domain] = {}
        self._hosts: dict[bytes, str] = {}
        self._plans: dict[tuple[_Field, ...], _Plan] = {}
        self._held: deque[_Held] = deque()  # oldest first; released entries are dropped lazily
        self._held_by: dict[tuple[_DomainKey, int], list[_Held]] = {}
        self._held_bytes = 0
        self._next_sweep = 0.0
        self.evicted_domains = 0  # domains forgotten to stay under `max_domains`

    # -- public --

    def decode(self, packet: bytes, exporter: bytes, received_ns: int) -> FlowBatch:
        """Decode one datagram from `exporter` (16 bytes, see `exporter_key`), received at `received_ns`."""
        return self.decode_many(((packet, exporter, received_ns),))

    def decode_many(self, datagrams: Iterable[tuple[bytes, bytes, int]]) -> FlowBatch:
        """Decode (packet, exporter, received_ns) datagrams in order into one batch.

        Headers, templates and options are read packet by packet; the flow records of all the
        packets then become columns together, a few numpy operations per column and template instead
        of per packet, which is what makes a batch of packets several times cheaper than one at a time.
        """
        out = _Out()
        for packet, exporter, received_ns in datagrams:
            self._decode_packet(packet, exporter, received_ns, out)
        try:
            table = _table(out.sets)
        except Exception as exc:  # a decoder bug must cost these packets, not the receiver
            now = self.clock()
            for key in dict.fromkeys((s.exporter, s.version, s.domain_id) for s in out.sets.sources):
                out.problem(self._domain(key, now), "internal", f"decoder error {type(exc).__name__}: {exc}")
            table = _EMPTY
        return FlowBatch(table, out.problems, out.given_up)

    def expire(self, now: float | None = None) -> int:
        """Drop templates not refreshed within `template_timeout_s` and data sets held longer than
        `pending_timeout_s`; return the data records given up. A held set's records are estimated
        from its length when a template with its id was ever known; otherwise each set counts as 1."""
        out = _Out()
        self._sweep(self.clock() if now is None else now, out)
        return out.given_up

    def exporters(self) -> list[ExporterStatus]:
        """The status of every (exporter, version, observation domain) seen, sorted by those."""
        pending: dict[_DomainKey, int] = {}
        for (key, _), held in self._held_by.items():
            pending[key] = pending.get(key, 0) + len(held)
        statuses = [
            ExporterStatus(
                exporter=key[0],
                host=d.host,
                version=d.version,
                domain=d.domain_id,
                first_seen=d.first_seen,
                last_seen=d.last_seen,
                packets=d.packets,
                flows=d.flows,
                malformed=dict(d.malformed),
                templates=tuple(sorted(tid for tid, t in d.templates.items() if not t.options)),
                options_templates=tuple(sorted(tid for tid, t in d.templates.items() if t.options)),
                pending_sets=pending.get(key, 0),
                given_up=d.given_up,
                sampling_rate=d.rate,
                sampler_rates=dict(d.sampler_rates),
                sequence_gaps=d.sequence_gaps,
            )
            for key, d in self._domains.items()
        ]
        return sorted(statuses, key=lambda s: (s.exporter, s.version, s.domain))

    # -- state --

    def _decode_packet(self, packet: bytes, exporter: bytes, received_ns: int, out: _Out) -> None:
        if len(exporter) == 4:
            exporter = _V4_PREFIX + exporter
        if len(exporter) != 16:
            raise ValueError(f"exporter must be a 16-byte address (see exporter_key), got {len(exporter)} bytes")
        now = self.clock()
        version = int.from_bytes(packet[:2], "big") if len(packet) >= 2 else 0
        mark = len(out.sets.counts)
        try:
            if now >= self._next_sweep:
                self._sweep(now, out)
            if version == 5:
                self._decode_v5(packet, exporter, received_ns, now, out)
            elif version in (9, 10):
                self._decode_template_based(packet, version, exporter, received_ns, now, out)
            else:
                domain = self._domain((exporter, 0, 0), now)
                if len(packet) < 2:
                    out.problem(domain, "truncated", f"a {len(packet)}-byte packet has no version")
                else:
                    message = f"unknown version {version} (NetFlow v5, v9 and IPFIX are decoded)"
                    out.problem(domain, "bad_version", message)
        except Exception as exc:  # a decoder bug must cost one packet, not the receiver
            out.sets.truncate(mark)
            domain = self._domain((exporter, version if version in (5, 9, 10) else 0, 0), now)
            out.problem(domain, "internal", f"decoder error {type(exc).__name__}: {exc}")

    def _domain(self, key: _DomainKey, now: float) -> _Domain:
        domain = self._domains.get(key)
        if domain is None:
            if len(self._domains) >= self.config.max_domains:
                self._evict_least_recent_domain()
            host = self._hosts.get(key[0])
            if host is None:
                host = self._hosts[key[0]] = _host(key[0])
            domain = self._domains[key] = _Domain(host, key[0], key[1], key[2], first_seen=now)
        domain.last_seen = now
        return domain

    def _evict_least_recent_domain(self) -> None:
        # A scan, not an LRU structure: it runs only when a new domain arrives at the cap.
        key = min(self._domains, key=lambda k: self._domains[k].last_seen)
        del self._domains[key]
        self.evicted_domains += 1
        if not any(k[0] == key[0] for k in self._domains):
            self._hosts.pop(key[0], None)

    def _plan(self, fields: tuple[_Field, ...]) -> _Plan:
        plan = self._plans.get(fields)
        if plan is None:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[fields] = _compile(fields)
        return plan

    def _sweep(self, now: float, out: _Out) -> None:
        self._next_sweep = now + _SWEEP_INTERVAL_S
        deadline = now - self.config.template_timeout_s
        for domain in self._domains.values():
            for tid in [tid for tid, t in domain.templates.items() if t.refreshed < deadline]:
                del domain.templates[tid]
        held_deadline = now - self.config.pending_timeout_s
        while self._held and (self._held[0].released or self._held[0].held_at < held_deadline):
            held = self._held.popleft()
            if not held.released:
                self._give_up(held, out, f"the template did not arrive within {self.config.pending_timeout_s:g} s")

    def _hold(self, held: _Held, out: _Out) -> None:
        size = len(held.body)
        limit = self.config.max_pending_bytes
        if size > limit:
            self._give_up(held, out, f"its {size} bytes exceed max_pending_bytes ({limit})", listed=False)
            return
        while self._held and self._held_bytes + size > limit:
            oldest = self._held.popleft()
            if not oldest.released:
                self._give_up(oldest, out, f"held data sets exceeded max_pending_bytes ({limit})")
        self._held.append(held)
        self._held_by.setdefault(held.key, []).append(held)
        self._held_bytes += size

    def _give_up(self, held: _Held, out: _Out, why: str, listed: bool = True) -> None:
        if listed:
            held.released = True
            self._held_bytes -= len(held.body)
            group = self._held_by.get(held.key)
            if group is not None:
                group.remove(held)
                if not group:
                    del self._held_by[held.key]
        tid = held.key[1]
        record_length = held.domain.record_lengths.get(tid, 0)
        records = max(1, len(held.body) // record_length) if record_length else 1
        held.domain.given_up += records
        out.given_up += records
        out.problem(held.domain, "template_missing", f"gave up a held data set for template {tid}: {why}")

    def _release(self, key: tuple[_DomainKey, int]) -> list[_Held]:
        held = self._held_by.pop(key, [])
        for h in held:
            h.released = True
            self._held_bytes -= len(h.body)
        return held

    # -- v5 --

    def _decode_v5(self, packet: bytes, exporter: bytes, received_ns: int, now: float, out: _Out) -> None:
        if len(packet) < _V5_HEADER.size:
            domain = self._domain((exporter, 5, 0), now)
            out.problem(domain, "truncated", f"{len(packet)} bytes are shorter than the 24-byte header")
            return
        _, count, uptime, secs, nsecs, sequence, engine_type, engine_id, sampling = _V5_HEADER.unpack_from(packet)
        domain = self._domain((exporter, 5, engine_type << 8 | engine_id), now)
        domain.packets += 1
        if domain.next_sequence is not None and sequence != domain.next_sequence:
            domain.sequence_gaps += 1
        domain.next_sequence = (sequence + count) % _U32  # v5 counts flows
        rate = (sampling & 0x3FFF) or 1  # the top 2 bits are the sampling mode
        if rate != domain.rate:
            domain.rate, domain.source = rate, None
        room = (len(packet) - _V5_HEADER.size) // _V5_PLAN.record_length
        if count > room:
            out.problem(domain, "truncated", f"the header counts {count} records but {len(packet)} bytes hold {room}")
        n = min(count, room)
        if n == 0:
            return
        out.sets.add(packet, _V5_HEADER.size, n, _V5_PLAN, _Context(received_ns, secs * 1_000_000_000 + nsecs, uptime))
        out.sets.close(domain)
        domain.flows += n

    # -- v9 and IPFIX --

    def _decode_template_based(
        self, packet: bytes, version: int, exporter: bytes, received_ns: int, now: float, out: _Out
    ) -> None:
        size = len(packet)
        header = _V9_HEADER if version == 9 else _IPFIX_HEADER
        if size < header.size:
            domain = self._domain((exporter, version, 0), now)
            out.problem(domain, "truncated", f"{size} bytes are shorter than the {header.size}-byte header")
            return
        end = size
        if version == 9:
            _, _, uptime, secs, sequence, domain_id = _V9_HEADER.unpack_from(packet)
            context = _Context(received_ns, secs * 1_000_000_000, uptime)
        else:
            _, length, secs, sequence, domain_id = _IPFIX_HEADER.unpack_from(packet)
            context = _Context(received_ns, secs * 1_000_000_000, 0)
        key: _DomainKey = (exporter, version, domain_id)
        domain = self._domain(key, now)
        domain.packets += 1
        if version == 10:
            if length < header.size:
                out.problem(domain, "bad_length", f"the message length {length} is shorter than the 16-byte header")
            elif length > size:
                out.problem(domain, "truncated", f"the header says {length} bytes but the packet has {size}")
            else:
                end = length  # whatever follows the message is not part of it
        if domain.next_sequence is not None and sequence != domain.next_sequence:
            domain.sequence_gaps += 1
        records, held = self._walk_sets(packet, header.size, end, domain, key, context, now, out)
        out.sets.close(domain)
        # v9 counts packets; IPFIX counts data records, unknown while some wait for their template.
        if version == 9:
            domain.next_sequence = (sequence + 1) % _U32
        else:
            domain.next_sequence = None if held else (sequence + records) % _U32

    def _walk_sets(
        self,
        packet: bytes,
        pos: int,
        end: int,
        domain: _Domain,
        key: _DomainKey,
        context: _Context,
        now: float,
        out: _Out,
    ) -> tuple[int, bool]:
        """Handle the sets in order, flow records into `out.sets` (they become columns once the whole
        packet is read, so times can use an init time sent later in it). Returns the data records
        read (flows and options, not those released from earlier packets) and whether a set was held."""
        template_set, options_set = (0, 1) if domain.version == 9 else (2, 3)
        records, held = 0, False
        while pos < end:
            if end - pos < _SET_HEADER.size:
                if any(packet[pos:end]):
                    out.problem(domain, "truncated", f"{end - pos} bytes after the last set are too few for a set")
                break
            set_id, set_length = _SET_HEADER.unpack_from(packet, pos)
            if set_length < _SET_HEADER.size:
                kind = _set_kind(set_id, template_set, options_set)
                out.problem(domain, "set_length", f"{kind} {set_id} has length {set_length}, less than its header")
                break
            if set_length > end - pos:
                kind = _set_kind(set_id, template_set, options_set)
                message = f"{kind} {set_id} is longer than the packet ({set_length} > {end - pos} bytes)"
                out.problem(domain, "set_length", message)
                break
            body, body_end = pos + _SET_HEADER.size, pos + set_length
            pos = body_end
            if set_id in (template_set, options_set):
                parse = self._templates if set_id == template_set else self._options_templates
                for tid in parse(packet, body, body_end, domain, now, out):
                    self._on_template(key, domain, tid, out)
            elif set_id >= 256:
                template = domain.templates.get(set_id)
                if template is None:
                    self._hold(_Held(domain, (key, set_id), packet[body:body_end], context, now), out)
                    held = True
                elif template.options:
                    records += self._options_data(packet, body, body_end, set_id, template, domain, out)
                else:
                    assert template.plan is not None
                    records += self._flows(packet, body, body_end, set_id, template.plan, context, domain, out)
            else:
                out.problem(domain, "reserved_set", f"set id {set_id} is reserved (skipped {set_length} bytes)")
        return records, held

    def _on_template(self, key: _DomainKey, domain: _Domain, tid: int, out: _Out) -> None:
        """Release the data sets held for a template that just arrived."""
        template = domain.templates[tid]
        for held in self._release((key, tid)):
            if template.options:
                self._options_data(held.body, 0, len(held.body), tid, template, domain, out)
            else:
                assert template.plan is not None
                self._flows(held.body, 0, len(held.body), tid, template.plan, held.context, domain, out)

    def _template(
        self,
        data: bytes,
        pos: int,
        end: int,
        tid: int,
        count: int,
        scope_count: int,
        domain: _Domain,
        now: float,
        out: _Out,
        *,
        options: bool = False,
    ) -> tuple[int, bool] | None:
        """Read one (options) template's `count` field specifiers at `pos` and keep it if valid: the
        position after it and whether it was kept, or None when it runs past the end of its set."""
        kind = "options template" if options else "template"
        ipfix = domain.version == 10
        parsed = _field_specs(data, pos, end, count, ipfix)
        if parsed is None:
            out.problem(domain, "bad_template", f"{kind} {tid} runs past the end of its set")
            return None
        fields, pos = parsed
        problem = _template_problem(kind, tid, fields, ipfix)
        if problem:
            out.problem(domain, "bad_template", problem)
            return pos, False
        if tid not in domain.templates and len(domain.templates) >= self.config.max_templates_per_domain:
            limit = self.config.max_templates_per_domain
            out.problem(domain, "too_many_templates", f"{kind} {tid} refused: the domain already has {limit}")
            return pos, False
        self._store(domain, tid, _Template(fields, scope_count, options, _min_length(fields), now, None))
        return pos, True

    def _store(self, domain: _Domain, tid: int, template: _Template) -> None:
        old = domain.templates.get(tid)
        if (
            old is not None
            and old.fields == template.fields
            and old.options == template.options
            and old.scope_count == template.scope_count
        ):
            old.refreshed = template.refreshed  # an unchanged refresh keeps the compiled plan
            return
        if not template.options:
            template.plan = self._plan(template.fields)
        domain.templates[tid] = template
        domain.record_lengths[tid] = template.min_length

    def _templates(self, data: bytes, pos: int, end: int, domain: _Domain, now: float, out: _Out) -> list[int]:
        """Parse a template set: store, replace or withdraw templates; return the ids stored."""
        stored: list[int] = []
        ipfix = domain.version == 10
        while end - pos >= 4:
            tid, count = _SET_HEADER.unpack_from(data, pos)
            if tid == 0 and not any(data[pos:end]):
                break  # padding
            pos += 4
            if count == 0:
                if not ipfix:
                    out.problem(domain, "bad_template", f"template {tid} has no fields")
                elif tid == 2:  # RFC 7011 §8.1: withdraws every data template of the domain
                    for old in [t for t, tpl in domain.templates.items() if not tpl.options]:
                        del domain.templates[old]
                elif tid >= 256:
                    domain.templates.pop(tid, None)
                else:
                    out.problem(domain, "bad_template", f"a withdrawal names template {tid}, below 256")
                continue
            read = self._template(data, pos, end, tid, count, 0, domain, now, out)
            if read is None:
                break
            pos, kept = read
            if kept:
                stored.append(tid)
        return stored

    def _options_templates(self, data: bytes, pos: int, end: int, domain: _Domain, now: float, out: _Out) -> list[int]:
        """Parse an options template set (v9 set 1 by scope/option byte lengths, IPFIX set 3 by counts)."""
        stored: list[int] = []
        ipfix = domain.version == 10
        while end - pos >= 4:
            tid, count = _SET_HEADER.unpack_from(data, pos)
            if tid == 0 and not any(data[pos:end]):
                break  # padding
            if ipfix and count == 0:  # a withdrawal; template id 3 withdraws every options template
                if tid == 3:
                    for old in [t for t, tpl in domain.templates.items() if tpl.options]:
                        del domain.templates[old]
                else:
                    domain.templates.pop(tid, None)
                pos += 4
                continue
            if end - pos < 6:
                out.problem(domain, "bad_template", f"options template {tid} is cut short by the end of its set")
                break
            third = int.from_bytes(data[pos + 4 : pos + 6], "big")
            pos += 6
            if ipfix:
                scope_count = third
                if not 1 <= scope_count <= count:
                    message = f"options template {tid} has {scope_count} scope fields of {count} (1 or more expected)"
                    out.problem(domain, "bad_template", message)
                    break
            else:
                scope_bytes, option_bytes = count, third
                if scope_bytes % 4 or option_bytes % 4 or scope_bytes + option_bytes == 0:
                    message = (
                        f"options template {tid} has scope length {scope_bytes} and option length {option_bytes}"
                        " (non-zero multiples of 4 expected)"
                    )
                    out.problem(domain, "bad_template", message)
                    break
                count, scope_count = (scope_bytes + option_bytes) // 4, scope_bytes // 4
            read = self._template(data, pos, end, tid, count, scope_count, domain, now, out, options=True)
            if read is None:
                break
            pos, kept = read
            if kept:
                stored.append(tid)
        return stored

    def _options_data(
        self, data: bytes, pos: int, end: int, tid: int, template: _Template, domain: _Domain, out: _Out
    ) -> int:
        """Apply the sampling rates and init time of an options data set; return its record count."""
        # v9 scope fields carry scope types (1 System, 2 Interface...), not information elements.
        first_ie = template.scope_count if domain.version == 9 else 0
        records = 0
        for values in _option_records(data, pos, end, tid, template, first_ie, domain, out):
            records += 1
            domain.source = None  # records of later packets take the new values
            if 160 in values:
                domain.init_ms = values[160]
            rate = _option_rate(values)
            if rate is None:
                continue
            sampler = values.get(48)
            if sampler is not None and (sampler in domain.sampler_rates or len(domain.sampler_rates) < _MAX_SAMPLERS):
                # A new dict, not an update: packets decoded earlier keep the rates they were sent under.
                domain.sampler_rates = {**domain.sampler_rates, sampler: rate}
            domain.rate = rate  # the domain-wide rate for data that names no sampler
        return records

    def _flows(
        self,
        packet: bytes,
        start: int,
        end: int,
        tid: int,
        plan: _Plan,
        context: _Context,
        domain: _Domain,
        out: _Out,
    ) -> int:
        """Add a flow data set's records to `out.sets`; return their count."""
        if plan.variable:
            packet, n = _gather(packet, start, end, tid, plan, domain, out)
            start = 0
        else:
            n = (end - start) // plan.record_length  # a shorter tail is padding
        if n == 0 or not plan.is_flow:
            return n
        out.sets.add(packet, start, n, plan, context)
        domain.flows += n
        return n


# ---- wire helpers --------------------------------------------------------------------------------


def _set_kind(set_id: int, template_set: int, options_set: int) -> str:
    if set_id == template_set:
        return "template set"
    if set_id == options_set:
        return "options template set"
    return "data set" if set_id >= 256 else "set"


def _field_specs(data: bytes, pos: int, end: int, count: int, ipfix: bool) -> tuple[tuple[_Field, ...], int] | None:
    """`count` field specifiers from `pos`, and where they end; None if they run past `end`."""
    if end - pos < 4 * count:
        return None
    words = struct.unpack_from(f"!{2 * count}H", data, pos)
    if not ipfix or not any(ie & 0x8000 for ie in words[::2]):  # the common case: one unpack
        return tuple(zip(words[::2], words[1::2], (0,) * count, strict=True)), pos + 4 * count
    fields: list[_Field] = []
    for _ in range(count):
        if end - pos < 4:
            return None
        ie, length = _SET_HEADER.unpack_from(data, pos)
        pos += 4
        enterprise = 0
        if ie & 0x8000:  # RFC 7011 §3.2: a Private Enterprise Number follows
            if end - pos < 4:
                return None
            enterprise = int.from_bytes(data[pos : pos + 4], "big")
            ie &= 0x7FFF
            pos += 4
        fields.append((ie, length, enterprise))
    return tuple(fields), pos


def _template_problem(what: str, tid: int, fields: tuple[_Field, ...], ipfix: bool) -> str:
    if tid < 256:
        return f"{what} id {tid} is below 256"
    for ie, length, _ in fields:
        if length == 0:
            return f"{what} {tid} gives element {ie} length 0"
        if length == _VARIABLE and not ipfix:
            return f"{what} {tid} gives element {ie} length 65535 (variable length is IPFIX only)"
    return ""


def _min_length(fields: tuple[_Field, ...]) -> int:
    return sum(1 if length == _VARIABLE else length for _, length, _ in fields)


def _field_length(data: bytes, p: int, end: int) -> tuple[int, int]:
    """A variable-length field's length and where its value starts (RFC 7011 §7); (-1, p) if cut."""
    if p >= end:
        return -1, p
    length = data[p]
    if length < 255:
        return length, p + 1
    if end - p < 3:
        return -1, p
    return data[p + 1] << 8 | data[p + 2], p + 3


def _option_records(
    data: bytes, pos: int, end: int, tid: int, template: _Template, first_ie: int, domain: _Domain, out: _Out
) -> list[dict[int, int]]:
    """The sampling and init-time values of each options record (rare and short: a Python loop)."""
    records: list[dict[int, int]] = []
    fields = template.fields
    while end - pos >= template.min_length:
        values: dict[int, int] = {}
        p = pos
        for i, (ie, length, enterprise) in enumerate(fields):
            if length == _VARIABLE:
                length, p = _field_length(data, p, end)
            if length < 0 or end - p < length:
                out.problem(domain, "bad_record", f"a record of options template {tid} runs past its data set")
                return records
            if i >= first_ie and not enterprise and ie in _OPTION_IES and 1 <= length <= 8:
                values[ie] = int.from_bytes(data[p : p + length], "big")
            p += length
        pos = p
        records.append(values)
    return records


def _option_rate(values: dict[int, int]) -> int | None:
    interval = values.get(305)
    if interval:  # selects `interval` packets of every interval + space (RFC 5477 §8.2.2)
        rate = round((interval + values.get(306, 0)) / interval)
    elif 50 in values:
        rate = values[50]
    elif 34 in values:
        rate = values[34]
    else:
        return None
    return min(max(rate, 1), _U32 - 1)  # 0 means unsampled


def _gather(data: bytes, pos: int, end: int, tid: int, plan: _Plan, domain: _Domain, out: _Out) -> tuple[bytes, int]:
    """Copy the mapped fields of each variable-length record into the packed layout of `plan`."""
    packed = bytearray()
    n = 0
    steps = tuple(zip(plan.steps, plan.keep, strict=True))
    while end - pos >= plan.record_length:
        p = pos
        mark = len(packed)
        for length, keep in steps:
            if length < 0:
                length, p = _field_length(data, p, end)
            if length < 0 or end - p < length:
                del packed[mark:]
                out.problem(domain, "bad_record", f"a record of template {tid} runs past its data set")
                return bytes(packed), n
            if keep:
                packed += data[p : p + length]
            p += length
        pos = p
        n += 1
    return bytes(packed), n


# ---- columns -------------------------------------------------------------------------------------


def _table(sets: _Sets) -> pa.Table:
    """The flows of `sets` as one table. The records of one template and version, whatever packet
    they came in, are joined into one array first, so each column costs a few numpy operations per
    group rather than per packet; groups follow each other in the order they first appear."""
    n = sum(sets.counts)
    if n == 0:
        return _EMPTY
    keys = [(id(plan), source.version) for plan, source in zip(sets.plans, sets.sources, strict=True)]
    groups = [sets]
    if keys.count(keys[0]) != len(keys):
        by_key: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(keys):
            by_key.setdefault(key, []).append(i)
        groups = [sets.subset(indices) for indices in by_key.values()]
    columns = {name: np.zeros((n, *shape), dtype) for name, _, dtype, shape in _COLUMNS if dtype is not None}
    start = 0
    for group in groups:
        end = start + sum(group.counts)
        _write(columns, start, end, group)
        start = end
    blank = [None, pa.py_buffer(np.zeros(n + 1, np.int32)), pa.py_buffer(b"")]  # "" in every row
    arrays = [
        pa.Array.from_buffers(type_, n, blank if dtype is None else [None, pa.py_buffer(columns[name])])
        for name, type_, dtype, _ in _COLUMNS
    ]
    return pa.Table.from_batches([pa.RecordBatch.from_arrays(arrays, schema=FLOWS_ARROW_SCHEMA)])


def _spread(values: Sequence[int], counts: list[int], dtype: Any) -> Any:
    """One value per set as one per row: a scalar when every set has the same (the common case)."""
    if values.count(values[0]) == len(values):
        return dtype(values[0])
    return np.repeat(np.array(values, dtype), counts)


def _uint(a: _Array, length: int, dtype: type[np.unsignedinteger[Any]]) -> _Array:
    if a.ndim == 2:  # 3, 5, 6 or 7 bytes, big-endian
        value: _Array = np.zeros(len(a), np.uint64)
        for i in range(length):
            value = (value << 8) | a[:, i]
        return value.astype(dtype)
    return a.astype(dtype)  # narrowing keeps the low bits (a 2-byte tcpFlags keeps its low byte)


def _ns_before(t_ns: Any, delta_ms: _Array) -> _Array:
    """`t_ns` (int64 ns, per row or one) less uint32 milliseconds (modular sysUpTime differences)."""
    result: _Array = np.maximum(t_ns - delta_ms.astype(np.int64) * 1_000_000, 0)
    return result


def _ntp_ns(v: _Array, micro: bool) -> _Array:
    """RFC 7011 §6.1.9-10 NTP timestamps to unix ns; 0 stays 0 (an unset time)."""
    seconds = (v >> 32).astype(np.int64)
    fraction = v & 0xFFFFFFFF
    if micro:
        fraction &= 0xFFFFF800  # dateTimeMicroseconds: the low 11 bits of the fraction are ignored
    seconds = np.where(seconds < 2**31, seconds + _U32, seconds) - _NTP_TO_UNIX_S  # RFC 4330 §3: eras
    ns = seconds * 1_000_000_000 + ((fraction * 1_000_000_000 + 2**31) >> 32).astype(np.int64)  # to the nearest
    if micro:  # 2**-21 s steps: back to the microsecond they stand for
        ns = (ns + 500) // 1000 * 1000
    result: _Array = np.where(v == 0, 0, np.maximum(ns, 0))
    return result


def _time(rec: _Array, spec: tuple[str, int, str] | None, sets: _Sets, export: Any) -> Any:
    """A time column (int64 ns per row, or one value for all), or None when the template has none."""
    if spec is None:
        return None
    name, length, kind = spec
    a = rec[name]
    if kind == "ms":
        return np.minimum(_uint(a, length, np.uint64), _MAX_MS).astype(np.int64) * 1_000_000
    if kind == "s":
        return np.minimum(_uint(a, length, np.uint64), _MAX_S).astype(np.int64) * 1_000_000_000
    if kind in ("us", "ns"):
        return _ntp_ns(a.astype(np.uint64), kind == "us")
    uptime = _uint(a, length, np.uint32)
    counts = sets.counts
    if sets.sources[0].version != 10:  # v5 and v9: relative to the header's sysUptime
        # Modular, as nfdump does: flows from before the exporter's boot (softflowd replaying a pcap)
        # wrap, and (sysUptime - first) mod 2**32 still gives their age at export.
        return _ns_before(export, _spread(sets.uptimes, counts, np.uint32) - uptime)
    # IPFIX: init + uptime, computed backwards from the export time (rounded up, as the header has
    # whole seconds) so that wrapped values land just before the export like v9's. Without an init
    # time, the export time. Per set in Python: the init time is a wire value of up to 64 bits.
    bases, uptimes_now, known = [], [], []
    for export_ns, source in zip(sets.exported, sets.sources, strict=True):
        horizon_ms = export_ns // 1_000_000 + 1000
        bases.append(horizon_ms * 1_000_000)
        uptimes_now.append(0 if source.init_ms is None else (horizon_ms - source.init_ms) % _U32)
        known.append(source.init_ms is not None)
    if not any(known):
        return export
    times = _ns_before(_spread(bases, counts, np.int64), _spread(uptimes_now, counts, np.uint32) - uptime)
    return times if all(known) else np.where(_spread(known, counts, np.bool_), times, export)


def _rates(rec: _Array, roles: dict[str, tuple[str, int, str]], sets: _Sets) -> Any:
    spec = roles.get("interval")
    if spec is not None:  # a per-record samplingInterval
        interval = _uint(rec[spec[0]], spec[1], np.uint64)
        return np.where(interval == 0, 1, np.minimum(interval, _U32 - 1)).astype(np.uint32)
    spec = roles.get("sampler")
    sources = sets.sources
    if spec is None or not any(source.sampler_rates for source in sources):
        return _spread([source.rate for source in sources], sets.counts, np.uint32)
    samplers = _uint(rec[spec[0]], spec[1], np.uint64)
    rates: _Array = np.empty(len(samplers), np.uint32)
    start = end = 0
    for i, source in enumerate(sources):  # runs of sets sent under the same rates share a lookup
        end += sets.counts[i]
        following = sources[i + 1] if i + 1 < len(sources) else None
        if following is not None and following.sampler_rates is source.sampler_rates and following.rate == source.rate:
            continue
        ids, inverse = np.unique(samplers[start:end], return_inverse=True)
        known = source.sampler_rates
        rates[start:end] = np.array([known.get(int(s), source.rate) for s in ids], np.uint32)[inverse]
        start = end
    return rates


def _raw(rec: _Array, spec: tuple[str, int, str]) -> _Array:
    """A field's values, ready to assign into a column (numpy casts on assignment; narrowing keeps the
    low bits, so a 2-byte tcpFlags keeps its low byte)."""
    a: _Array = rec[spec[0]]
    return _uint(a, spec[1], np.uint64) if a.ndim == 2 else a


def _write(columns: dict[str, _Array], start: int, end: int, sets: _Sets) -> None:
    """Write the columns of `sets` (one template and version) into rows `start:end`; absent fields stay 0."""
    plan = sets.plans[0]
    length = plan.dtype.itemsize
    counts = sets.counts
    if len(counts) == 1:
        rec = np.frombuffer(sets.data[0], plan.dtype, count=counts[0], offset=sets.starts[0])
    else:
        views = zip(sets.data, sets.starts, counts, strict=True)
        rec = np.frombuffer(b"".join([memoryview(data)[at : at + n * length] for data, at, n in views]), plan.dtype)
    roles = plan.roles
    rows = slice(start, end)
    for role, column in _DIRECT:
        spec = roles.get(role)
        if spec is not None:
            columns[column][rows] = _raw(rec, spec)
    for role, column in (("src", "SrcAddr"), ("dst", "DstAddr")):
        spec = roles.get(role)
        if spec is None:
            continue
        if spec[2] == "v4":
            columns[column][rows, 10:12] = 0xFF  # ::ffff:a.b.c.d
            columns[column][rows, 12:] = rec[spec[0]]
        else:
            columns[column][rows] = rec[spec[0]]
    icmp: _Array | None = None
    if "icmp" in roles:
        icmp = _raw(rec, roles["icmp"]).astype(np.uint16)
    elif "icmp_type" in roles:
        code = _raw(rec, roles["icmp_code"]).astype(np.uint16) if "icmp_code" in roles else 0
        icmp = (_raw(rec, roles["icmp_type"]).astype(np.uint16) << 8) | code
    if icmp is not None:
        # ICMP type and code go in DstPort as type*256 + code, as nfdump shows them.
        dport = columns["DstPort"][rows]
        if "dport" not in roles:
            dport[:] = icmp
        else:
            proto = columns["Protocol"][rows]
            dport[:] = np.where((dport == 0) & ((proto == 1) | (proto == 58)), icmp, dport)
    export = _spread(sets.exported, counts, np.int64)
    first = _time(rec, roles.get("start"), sets, export)
    last = _time(rec, roles.get("end"), sets, export)
    # No start or no end: the other one; neither: the export time is the best there is.
    columns["FlowStart"][rows] = first if first is not None else last if last is not None else export
    columns["FlowEnd"][rows] = last if last is not None else first if first is not None else export
    columns["TimeReceived"][rows] = _spread(sets.received, counts, np.int64)
    columns["SamplingRate"][rows] = _rates(rec, roles, sets)
    exporters = [source.exporter for source in sets.sources]
    if exporters.count(exporters[0]) == len(exporters):
        columns["Exporter"][rows] = np.frombuffer(exporters[0], np.uint8)
    else:
        by_part = np.frombuffer(b"".join(exporters), np.uint8).reshape(-1, 16)
        columns["Exporter"][rows] = np.repeat(by_part, counts, axis=0)
    columns["FlowVersion"][rows] = sets.sources[0].version
    columns["ObservationDomain"][rows] = _spread([source.domain_id for source in sets.sources], counts, np.uint32)
