"""Request exchange benchmark: what sharing request digests between hosts costs each round.

    .venv/bin/python -m tests.bench.request_exchange [--hosts 4] [--requests-per-second 500] [--rounds 30]

`--hosts` Vigils share one embedded store (chDB, a fresh temporary directory): each has a
collector journal that gains `--requests-per-second` digests before every round (one round a
second in production), and each runs `RequestExchange.run_once`, publishing its own and fetching
the others'. Prints the median and worst round time per host, with what a round moved, and the
table's size at the end. Checks that every host journaled every other host's digests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from vigil.collector.request_dedup import JournalTail, journal_line, read_journal
from vigil.collector.request_exchange import RequestExchange
from vigil.store.client import open_client
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

DATABASE = "vigil"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--requests-per-second", type=int, default=500, help="per host")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="vigil-exchange-"))
    client = open_client(f"chdb://{data / 'store'}")
    migrate(client, DdlContext(database=DATABASE))
    hosts = [
        RequestExchange(data / f"host-{n}", lambda: client, DATABASE, f"host-{n}", window_s=600, interval_s=3600)
        for n in range(args.hosts)
    ]
    for host in hosts:
        host.start()
    durations: list[float] = []
    try:
        for _ in range(args.rounds):
            for host in hosts:
                now = time.time()
                lines = b"".join(journal_line(now, os.urandom(16)) for _ in range(args.requests_per_second))
                with (host.journal_dir / "collector-0.requests").open("ab") as journal:
                    journal.write(lines)
            for host in hosts:
                started = time.perf_counter()
                host.run_once()
                durations.append(time.perf_counter() - started)
        for host in hosts:  # a last round, so every host has fetched the others' last digests
            host.run_once()
        expected = args.requests_per_second * args.rounds * (args.hosts - 1)
        for host in hosts:
            fetched = len(read_journal(host.fleet_journal, JournalTail()))
            assert fetched == expected, f"{host.host} journaled {fetched} digests of other hosts, not {expected}"
    finally:
        for host in hosts:
            host.shutdown()
    rows = client.query(f"SELECT count() FROM {DATABASE}.request_digests").result_rows[0][0]
    ordered = sorted(durations)
    print(
        f"{args.hosts} hosts x {args.requests_per_second} requests/s, {args.rounds} rounds: "
        f"a round publishes {args.requests_per_second} digests and fetches "
        f"{args.requests_per_second * (args.hosts - 1)}"
    )
    print(
        f"round time ms: median {statistics.median(ordered) * 1000:.1f}, "
        f"p95 {ordered[int(len(ordered) * 0.95) - 1] * 1000:.1f}, worst {ordered[-1] * 1000:.1f}"
    )
    print(f"request_digests rows at the end: {rows:,}; every host journaled every other host's digests")


if __name__ == "__main__":
    main()
