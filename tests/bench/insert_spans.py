"""ClickHouse insert benchmark: decoded spans into variants of the spans table on chDB.

    .venv/bin/python -m tests.bench.insert_spans [--rows 20000]

Shows what each schema choice costs at insert time: the exporter's bloom filters on attribute
maps, ZSTD(1) versus LZ4, and the materialized views. Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time

import pyarrow as pa

from tests.bench.ingest_otlp import SPANS_PER_REQUEST, build_request
from vigil.collector.decode.otlp_traces import decode_traces_protobuf
from vigil.store.client import open_client
from vigil.store.migrate import migrate
from vigil.store.schema import SPANS, DdlContext, create_table_statements

_MAP_INDEXES = """,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1"""


def best_rate(insert: object, rows: pa.Table, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        insert()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return rows.num_rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    client = open_client(f"chdb://{tempfile.mkdtemp(prefix='vigil-insert-bench-')}")
    rng = random.Random(1)
    requests = max(args.rows // SPANS_PER_REQUEST, 1)
    rows = pa.concat_tables([decode_traces_protobuf(build_request(rng)).batches[0].rows for _ in range(requests)])
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    vigil_ddl = create_table_statements(SPANS, DdlContext(database="bench"))[0]
    with_map_indexes = vigil_ddl.replace(
        "\n    INDEX idx_duration", _MAP_INDEXES.removeprefix(",") + ",\n    INDEX idx_duration"
    )
    variants = {
        "exporter-like: map bloom filters, ZSTD(1)": with_map_indexes.replace("LZ4", "ZSTD(1)"),
        "map bloom filters, LZ4": with_map_indexes,
        "Vigil's: no map bloom filters, LZ4": vigil_ddl,
        "no skip index at all, LZ4": re.sub(r",?\n    INDEX [^\n]*", "", vigil_ddl),
    }
    print(f"{rows.num_rows:,} spans per insert")
    for name, ddl in variants.items():
        table = "v_" + re.sub(r"\W+", "_", name.split(":")[0]).strip("_").lower()
        client.command(ddl.replace("bench.spans", f"bench.{table}"))
        rate = best_rate(lambda t=table: client.insert_arrow(f"bench.{t}", rows), rows)
        print(f"{name:45s} {rate:>12,.0f} rows/s")
    migrate(client, DdlContext(database="views"))
    rate = best_rate(lambda: client.insert_arrow("views.spans", rows), rows)
    print(f"{'Vigil schema with both materialized views':45s} {rate:>12,.0f} rows/s")


if __name__ == "__main__":
    main()
