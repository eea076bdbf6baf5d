"""Service breakdown benchmark: the service page's rollup reads, while the rollup's parts are unmerged.

    .venv/bin/python -m tests.bench.service_breakdown [--parts 30] [--minutes 15] [--operations 50]
        [--requests 9] [--per-row 200]

Under ingest, `spans_red_1m` holds one row per minute, operation and version for every insert
that touched them, until ClickHouse merges its parts: the same minute may have dozens of rows,
each a t-digest state to merge. This fills a fresh chDB store (Vigil's schema, in a temporary
directory) with merges stopped: `--parts` inserts, each covering the last `--minutes` minutes of
service "checkout" with `--operations` operations over two versions (`--per-row` durations a row).
It times the page's two rollup reads over those minutes as the page asks for them (with the
charts' step): `service_series` (summary, versions, RED and requests per version per bucket, from
the rollup's per-service projection) and `operations` (the rollup's own rows), each `--requests`
times (the median is printed), and the two one after the other. Then it
merges the parts (OPTIMIZE FINAL) and times them again. Asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from tests.bench.timing import median_ms
from vigil.store.client import open_client
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.service_read import bucket_step, operations, service_series

DATABASE = "vigil"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=30)
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--requests", type=int, default=9)
    parser.add_argument("--per-row", type=int, default=200, help="durations per rollup row and insert")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-bench-breakdown-") as data_dir:
        client = open_client(f"chdb://{data_dir}")
        migrate(client, DdlContext(database=DATABASE))
        client.command(f"SYSTEM STOP MERGES {DATABASE}.spans_red_1m")
        end_s = time.time() // 60 * 60
        start_s = end_s - args.minutes * 60
        for part in range(args.parts):
            client.command(
                f"""
                INSERT INTO {DATABASE}.spans_red_1m
                    (Minute, ServiceName, SpanName, ServiceVersion, Requests, Errors, DurationSum, DurationMax,
                     DurationQuantiles)
                SELECT toDateTime({int(start_s)} + 60 * minute, 'UTC'), 'checkout',
                       concat('GET /api/v1/items/', toString(operation)), if(operation % 10 = 0, '1.1.0', '1.0.0'),
                       count(), countIf(duration % 100 = 0), sum(duration), max(duration),
                       quantilesTDigestState(0.5, 0.95, 0.99)(duration)
                FROM (SELECT number % {args.minutes} AS minute,
                             intDiv(number, {args.minutes}) % {args.operations} AS operation,
                             100000 + rand64({part}) % 50000000 AS duration
                      FROM numbers({args.minutes * args.operations * args.per_row}))
                GROUP BY minute, operation"""
            )
        reader = StoreReader(client, DATABASE)
        rows = client.query(f"SELECT count() FROM {DATABASE}.spans_red_1m").result_rows[0][0]

        step = bucket_step(start_s, end_s, 120)  # as the service page's charts

        def timings() -> dict[str, float]:
            window = {"start_s": start_s, "end_s": end_s}
            reads: dict[str, Callable[[], object]] = {
                "service_series (projection)": lambda: service_series(reader.query, "checkout", **window, step=step),
                "operations (rollup rows)": lambda: operations(reader.query, "checkout", **window),
                "both, one after the other": lambda: (
                    service_series(reader.query, "checkout", **window, step=step),
                    operations(reader.query, "checkout", **window),
                ),
            }
            return {name: median_ms(read, args.requests) for name, read in reads.items()}

        unmerged = timings()
        client.command(f"SYSTEM START MERGES {DATABASE}.spans_red_1m")
        client.command(f"OPTIMIZE TABLE {DATABASE}.spans_red_1m FINAL")
        merged_rows = client.query(f"SELECT count() FROM {DATABASE}.spans_red_1m").result_rows[0][0]
        merged = timings()
    shape = f"{args.minutes} min, {args.operations} operations, 2 versions"
    print(f"the service page's rollup reads over {shape} (median of {args.requests}; ms):")
    print(f"  {'':30s} {args.parts} unmerged parts, {rows:,} rows   merged, {merged_rows:,} rows")
    for name in unmerged:
        print(f"  {name:30s} {unmerged[name]:12.1f} {merged[name]:24.1f}")


if __name__ == "__main__":
    main()
