"""Decode and enrichment benchmark: NetFlow v5, v9 and IPFIX datagrams to enriched Arrow flows, one core.

    .venv/bin/python -m tests.bench.decode_netflow [--seconds 2] [--records 30] [--batch 1400] [--runs 5]

Packets are shaped like softflowd's (`tests.netflow_packets.softflowd_like`): v9 and IPFIX data sets
under template 1024 (IPv4, 16 fields, 4-byte counters, absolute-ms times, 50-byte records), v5 with
48-byte records; `--records` flows per datagram (softflowd fills ~1,400-byte datagrams: ~28 v9
records). Templates are sent once, then data-only packets are decoded for `--seconds`, each with its
own receive time, as a receiver would: `--batch` datagrams per `decode_many` call (the receiver's
2 MiB flush holds about 1,250 of these), and for comparison one per `decode` call. A second line per
version adds the template set to every packet (a template refresh each time; the worst case).

Enrichment (`enrich`) is timed on a decoded batch against a `--prefixes` map, twice: with the
stream's addresses (few distinct: 64 packets cycled) and with every address distinct.

Prints the median of `--runs` runs; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from tests.netflow_packets import softflowd_like
from vigil.collector.decode.netflow import NetflowDecoder, exporter_key
from vigil.collector.enrich import PrefixMap, enrich

EXPORTER = exporter_key("192.0.2.1")


def per_second(step: Callable[[], int], seconds: float) -> tuple[float, float]:
    """Items/s and calls/s of `step` (which returns the items it handled), run for about `seconds`."""
    items = calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        items += step()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    return items / (now - start), calls / (now - start)


def decode_rate(packets: list[bytes], warmup: bytes, batch: int, seconds: float) -> tuple[float, float]:
    """Flows/s and µs per packet decoding `packets` in turn, `batch` per call."""
    decoder = NetflowDecoder()
    decoder.decode(warmup, EXPORTER, time.time_ns())
    datagrams = [(packets[i % len(packets)], EXPORTER, time.time_ns() + i) for i in range(batch)]
    if batch == 1:
        packet, _, received = datagrams[0]
        flows, calls = per_second(lambda: decoder.decode(packet, EXPORTER, received).num_flows, seconds)
    else:
        flows, calls = per_second(lambda: decoder.decode_many(datagrams).num_flows, seconds)
    return flows, 1e6 / (calls * batch)


def prefix_map(prefixes: int) -> PrefixMap:
    lines = ["cidr,customer,site", "10.0.0.0/8,customer-0,site-0", "192.0.2.0/24,destinations,lab"]
    lines += [f"10.{i // 256}.{i % 256}.0/24,customer-{i % 500},site-{i % 20}" for i in range(max(prefixes - 2, 0))]
    return PrefixMap.from_text("\n".join(lines), fmt="csv")


def distinct_addresses(flows: pa.Table) -> pa.Table:
    """`flows` with every source and destination a different IPv4 address."""
    n = flows.num_rows
    for name, first in (("SrcAddr", 10 << 24), ("DstAddr", 11 << 24)):
        raw = np.zeros((n, 16), np.uint8)
        raw[:, 10:12] = 0xFF
        raw[:, 12:] = np.arange(first, first + n, dtype=">u4").view(np.uint8).reshape(n, 4)
        column = pa.Array.from_buffers(pa.binary(16), n, [None, pa.py_buffer(raw)])
        flows = flows.set_column(flows.schema.get_field_index(name), name, column)
    return flows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--records", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1400, help="datagrams per decode_many call")
    parser.add_argument("--prefixes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds = args.seconds / args.runs
    print(f"{'workload':<44} {'bytes':>6} {'flows/s':>11} {'µs/packet':>10}")
    for version, name in ((5, "v5"), (9, "v9"), (10, "IPFIX")):
        template, _ = softflowd_like(version, args.records)
        data = [softflowd_like(version, args.records, seed)[1] for seed in range(1, 65)]
        cases = [(f"{name}, {args.records} records", data)]
        if version != 5:
            # The template set and the data set in one datagram, every time.
            header = 20 if version == 9 else 16
            both = [bytearray(template + packet[header:]) for packet in data]
            if version == 10:
                for packet in both:
                    packet[2:4] = len(packet).to_bytes(2, "big")
            cases.append((f"{name}, {args.records} records + template", [bytes(p) for p in both]))
        for label, packets in cases:
            for batch in (args.batch, 1):
                runs = [decode_rate(packets, template, batch, seconds) for _ in range(args.runs)]
                flows = statistics.median(r[0] for r in runs)
                micros = statistics.median(r[1] for r in runs)
                how = f"{batch:,} per call" if batch > 1 else "one per call"
                print(f"{label + ', ' + how:<44} {len(packets[0]):>6} {flows:>11,.0f} {micros:>10.1f}")

    decoder = NetflowDecoder()
    template, _ = softflowd_like(9, args.records)
    decoder.decode(template, EXPORTER, time.time_ns())
    packets = [softflowd_like(9, args.records, seed)[1] for seed in range(1, 65)]
    flows = decoder.decode_many([(packets[i % 64], EXPORTER, i) for i in range(args.batch)]).flows
    prefixes = prefix_map(args.prefixes)
    print(f"\nenrich, {len(prefixes):,} prefixes, {flows.num_rows:,} flows{'':<10} {'flows/s':>11} {'ms/batch':>10}")
    for label, table in (("stream's addresses", flows), ("every address distinct", distinct_addresses(flows))):
        runs = [per_second(lambda t=table: enrich(t, prefixes).num_rows, seconds)[0] for _ in range(args.runs)]
        rate = statistics.median(runs)
        print(f"{label:<51} {rate:>11,.0f} {flows.num_rows / rate * 1e3:>10.1f}")


if __name__ == "__main__":
    main()
