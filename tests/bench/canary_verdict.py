"""Canary verdict benchmark: computing a verdict over 1M spans per version, then CI polls of it.

    .venv/bin/python -m tests.bench.canary_verdict [--spans-per-arm 1000000] [--polls 300]

Fills an embedded store with `--spans-per-arm` entry spans for each of two versions of one
service (five operations, log-normal latencies, 1% errors; the canary's busiest operation 20%
slower) inside a ten-minute window, asks for an analysis of that window through the API, and
times the first GET (which judges the window and stores the verdict) and then `--polls` GETs of
the stored verdict, as a pipeline polling `vigil canary gate --wait` would. Prints p50/p99.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import httpx

from tests.conftest import start_vigil, stop_vigil
from vigil.settings import load_settings
from vigil.store.client import open_client


def fill(client_url: str, database: str, spans_per_arm: int, start: int) -> None:
    client = open_client(client_url)
    for version, slowdown in (("1.0", 1.0), ("2.0", 1.2)):
        client.command(
            f"""INSERT INTO {database}.spans
                (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, ServiceVersion, Duration, StatusCode)
                SELECT fromUnixTimestamp64Milli(toInt64(({start} + rand(1) % 600000 / 1000.0) * 1000)),
                       lower(hex(randomString(16))), lower(hex(randomString(8))),
                       ['GET /cart', 'POST /pay', 'GET /product', 'GET /search', 'POST /login'][number % 5 + 1],
                       'Server', 'shop', '{version}',
                       toUInt64(exp(log(50e6) + 0.5 * randNormal(0, 1))
                                * if(number % 5 = 1, {slowdown}, 1.0)),
                       if(rand(2) % 100 = 0, 'Error', 'Unset')
                FROM numbers({spans_per_arm})"""
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans-per-arm", type=int, default=1_000_000)
    parser.add_argument("--polls", type=int, default=300)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="vigil-canary-bench-")
    settings = load_settings(
        clickhouse_url=f"chdb://{data}",
        http_port=0,
        otlp_http_port=0,
        otlp_grpc_port=0,
        statsd_enabled=False,
        netflow_enabled=False,
        collector_processes=0,
        detectors_enabled=False,
        wal_dir=f"{data}-wal",
    )
    running, thread = start_vigil(settings)
    try:
        start = int(time.time()) // 60 * 60 - 900
        began = time.perf_counter()
        fill(settings.clickhouse_url, settings.clickhouse_database, args.spans_per_arm, start)
        print(f"{2 * args.spans_per_arm:,} spans written in {time.perf_counter() - began:.1f} s")
        api = running.api
        question = {"service": "shop", "baseline_version": "1.0", "canary_version": "2.0", "start": start}
        created = httpx.post(f"{api}/api/v1/canary/analyses", json=question | {"duration": "10m"}).json()
        url = f"{api}/api/v1/canary/analyses/{created['id']}"
        began = time.perf_counter()
        first = httpx.get(url, timeout=120).json()
        computed_s = time.perf_counter() - began
        print(f"verdict {first['verdict']} ({first['status']}), computed in {computed_s * 1000:.0f} ms")
        for check in first["checks"]:
            print(f"  {check['kind']:<10} {check['name']:<14} {check['result']:<12} n={check['canary']['n']:,}")
        latencies = []
        with httpx.Client() as poller:
            for _ in range(args.polls):
                began = time.perf_counter()
                assert poller.get(url).status_code == 200
                latencies.append((time.perf_counter() - began) * 1000)
        latencies.sort()
        p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
        print(f"stored verdict, {args.polls} polls: p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms")
    finally:
        stop_vigil(running, thread)


if __name__ == "__main__":
    main()
