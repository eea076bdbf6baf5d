"""StatsD lines for tests and the benchmark, written independently of Vigil's parser.

`render_metric` is the client side of the grammar (what statsd/DogStatsD/telegraf clients send);
`bench_lines` is a mixed workload that Etsy statsd also takes without bad lines; `pack` groups lines
into datagrams the way buffering clients do.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BenchLine", "bench_lines", "pack", "render_metric"]


def render_metric(
    name: str,
    values: Sequence[str],
    metric_type: str,
    *,
    rate: float | None = None,
    tags: Sequence[tuple[str, str | None]] = (),
    telegraf_tags: Sequence[tuple[str, str | None]] = (),
    timestamp: int | None = None,
    container: str | None = None,
) -> bytes:
    """One metric line; a tag value of None renders as a bare key (``#canary``, ``,canary``)."""
    head = name + "".join(f",{k}" if v is None else f",{k}={v}" for k, v in telegraf_tags)
    line = f"{head}:{':'.join(values)}|{metric_type}"
    if rate is not None:
        line += f"|@{rate!r}"
    if tags:
        line += "|#" + ",".join(k if v is None else f"{k}:{v}" for k, v in tags)
    if container is not None:
        line += f"|c:{container}"
    if timestamp is not None:
        line += f"|T{timestamp}"
    return line.encode()


@dataclass(frozen=True, slots=True)
class BenchLine:
    line: bytes
    counter_value: int  # what the line adds to the counter total (0 for other types)


def bench_lines(rng: random.Random, n: int, series: int = 200) -> list[BenchLine]:
    """`n` lines over `series` series: 60% counters, 20% timers, 10% gauges, 10% sets, most tagged.

    Only Etsy's own types (c, ms, g, s) and no sample rates, so both Etsy and Vigil count every
    line and the counter total is exact on both sides.
    """
    kinds = ["c"] * 6 + ["ms"] * 2 + ["g", "s"]
    tag_sets = ["", "|#env:prod", "|#env:prod,az:b", "|#env:dev,az:a"]
    shapes = [(f"bench.svc{i % 9}.op{i}", kinds[i % len(kinds)], tag_sets[i % len(tag_sets)]) for i in range(series)]
    lines: list[BenchLine] = []
    for _ in range(n):
        name, kind, tags = shapes[rng.randrange(series)]
        if kind == "c":
            value = rng.randrange(1, 10)
            lines.append(BenchLine(f"{name}:{value}|c{tags}".encode(), value))
        elif kind == "ms":
            lines.append(BenchLine(f"{name}:{rng.randrange(1, 5000) / 10}|ms{tags}".encode(), 0))
        elif kind == "g":
            lines.append(BenchLine(f"{name}:{rng.randrange(0, 1000)}|g{tags}".encode(), 0))
        else:
            lines.append(BenchLine(f"{name}:user{rng.randrange(500)}|s{tags}".encode(), 0))
    return lines


def pack(lines: Sequence[bytes], max_bytes: int = 1400) -> list[list[bytes]]:
    """Lines grouped into datagrams of at most `max_bytes` (joined by ``\\n``); a longer line goes alone."""
    packets: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        extra = len(line) + (1 if current else 0)
        if current and size + extra > max_bytes:
            packets.append(current)
            current, size = [], 0
            extra = len(line)
        current.append(line)
        size += extra
    if current:
        packets.append(current)
    return packets
