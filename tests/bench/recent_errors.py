"""Recent errors benchmark: the service page's newest error spans, for a busy service and a healthy one.

    .venv/bin/python -m tests.bench.recent_errors [--minutes 15] [--rate 7500] [--operations 50] [--requests 15]

Fills a fresh chDB store (Vigil's schema, in a temporary directory) through `spans`, so the
materialized views fill as in production, with `--minutes` of spans at `--rate` spans/s for each of
two services over `--operations` operations, in inserts of 30 s: "busy" fails one span in a hundred,
"healthy" one in the whole range. Waits for merges to settle, then times `recent_errors` over the
range (the page's 20 newest) `--requests` times per service and prints the medians. Asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from tests.bench.timing import median_ms
from vigil.store.client import open_client
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.service_read import ErrorSpan, recent_errors

DATABASE = "vigil"
_INSERT_S = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--rate", type=int, default=7500, help="spans/s per service")
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-bench-errors-") as data_dir:
        client = open_client(f"chdb://{data_dir}")
        migrate(client, DdlContext(database=DATABASE))
        end_s = time.time() // 60 * 60
        start_s = end_s - args.minutes * 60
        per_insert = args.rate * _INSERT_S
        inserts = args.minutes * 60 // _INSERT_S
        for service, fail_every in (("busy", 100), ("healthy", per_insert * inserts)):
            for part in range(inserts):
                first = part * per_insert
                client.command(
                    f"""
                    INSERT INTO {DATABASE}.spans
                        (Timestamp, ServiceName, SpanName, SpanKind, StatusCode, TraceId, SpanId, Duration)
                    SELECT toDateTime64({start_s} + n / {args.rate}, 9, 'UTC'), '{service}',
                           concat('GET /api/v1/items/', toString(n % {args.operations})), 'Server',
                           if(n % {fail_every} = 1, 'Error', 'Ok'), hex(n), hex(n), 1000000
                    FROM (SELECT {first} + number AS n FROM numbers({per_insert}))"""
                )
        for table in ("spans", "error_spans"):
            # error_spans is absent before migration 17; the bench also times the older read.
            if client.command(f"EXISTS TABLE {DATABASE}.{table}") == 1:
                client.command(f"OPTIMIZE TABLE {DATABASE}.{table} FINAL")
        reader = StoreReader(client, DATABASE)

        def timed(service: str) -> tuple[float, int]:
            def read() -> list[ErrorSpan]:
                return recent_errors(reader.query, service, start_s=start_s, end_s=end_s)

            return median_ms(read, args.requests), len(read())

        figures = {service: timed(service) for service in ("busy", "healthy")}
    spans = args.minutes * 60 * args.rate
    print(f"recent_errors over {args.minutes} min of {spans:,} spans per service (median of {args.requests}):")
    for service, (ms, found) in figures.items():
        print(f"  {service:8s} {found:3d} errors shown: {ms:6.1f} ms")


if __name__ == "__main__":
    main()
