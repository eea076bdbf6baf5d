"""Decode benchmark: NetFlow v5, v9 and IPFIX datagrams to Arrow flows, one core.

    .venv/bin/python -m tests.bench.decode_netflow [--seconds 2] [--records 30] [--runs 5]

Packets are shaped like softflowd's (`tests.netflow_packets.softflowd_like`): v9 and IPFIX data sets
under template 1024 (IPv4, 16 fields, 4-byte counters, absolute-ms times, 50-byte records), v5 with
48-byte records; `--records` flows per datagram (softflowd fills ~1,400-byte datagrams: ~28 v9
records). Templates are sent once, then data-only packets are decoded for `--seconds`, with a new
receive time for each, as a receiver would. A second line per version adds the template set to every
packet (a template refresh each time; the worst case). Prints the median flows/s and µs/packet of
`--runs` runs; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from tests.netflow_packets import softflowd_like
from vigil.collector.decode.netflow import NetflowDecoder, exporter_key


def rate(packet: bytes, warmup: bytes, seconds: float) -> tuple[float, float]:
    """Flows/s and µs/packet decoding `packet` over and over for about `seconds`."""
    decoder = NetflowDecoder()
    exporter = exporter_key("192.0.2.1")
    decoder.decode(warmup, exporter, time.time_ns())
    flows_per_packet = decoder.decode(packet, exporter, time.time_ns()).num_flows
    decode = decoder.decode
    packets = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            decode(packet, exporter, time.time_ns())
        packets += 200
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    return packets * flows_per_packet / elapsed, elapsed / packets * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--records", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'workload':<34} {'bytes':>6} {'flows/s':>10} {'µs/packet':>10}")
    for version, name in ((5, "v5"), (9, "v9"), (10, "IPFIX")):
        template, data = softflowd_like(version, args.records)
        cases = [(f"{name}, {args.records} records", data, template)]
        if version != 5:
            # The template set and the data set in one datagram, every time.
            both = bytearray(template + data[(20 if version == 9 else 16) :])
            if version == 10:
                both[2:4] = len(both).to_bytes(2, "big")
            cases.append((f"{name}, {args.records} records + template", bytes(both), template))
        for label, packet, warmup in cases:
            runs = [rate(packet, warmup, args.seconds / args.runs) for _ in range(args.runs)]
            flows = statistics.median(r[0] for r in runs)
            micros = statistics.median(r[1] for r in runs)
            print(f"{label:<34} {len(packet):>6} {flows:>10,.0f} {micros:>10.1f}")


if __name__ == "__main__":
    main()
