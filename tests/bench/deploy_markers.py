"""Deploy markers benchmark: a service's deploys over the last hour, with days of rollup behind it.

    .venv/bin/python -m tests.bench.deploy_markers [--days 7] [--operations 20] [--versions 4] [--requests 9]

Every page that draws deploy markers (a service's charts, the deploys page) and every regression
finding asks `DeployStore.query` for a service's deploys in a window. A detected deploy is the
first minute a version served requests, whatever the window, so the read must look back over the
whole retention. This fills a fresh chDB store (Vigil's schema, in a temporary directory) with
`--days` days of merged RED rollup for service "checkout": `--operations` operations, a new
version every `days / versions` days, the last one in the final hour. It times the hour's deploys
`--requests` times and prints the median. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from vigil.store.client import open_client
from vigil.store.deploys import DeployStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

DATABASE = "vigil"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--operations", type=int, default=20)
    parser.add_argument("--versions", type=int, default=4)
    parser.add_argument("--requests", type=int, default=9)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-bench-deploys-") as data_dir:
        client = open_client(f"chdb://{data_dir}")
        migrate(client, DdlContext(database=DATABASE, traces_retention_days=args.days + 1))
        end_s = int(time.time()) // 60 * 60
        minutes = args.days * 1440
        start_s = end_s - minutes * 60
        # Version v serves from minute `v * minutes / versions` on; the newest from the last hour.
        firsts = [v * minutes // args.versions for v in range(args.versions - 1)] + [minutes - 30]
        for day in range(args.days):  # a day per insert, as partitions are daily
            client.command(
                f"""
                INSERT INTO {DATABASE}.spans_red_1m
                    (Minute, ServiceName, SpanName, ServiceVersion, Requests, Errors, DurationSum, DurationMax)
                SELECT toDateTime({start_s} + 60 * minute, 'UTC'), 'checkout',
                       concat('GET /api/v1/items/', toString(operation)),
                       concat('1.', toString(arrayCount(first -> first <= minute, {firsts}) - 1)),
                       100, 1, 100000000, 5000000
                FROM (SELECT {day * 1440} + intDiv(number, {args.operations}) AS minute,
                             number % {args.operations} AS operation
                      FROM numbers({1440 * args.operations}))"""
            )
        client.command(f"OPTIMIZE TABLE {DATABASE}.spans_red_1m FINAL")
        rows = client.query(f"SELECT count() FROM {DATABASE}.spans_red_1m").result_rows[0][0]
        store = DeployStore(client, DATABASE)

        found = store.query(service="checkout", start=end_s - 3600, end=end_s)
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            store.query(service="checkout", start=end_s - 3600, end=end_s)
            times.append((time.perf_counter() - started) * 1000)
    print(
        f"deploys of one service over the last hour, {args.days} days of rollup behind it "
        f"({rows:,} rows: {args.operations} operations, {args.versions} versions):"
    )
    print(f"  {[d.version for d in found]} found, median of {args.requests}: {statistics.median(times):7.1f} ms")


if __name__ == "__main__":
    main()
