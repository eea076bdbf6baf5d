"""Network read benchmark: what the network page and API read, over a busy half hour of flows.

    .venv/bin/python -m tests.bench.network_reads --data-dir /var/tmp/vigil-network [--minutes 30]
        [--flows-per-minute 600000] [--requests 5]

A new `--data-dir` is filled first (chDB, Vigil's schema in database `vigil`) through the store's
insert path, so the rollup views fill as in production: `--minutes` minutes ending now at
`--flows-per-minute` (600,000 is 10,000 flows/s), enriched softflowd-shaped v9 flows (about 220
customers from a 10,000-prefix map), half of them to six service ports and half, as replies
would be, to random ephemeral ports. A directory already holding flows is reused as it is.

Then each read over the last hour (the page's default range) is run once to warm up and
`--requests` times; prints the median wall time of each. The page itself makes the reads marked
"page" (talkers by customer, its default tab). Asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tests.bench.insert_flows import enriched_flows
from tests.bench.timing import median_ms
from vigil.store import flows_read
from vigil.store.client import Client, open_client
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

DATABASE = "vigil"
_INSERT_ROWS = 200_000
_SERVICE_PORTS = np.array([443, 80, 53, 22, 8080, 5432], np.uint16)


def fill(client: Client, minutes: int, flows_per_minute: int) -> None:
    migrate(client, DdlContext(database=DATABASE))
    writer = StoreWriter(client, DATABASE)
    base = enriched_flows(_INSERT_ROWS)
    rng = np.random.default_rng(1)
    start_s = time.time() - minutes * 60
    started = time.perf_counter()
    for minute in range(minutes):
        for _ in range(max(flows_per_minute // _INSERT_ROWS, 1)):
            n = base.num_rows
            received = ((start_s + minute * 60 + rng.random(n) * 60) * 1e9).astype(np.int64)
            replies = rng.random(n) < 0.5
            ports = np.where(replies, rng.integers(1024, 65536, n), rng.choice(_SERVICE_PORTS, n)).astype(np.uint16)
            flows = base.set_column(
                base.schema.get_field_index("TimeReceived"),
                base.schema.field("TimeReceived"),
                pa.array(received, pa.timestamp("ns", tz="UTC")),
            )
            flows = flows.set_column(flows.schema.get_field_index("DstPort"), "DstPort", pa.array(ports))
            writer.insert("flows", flows)
    stored = int(client.command(f"SELECT count() FROM {DATABASE}.flows"))
    print(f"stored {stored:,} flows in {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--flows-per-minute", type=int, default=600_000)
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    client = open_client(f"chdb://{args.data_dir.resolve()}")
    exists = client.command(f"EXISTS TABLE {DATABASE}.flows")
    if not exists or not int(client.command(f"SELECT count() FROM {DATABASE}.flows")):
        fill(client, args.minutes, args.flows_per_minute)
    query = StoreReader(client, DATABASE).query
    end_s = time.time()
    window = {"start_s": end_s - 3600, "end_s": end_s}
    charted = {**window, "step_s": 60, "limit": 10, "customer": None, "exporter": None, "interface": None}
    reads: dict[str, Callable[[], Any]] = {
        "page: network_health(exporter_ports=False)": lambda: flows_read.network_health(
            query, exporter_ports=False, **window
        ),
        "page: customer_throughput": lambda: flows_read.customer_throughput(query, **charted),
        "page: interface_throughput": lambda: flows_read.interface_throughput(query, **charted),
        "page: flow_choices": lambda: flows_read.flow_choices(query, **window),
        "page: top_customers": lambda: flows_read.top_customers(query, limit=20, **window),
        "API: network_health (exporters' ports too)": lambda: flows_read.network_health(query, **window),
        "top_talkers by=src (single flows)": lambda: flows_read.top_talkers(query, by="src", limit=20, **window),
        "top_talkers by=pair (single flows)": lambda: flows_read.top_talkers(query, by="pair", limit=20, **window),
    }
    print(f"{'read over the last hour':<46} {'median ms':>10}")
    page_ms = 0.0
    for label, read in reads.items():
        ms = median_ms(read, args.requests)
        page_ms += ms if label.startswith("page:") else 0.0
        print(f"{label:<46} {ms:>10.1f}")
    print(f"{'the page reads together':<46} {page_ms:>10.1f}")


if __name__ == "__main__":
    main()
