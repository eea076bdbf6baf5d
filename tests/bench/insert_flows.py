"""ClickHouse insert benchmark: where the embedded store's CPU per flow goes.

    .venv/bin/python -m tests.bench.insert_flows [--rows 200000] [--inserts 10] [--runs 3]

Enriched flows (softflowd-shaped v9 datagrams decoded and tagged from a 10,000-prefix map) are
written once as an Arrow IPC stream file, as the collector's log holds them, and inserted the
way the inserter does on chDB (``INSERT ... FROM INFILE ... FORMAT ArrowStream``), `--inserts`
times into each variant of the `flows` table:

* ``Null`` engine: reading the Arrow file and converting its columns, nothing stored;
* a MergeTree with neither partition nor sort key;
* the `flows` table's own DDL, without its rollup view or deduplication window;
* Vigil's schema as migrated (partitions, sort key, the per-minute rollup view, block deduplication).

Each variant is timed twice: the six enrichment columns as Arrow strings (what the collector
writes) and as Arrow dictionaries. CPU is this process's user+system time per flow inserted,
median of `--runs`; background merges after the inserts are not counted. Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from tests.bench.decode_netflow import EXPORTER, prefix_map
from tests.netflow_packets import softflowd_like
from vigil.collector.decode.netflow import NetflowDecoder
from vigil.collector.enrich import ENRICHED_COLUMNS, enrich
from vigil.store.client import Client, open_client
from vigil.store.migrate import migrate
from vigil.store.schema import FLOWS, DdlContext, create_table_statements

_DATAGRAMS = 1_400  # what the receiver decodes per call: ~42,000 flows


def enriched_flows(rows: int) -> pa.Table:
    decoder = NetflowDecoder()
    template, _ = softflowd_like(9, 30)
    decoder.decode(template, EXPORTER, time.time_ns())
    packets = [softflowd_like(9, 30, seed)[1] for seed in range(1, 65)]
    now = time.time_ns()
    flows = decoder.decode_many([(packets[i % 64], EXPORTER, now + i) for i in range(_DATAGRAMS)]).flows
    flows = enrich(flows, prefix_map(10_000))
    return pa.concat_tables([flows] * -(-rows // flows.num_rows)).slice(0, rows)


def with_dictionaries(flows: pa.Table) -> pa.Table:
    for name in (name for _, names in ENRICHED_COLUMNS for name in names):
        column = pc.dictionary_encode(flows[name].combine_chunks())
        flows = flows.set_column(flows.schema.get_field_index(name), pa.field(name, column.type), column)
    return flows


def write_stream(flows: pa.Table, path: Path) -> Path:
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, flows.schema) as writer:
        writer.write_table(flows)
    return path


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def insert_cpu_us_per_flow(client: Client, table: str, path: Path, rows: int, inserts: int) -> float:
    started = cpu_s()
    for i in range(inserts):
        client.command(
            f"INSERT INTO {table} FROM INFILE '{path}' "
            f"SETTINGS insert_deduplication_token = '{path.name}-{i}-{time.time_ns()}' FORMAT ArrowStream"
        )
    return (cpu_s() - started) / (rows * inserts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="flows per insert (VIGIL_INSERT_ROWS's default)")
    parser.add_argument("--inserts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-insert-flows-"))
    flows = enriched_flows(args.rows)
    files = {
        "strings": write_stream(flows, work / "strings.arrow"),
        "dictionaries": write_stream(with_dictionaries(flows), work / "dictionaries.arrow"),
    }
    client = open_client(f"chdb://{work / 'chdb'}")
    own_ddl = create_table_statements(FLOWS, DdlContext(database="bench"))[0]
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    variants = {
        "Null engine: read and convert only": "CREATE TABLE bench.{t} AS bench.flows_ddl ENGINE = Null",
        "MergeTree, no partition, no sort key": "CREATE TABLE bench.{t} AS bench.flows_ddl ENGINE = MergeTree "
        "ORDER BY tuple()",
        "flows DDL, no rollup view, no dedup window": own_ddl.replace("bench.flows", "bench.{t}").replace(
            ", non_replicated_deduplication_window = 1000", ""
        ),
    }
    client.command(own_ddl.replace("bench.flows", "bench.flows_ddl"))
    sizes = ", ".join(f"{kind} {path.stat().st_size / args.rows:.0f}" for kind, path in files.items())
    print(f"{args.rows:,} flows per insert, {args.inserts} inserts, median of {args.runs}; file bytes/flow: {sizes}")
    print(f"{'variant':<46} {'strings':>10} {'dictionaries':>13}   (µs CPU per flow)")
    for number, label in enumerate([*variants, "Vigil's schema as migrated"]):
        figures = []
        for kind, path in files.items():
            runs = []
            for run in range(args.runs):
                name = f"v{number}_{kind}_{run}"
                if label in variants:
                    client.command(variants[label].format(t=name))
                    target = f"bench.{name}"
                else:
                    migrate(client, DdlContext(database=name))
                    target = f"{name}.flows"
                runs.append(insert_cpu_us_per_flow(client, target, path, args.rows, args.inserts))
            figures.append(statistics.median(runs))
        print(f"{label:<46} {figures[0]:>10.2f} {figures[1]:>13.2f}")


if __name__ == "__main__":
    main()
