"""NetFlow v5, v9 and IPFIX packets for tests and benchmarks, written independently of Vigil's decoder.

Headers, template sets, v5 records and data sets are built with scapy's NetFlow layers; record values,
options template sets and withdrawals with `struct`, because scapy cannot: its record classes cannot
hold enterprise or variable-length fields, its IPFIX options template set drops its option fields
when it pads, and it gives option enterprise numbers 2 bytes instead of 4.

A field is ``(element id, length)`` or ``(element id, length, enterprise number)``; length 65535 is
an IPFIX variable-length field. A value is an int (big-endian, of the field's length), an IP address
as text, or bytes (exactly the field's length). A variable-length value is bytes or text, without
the length prefix, which `encode_record` adds.

Also here: the pcap of PEERS.md §3.1 with the flows it holds (`write_flows_pcap`), the datagrams real
softflowd exports for it (`softflowd_datagrams`), and `flow_rows`, a flows table as comparable dicts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.netflow import (
    NetflowDataflowsetV9,
    NetflowFlowsetV9,
    NetflowHeader,
    NetflowHeaderV5,
    NetflowHeaderV9,
    NetflowHeaderV10,
    NetflowRecordV5,
    NetflowRecordV9,
    NetflowTemplateV9,
)
from scapy.layers.netflow import NetflowTemplateFieldV9 as ScapyField
from scapy.packet import Raw
from scapy.utils import wrpcap

__all__ = [
    "SOFTFLOWD_ICMP",
    "SOFTFLOWD_ICMP6",
    "SOFTFLOWD_V4",
    "SOFTFLOWD_V4_UPTIME",
    "SOFTFLOWD_V6",
    "VARIABLE",
    "Field",
    "PcapFlow",
    "V5Record",
    "Value",
    "data_set",
    "encode_record",
    "flow_rows",
    "ipfix_packet",
    "options_template_set",
    "softflowd_datagrams",
    "softflowd_like",
    "template_set",
    "v5_packet",
    "v9_packet",
    "withdrawal_set",
    "write_flows_pcap",
]

Field = tuple[int, int] | tuple[int, int, int]
Value = int | str | bytes
VARIABLE = 65535

# The templates softflowd 1.1.0 sends (PEERS.md §3.1): with -A milli (absolute ms), and without.
SOFTFLOWD_V4: tuple[Field, ...] = ((8, 4), (12, 4), (152, 8), (153, 8), (1, 4), (2, 4), (10, 4), (14, 4), (61, 1),
                                   (136, 1), (7, 2), (11, 2), (4, 1), (6, 1), (60, 1), (5, 1))  # fmt: skip
SOFTFLOWD_V4_UPTIME: tuple[Field, ...] = tuple((22, 4) if f[0] == 152 else (21, 4) if f[0] == 153 else f
                                               for f in SOFTFLOWD_V4)  # fmt: skip
SOFTFLOWD_ICMP: tuple[Field, ...] = ((8, 4), (12, 4), (152, 8), (153, 8), (1, 4), (2, 4), (10, 4), (14, 4), (61, 1),
                                     (136, 1), (32, 2), (4, 1), (60, 1), (5, 1))  # fmt: skip
SOFTFLOWD_V6: tuple[Field, ...] = ((27, 16), (28, 16), *SOFTFLOWD_V4[2:])
SOFTFLOWD_ICMP6: tuple[Field, ...] = ((27, 16), (28, 16), *SOFTFLOWD_ICMP[2:10], (139, 2), *SOFTFLOWD_ICMP[11:])


# ---- records and sets ----------------------------------------------------------------------------


def _value_bytes(value: Value, length: int) -> bytes:
    if isinstance(value, str):
        packed = ipaddress.ip_address(value).packed
        if len(packed) != length:
            raise ValueError(f"address {value} does not fit a {length}-byte field")
        return packed
    if isinstance(value, bytes):
        if length != VARIABLE and len(value) != length:
            raise ValueError(f"{len(value)} bytes given for a {length}-byte field")
        return value
    return value.to_bytes(length, "big")


def encode_record(fields: Sequence[Field], values: Sequence[Value]) -> bytes:
    """One data record: each value in its field's length; variable-length values get their prefix
    (1 byte below 255, else 255 and 2 bytes, RFC 7011 §7)."""
    if len(fields) != len(values):
        raise ValueError(f"{len(values)} values for {len(fields)} fields")
    out = bytearray()
    for f, value in zip(fields, values, strict=True):
        if f[1] == VARIABLE:
            if isinstance(value, int):
                raise ValueError("a variable-length value must be bytes or text")
            raw = value if isinstance(value, bytes) else value.encode()
            out += bytes([len(raw)]) if len(raw) < 255 else b"\xff" + struct.pack("!H", len(raw))
            out += raw
        else:
            out += _value_bytes(value, f[1])
    return bytes(out)


def _scapy_field(f: Field) -> ScapyField:
    if len(f) == 3:
        return ScapyField(enterpriseBit=1, fieldType=f[0], fieldLength=f[1], enterpriseNumber=f[2])
    return ScapyField(fieldType=f[0], fieldLength=f[1])


def template_set(version: int, templates: Sequence[tuple[int, Sequence[Field]]]) -> bytes:
    """A template set (v9 flowset 0, IPFIX set 2) of (template id, fields) pairs."""
    return bytes(
        NetflowFlowsetV9(
            flowSetID=0 if version == 9 else 2,
            templates=[
                NetflowTemplateV9(
                    templateID=tid, fieldCount=len(fields), template_fields=[_scapy_field(f) for f in fields]
                )
                for tid, fields in templates
            ],
        )
    )


def withdrawal_set(template_ids: Sequence[int], *, options: bool = False) -> bytes:
    """An IPFIX template withdrawal (RFC 7011 §8.1): each id with a field count of 0."""
    body = b"".join(struct.pack("!HH", tid, 0) for tid in template_ids)
    return struct.pack("!HH", 3 if options else 2, 4 + len(body)) + body


def _field_specs(fields: Sequence[Field]) -> bytes:
    out = b""
    for f in fields:
        if len(f) == 3:
            out += struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack("!HH", f[0], f[1])
    return out


def options_template_set(version: int, template_id: int, scopes: Sequence[Field], options: Sequence[Field]) -> bytes:
    """An options template set with one template, padded to 4 bytes. v9 (flowset 1) gives scope and
    option lengths in bytes, and its scope "fields" are scope types (1 System, 2 Interface...); IPFIX
    (set 3) gives the field count and the scope field count."""
    if version == 9:
        head = struct.pack("!HHH", template_id, 4 * len(scopes), 4 * len(options))
    else:
        head = struct.pack("!HHH", template_id, len(scopes) + len(options), len(scopes))
    body = head + _field_specs([*scopes, *options])
    body += bytes(-(4 + len(body)) % 4)
    return struct.pack("!HH", 1 if version == 9 else 3, 4 + len(body)) + body


def data_set(
    template_id: int, fields: Sequence[Field], records: Sequence[Sequence[Value]], *, pad: bool = True
) -> bytes:
    """A data set of `records` under the template `fields`; scapy pads it to 4 bytes unless `pad` is False."""
    raws = [encode_record(fields, values) for values in records]
    if not pad:
        body = b"".join(raws)
        return struct.pack("!HH", template_id, 4 + len(body)) + body
    return bytes(NetflowDataflowsetV9(templateID=template_id, records=[NetflowRecordV9(fieldValue=r) for r in raws]))


# ---- packets -------------------------------------------------------------------------------------


def v9_packet(
    sets: Sequence[bytes],
    *,
    uptime_ms: int,
    unix_secs: int,
    sequence: int = 0,
    source_id: int = 0,
    count: int | None = None,
) -> bytes:
    """A NetFlow v9 packet; `count` defaults to the number of sets (collectors must not rely on it)."""
    header = NetflowHeaderV9(
        count=len(sets) if count is None else count,
        sysUptime=uptime_ms,
        unixSecs=unix_secs,
        packageSequence=sequence,
        SourceID=source_id,
    )
    return bytes(NetflowHeader(version=9) / header / Raw(b"".join(sets)))


def ipfix_packet(sets: Sequence[bytes], *, export_time: int, sequence: int = 0, domain: int = 0) -> bytes:
    """An IPFIX message. Its length is set here: scapy 2.8 leaves the version field out of it (2 short)."""
    body = b"".join(sets)
    header = NetflowHeaderV10(
        length=16 + len(body), ExportTime=export_time, flowSequence=sequence, ObservationDomainID=domain
    )
    return bytes(NetflowHeader(version=10) / header / Raw(body))


@dataclass(frozen=True, slots=True)
class V5Record:
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    proto: int = 6
    tcp_flags: int = 0
    tos: int = 0
    packets: int = 1
    bytes: int = 60
    first: int = 0  # sysUptime ms
    last: int = 0
    input: int = 0
    output: int = 0
    src_as: int = 0
    dst_as: int = 0
    nexthop: str = "0.0.0.0"


def v5_packet(
    records: Sequence[V5Record],
    *,
    uptime_ms: int,
    unix_secs: int,
    unix_nsecs: int = 0,
    sequence: int = 0,
    engine_type: int = 0,
    engine_id: int = 0,
    sampling: int = 0,
    count: int | None = None,
) -> bytes:
    """A NetFlow v5 packet; `sampling` is the raw header field (mode in the top 2 bits)."""
    header = NetflowHeaderV5(
        count=len(records) if count is None else count,
        sysUptime=uptime_ms,
        unixSecs=unix_secs,
        unixNanoSeconds=unix_nsecs,
        flowSequence=sequence,
        engineType=engine_type,
        engineID=engine_id,
        samplingInterval=sampling,
    )
    packet = NetflowHeader(version=5) / header
    for r in records:
        packet = packet / NetflowRecordV5(
            src=r.src, dst=r.dst, nexthop=r.nexthop, input=r.input, output=r.output, dpkts=r.packets,
            dOctets=r.bytes, first=r.first, last=r.last, srcport=r.sport, dstport=r.dport, tcpFlags=r.tcp_flags,
            prot=r.proto, tos=r.tos, src_as=r.src_as, dst_as=r.dst_as,
        )  # fmt: skip
    return bytes(packet)


def softflowd_like(version: int, records: int, seed: int = 1) -> tuple[bytes, bytes]:
    """A template packet and a data packet shaped like softflowd's (template 1024, -A milli; v5 has no
    template, so its first packet is the data packet too), with `records` random TCP/UDP flows."""
    rng = random.Random(seed)
    now = 1_700_000_000
    if version == 5:
        flows = [
            V5Record(
                src=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                dst=f"192.0.2.{rng.randrange(1, 255)}",
                sport=rng.randrange(1024, 65536),
                dport=rng.choice([53, 80, 443]),
                proto=rng.choice([6, 17]),
                tcp_flags=0x1B,
                packets=rng.randrange(1, 100),
                bytes=rng.randrange(40, 150_000),
                first=3_000_000 - rng.randrange(60_000),
                last=3_000_000,
                input=1,
                output=2,
            )
            for _ in range(records)
        ]
        packet = v5_packet(flows, uptime_ms=3_000_000, unix_secs=now)
        return packet, packet
    values: list[list[Value]] = []
    for _ in range(records):
        start = now * 1000 - rng.randrange(60_000)
        values.append([
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", f"192.0.2.{rng.randrange(1, 255)}",
            start, start + rng.randrange(1000), rng.randrange(40, 150_000), rng.randrange(1, 100), 1, 2, 0, 2,
            rng.randrange(1024, 65536), rng.choice([53, 80, 443]), rng.choice([6, 17]), 0x1B, 4, 0,
        ])  # fmt: skip
    sets = [data_set(1024, SOFTFLOWD_V4, values)]
    templates = [template_set(version, [(1024, SOFTFLOWD_V4)])]
    if version == 9:
        return v9_packet(templates, uptime_ms=1000, unix_secs=now), v9_packet(sets, uptime_ms=1000, unix_secs=now)
    return ipfix_packet(templates, export_time=now), ipfix_packet(sets, export_time=now)


# ---- rows ----------------------------------------------------------------------------------------


def _address(raw: bytes) -> str:
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def flow_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of a flows table, with addresses as text (IPv4 unmapped) and times as int ns."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        columns[name] = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
    rows = pa.table(columns).to_pylist()
    for row in rows:
        for key in ("Exporter", "SrcAddr", "DstAddr"):
            row[key] = _address(row[key])
    return rows


# ---- the pcap of PEERS.md §3.1, and softflowd ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PcapFlow:
    """One unidirectional flow of a pcap, as an exporter should report it (bytes are IP lengths)."""

    src: str
    dst: str
    sport: int
    dport: int  # ICMP: type*256 + code
    proto: int
    bytes: int
    packets: int
    tcp_flags: int
    first_ns: int
    last_ns: int


def write_flows_pcap(path: Path, start: int) -> list[PcapFlow]:
    """Write PEERS.md §3.1's pcap (4 TCP conversations, 3 UDP flows, 1 ICMP echo: 112 packets,
    48,888 IP bytes) with packets 10 ms apart from unix second `start`; return its 12 flows."""
    packets: list[Any] = []
    times_ns: list[int] = []

    def add(p: Any) -> None:
        times_ns.append(start * 1_000_000_000 + len(packets) * 10_000_000)
        p.time = start + len(packets) / 100  # the pcap keeps microseconds, rounded: exact here
        packets.append(p)

    def eth() -> Ether:
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    for i in range(4):
        c, s, sp, dp = f"10.0.0.{i + 1}", "10.0.1.10", 40000 + i, [80, 443, 22, 8080][i]
        add(eth() / IP(src=c, dst=s) / TCP(sport=sp, dport=dp, flags="S"))
        add(eth() / IP(src=s, dst=c) / TCP(sport=dp, dport=sp, flags="SA"))
        for _ in range(10):
            add(eth() / IP(src=c, dst=s) / TCP(sport=sp, dport=dp, flags="PA") / Raw(b"x" * 100))
            add(eth() / IP(src=s, dst=c) / TCP(sport=dp, dport=sp, flags="A") / Raw(b"y" * 1000))
        add(eth() / IP(src=c, dst=s) / TCP(sport=sp, dport=dp, flags="FA"))
        add(eth() / IP(src=s, dst=c) / TCP(sport=dp, dport=sp, flags="FA"))
    for i in range(3):
        for _ in range(5):
            add(eth() / IP(src=f"10.0.2.{i + 1}", dst="10.0.3.53") / UDP(sport=5000 + i, dport=53) / Raw(b"q" * 40))
    add(eth() / IP(src="10.0.0.9", dst="10.0.1.10") / ICMP())
    wrpcap(str(path), packets)

    flows: dict[tuple[str, str, int, int, int], list[int]] = {}
    for p, t in zip(packets, times_ns, strict=True):
        ip = IP(bytes(p[IP]))  # parsed back from bytes, so the lengths are the ones written
        if ip.proto == 1:
            sport, dport, flags = 0, ip[ICMP].type * 256 + ip[ICMP].code, 0
        else:
            sport, dport = ip.payload.sport, ip.payload.dport
            flags = int(ip[TCP].flags) if ip.proto == 6 else 0
        key = (ip.src, ip.dst, sport, dport, ip.proto)
        f = flows.setdefault(key, [0, 0, 0, t, t])
        f[0] += ip.len
        f[1] += 1
        f[2] |= flags
        f[4] = t
    return [PcapFlow(*key[:5], *f) for key, f in flows.items()]


@contextlib.contextmanager
def _softflowd(
    pcap: Path, port: int, version: int, extra: Sequence[str], workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    command = ["timeout", "-k", "2", "10", "softflowd", "-r", str(pcap), "-n", f"127.0.0.1:{port}",
               "-v", str(version), "-d", "-p", str(workdir / "pid"), "-c", str(workdir / "ctl"), *extra]  # fmt: skip
    with (workdir / "log").open("wb") as log:  # a file, not a pipe: a full pipe would stall softflowd
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # timeout and softflowd: the whole session
        process.wait(timeout=5)


def softflowd_datagrams(pcap: Path, version: int, *extra: str, wait_s: float = 8.0) -> list[bytes]:
    """The datagrams softflowd exports for `pcap` (`softflowd -r`), received on 127.0.0.1.

    softflowd 1.1.0 reads the pcap only after a first control command, and exports on ``shutdown``
    (PEERS.md §3.1): so ``statistics``, then ``shutdown``, each under a timeout; every wait is bounded.
    """
    if shutil.which("softflowd") is None or shutil.which("softflowctl") is None:
        raise FileNotFoundError("softflowd is not installed (apt-get install softflowd)")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        tempfile.TemporaryDirectory(prefix="sfd") as tmp,  # short: a unix socket path has ~100 bytes
    ):
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        workdir = Path(tmp)
        with _softflowd(pcap, sock.getsockname()[1], version, extra, workdir) as process:
            deadline = time.monotonic() + wait_s
            while not (workdir / "ctl").exists():
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (workdir / "log").read_text(errors="replace")
                    raise RuntimeError(f"softflowd did not open its control socket within {wait_s} s: {log}")
                time.sleep(0.02)
            ctl = ["timeout", "-k", "1", "3", "softflowctl", "-c", str(workdir / "ctl")]
            # The socket file appears at bind(), before softflowd listens: retry until it answers.
            while subprocess.run([*ctl, "statistics"], capture_output=True, timeout=5).returncode != 0:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (workdir / "log").read_text(errors="replace")
                    raise RuntimeError(f"softflowd did not answer softflowctl within {wait_s} s: {log}")
                time.sleep(0.05)
            time.sleep(0.3)  # let it read the pcap before it is told to export and exit
            subprocess.run([*ctl, "shutdown"], capture_output=True, timeout=5, check=False)
            datagrams: list[bytes] = []
            quiet_since = None
            while time.monotonic() < deadline:
                try:
                    datagrams.append(sock.recv(65535))
                    quiet_since = None
                except TimeoutError:
                    if process.poll() is not None:
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since > 0.2:  # exited, and nothing in flight
                            break
            return datagrams
