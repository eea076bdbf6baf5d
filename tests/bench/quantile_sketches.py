"""Quantile sketches benchmark: what merging a rollup's duration sketches costs, by sketch.

    .venv/bin/python -m tests.bench.quantile_sketches [--minutes 15] [--operations 50] [--per-row 1800] [--requests 15]

The service page's rollup read spends most of its time merging the t-digest states of
`spans_red_1m` (docs/BENCHMARKS.md, "The 30-minute run with `error_spans`"). This fills a scratch
AggregatingMergeTree in a fresh chDB store with `--minutes` x `--operations` merged rows of
`--per-row` durations each (uniform over 0.1-50 ms), kept three ways: ClickHouse's t-digest (as
`spans_red_1m` keeps them), its DDSketch (`quantilesDD`, 1% relative accuracy) and a sparse
log-bucket histogram merged by `sumMap` (buckets 2% wide). It times, per sketch, the merge per
operation and the merge in grouping sets as the page's read does (in all, per operation, per
minute) and prints the medians; with no sketch, the same grouping's fixed cost. Asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile

from tests.bench.timing import median_ms
from vigil.store.client import open_client

DATABASE = "sketches"
# Each sketch's merge expression over the scratch table's column of it.
MERGES = {
    "t-digest": "quantilesTDigestMerge(0.5, 0.95, 0.99)(TDigest)",
    "DDSketch": "quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(DD)",
    "sumMap histogram": "sumMap(Histogram)",
    "(no sketch)": "count()",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--per-row", type=int, default=1800, help="durations per (minute, operation) row")
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vigil-bench-sketches-") as data_dir:
        client = open_client(f"chdb://{data_dir}")
        client.command(f"CREATE DATABASE {DATABASE}")
        client.command(
            f"""
            CREATE TABLE {DATABASE}.rollup (
                Minute UInt32,
                SpanName String,
                TDigest AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64),
                DD AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), UInt64),
                Histogram SimpleAggregateFunction(sumMap, Tuple(Array(UInt16), Array(UInt64))))
            ENGINE = AggregatingMergeTree ORDER BY (SpanName, Minute)"""
        )
        client.command(
            f"""
            INSERT INTO {DATABASE}.rollup
            SELECT minute, concat('GET /api/v1/items/', toString(operation)),
                   quantilesTDigestState(0.5, 0.95, 0.99)(duration),
                   quantilesDDState(0.01, 0.5, 0.95, 0.99)(duration),
                   sumMap([toUInt16(round(log(duration) / log(1.02)))], [toUInt64(1)])
            FROM (SELECT number % {args.minutes} AS minute,
                         intDiv(number, {args.minutes}) % {args.operations} AS operation,
                         100000 + rand64() % 50000000 AS duration
                  FROM numbers({args.minutes * args.operations * args.per_row}))
            GROUP BY minute, operation"""
        )
        client.command(f"OPTIMIZE TABLE {DATABASE}.rollup FINAL")

        def query_ms(sql: str) -> float:
            return median_ms(lambda: client.query(sql), args.requests)

        figures = {
            name: (
                query_ms(f"SELECT SpanName, {merge} FROM {DATABASE}.rollup GROUP BY SpanName"),
                query_ms(
                    f"SELECT SpanName, Minute, {merge} FROM {DATABASE}.rollup"
                    " GROUP BY GROUPING SETS ((), (SpanName), (Minute))"
                ),
            )
            for name, merge in MERGES.items()
        }
    rows = args.minutes * args.operations
    print(f"merging {rows:,} rows of {args.per_row:,} durations each (median of {args.requests}, ms):")
    for name, (per_operation, grouping_sets) in figures.items():
        print(f"  {name:17s} per operation {per_operation:6.1f}   in grouping sets {grouping_sets:6.1f}")


if __name__ == "__main__":
    main()
