"""Fault benchmark: a ClickHouse outage at full load; what was acknowledged, what was stored, how long the drain took.

    .venv/bin/python -m tests.bench.fault [--before 20] [--outage 60] [--drain-timeout 600] [--concurrency 8]
        [--workers -1] [--max-wal-bytes 8589934592]

A real `vigil serve` (embedded chDB in a temporary directory, `--workers` collector processes,
fsync on, detectors off) runs in a child process of this script whose inserter writes through
a switchable writer: SIGUSR1 makes every insert fail as an unreachable ClickHouse does
(`StoreUnavailable`), SIGUSR2 ends the outage. An embedded ClickHouse cannot be stopped apart
from Vigil, so the outage is made at the `StoreWriter` boundary, as the fault tests make it.

`--concurrency` client threads (half OTLP/HTTP, half OTLP/gRPC, each on its own connection) send
1,000-span requests (tests.bench.ingest_otlp's, made distinct per send) as fast as Vigil answers
them, throughout: `--before` seconds of steady state, a `--outage`-second outage, then on until
the write-ahead log is back to its steady-state size (twice its largest size before the outage,
at least 64 MiB), for at most `--drain-timeout` seconds; if it is not drained by then, the load
stops and the rest of the drain is timed without it. Then Vigil is stopped (it drains), its data
directory opened, and the spans stored counted against those acknowledged: zero loss means
equal, and more stored than acknowledged would be duplicates. Refusals (429/503 past the log's
bound) are counted; refused requests were not acknowledged. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.bench.ingest_otlp import (
    DistinctBodies,
    build_request,
    count_stored,
    free_port,
    send_grpc,
    send_http,
    tree_peak_rss_mb,
)
from vigil.collector.wal import WalCapacity
from vigil.errors import StoreUnavailable
from vigil.store.write import StoreWriter

_MIB = 1024 * 1024
_SAMPLE_S = 0.5
_STARTUP_TIMEOUT_S = 120.0


class SwitchableWriter(StoreWriter):
    """The real writer, failing as an unreachable ClickHouse does while `down` is set."""

    def __init__(self, real: StoreWriter) -> None:
        super().__init__(real.client, real.database, local_files=real.local_files)
        self.down = threading.Event()

    def insert_files(self, table: str, directory: Path, names: list[str], *, rows: int, dedup_token: str) -> None:
        if self.down.is_set():
            raise StoreUnavailable("ClickHouse did not answer (benchmark outage)")
        super().insert_files(table, directory, names, rows=rows, dedup_token=dedup_token)


def serve() -> None:
    """The child: `vigil serve` from the environment's settings, with the outage switch on SIGUSR1/SIGUSR2."""
    from vigil.server import Vigil, stop_on_signals
    from vigil.settings import load_settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        vigil = Vigil(load_settings())
        stop = stop_on_signals()
        try:
            await vigil.start()
            assert vigil.inserter is not None and isinstance(vigil.inserter.writer, StoreWriter)
            writer = SwitchableWriter(vigil.inserter.writer)
            vigil.inserter.writer = writer  # taken afresh at each insert
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, writer.down.set)
            loop.add_signal_handler(signal.SIGUSR2, writer.down.clear)
            await vigil.serve_until(stop)
        finally:
            await vigil.shutdown()

    asyncio.run(run())


@dataclass
class Sample:
    at: float  # seconds since the load began
    wal_bytes: int
    acknowledged: int  # spans


class Sampler(threading.Thread):
    """Records the log's size and the spans acknowledged every half second until stopped."""

    def __init__(self, wal: WalCapacity, counts: list[int], began: float) -> None:
        super().__init__(name="fault-sampler", daemon=True)
        self.wal = wal
        self.counts = counts
        self.began = began
        self.samples: list[Sample] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(_SAMPLE_S):
            self.samples.append(Sample(time.monotonic() - self.began, self.wal.size_bytes(), sum(self.counts)))

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def rate(samples: list[Sample]) -> float:
    if len(samples) < 2 or samples[-1].at == samples[0].at:
        return float("nan")
    return (samples[-1].acknowledged - samples[0].acknowledged) / (samples[-1].at - samples[0].at)


def wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"vigil serve exited with {server.returncode} before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("vigil serve was not ready in time")


def wait_drained(sampler: Sampler, threshold: int, since: float, timeout_s: float) -> float | None:
    """Seconds from `since` until a sample shows the log at or below `threshold`; None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(_SAMPLE_S)
        for sample in sampler.samples:
            if sample.at > since and sample.wal_bytes <= threshold:
                return sample.at - since
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child's mode
    parser.add_argument("--before", type=float, default=20.0, help="seconds of steady state before the outage")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds ClickHouse is unavailable")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="longest wait for the drain under load")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=-1, help="VIGIL_COLLECTOR_PROCESSES")
    parser.add_argument("--max-wal-bytes", type=int, default=8 * 1024**3, help="VIGIL_MAX_WAL_BYTES")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and the log")
    args = parser.parse_args()
    if args.serve:
        serve()
        return

    bodies = DistinctBodies.by_trace_ids([build_request(random.Random(seed)) for seed in range(16)], "traces")
    data_dir = Path(tempfile.mkdtemp(prefix="vigil-bench-fault-"))
    wal_dir = data_dir.with_name(data_dir.name + "-wal")
    ports = {"VIGIL_HTTP_PORT": free_port(), "VIGIL_OTLP_HTTP_PORT": free_port(), "VIGIL_OTLP_GRPC_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {k: str(v) for k, v in ports.items()}
    env.update(
        VIGIL_CLICKHOUSE_URL=f"chdb://{data_dir}",
        VIGIL_WAL_DIR=str(wal_dir),
        VIGIL_COLLECTOR_PROCESSES=str(args.workers),
        VIGIL_MAX_WAL_BYTES=str(args.max_wal_bytes),
        VIGIL_DETECTORS_ENABLED="false",
        VIGIL_STATSD_ENABLED="false",
        VIGIL_NETFLOW_ENABLED="false",
        VIGIL_LOG_LEVEL="WARNING",
    )
    print(f"vigil serve in {data_dir}, log {wal_dir}; {args.concurrency} clients, 1,000 spans per request")
    server = subprocess.Popen([sys.executable, "-m", "tests.bench.fault", "--serve"], env=env)
    stop = threading.Event()
    counts: list[int] = []
    errors: list[str] = []
    drained_under_load: float | None = None
    drained_after_load: float | None = None
    try:
        wait_ready(ports["VIGIL_HTTP_PORT"], server)
        threads = [
            threading.Thread(
                target=send_http if i % 2 == 0 else send_grpc,
                args=(
                    "traces",
                    ports["VIGIL_OTLP_HTTP_PORT"] if i % 2 == 0 else ports["VIGIL_OTLP_GRPC_PORT"],
                    bodies,
                    stop,
                    counts,
                    errors,
                ),
                daemon=True,
            )
            for i in range(args.concurrency)
        ]
        began = time.monotonic()
        sampler = Sampler(WalCapacity(wal_dir, args.max_wal_bytes), counts, began)
        sampler.start()
        for thread in threads:
            thread.start()
        time.sleep(args.before)
        outage_at = time.monotonic() - began
        server.send_signal(signal.SIGUSR1)
        time.sleep(args.outage)
        recovered_at = time.monotonic() - began
        server.send_signal(signal.SIGUSR2)
        before = sampler.between(0, outage_at)
        threshold = max(2 * max((s.wal_bytes for s in before), default=0), 64 * _MIB)
        drained_under_load = wait_drained(sampler, threshold, recovered_at, args.drain_timeout)
        load_stopped_at = time.monotonic() - began
        stop.set()
        for thread in threads:
            thread.join()
        if drained_under_load is None:
            drained_after_load = wait_drained(sampler, threshold, load_stopped_at, args.drain_timeout)
        sampler.stop.set()
        sampler.join()
        peak_rss = tree_peak_rss_mb(server.pid)
    finally:
        stop.set()
        server.send_signal(signal.SIGTERM)
        server.wait(600)
    acknowledged = sum(counts)
    stored = count_stored(data_dir, "spans")
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(wal_dir, ignore_errors=True)

    during = sampler.between(outage_at, recovered_at)
    after = sampler.between(recovered_at, load_stopped_at)
    peak = max(sampler.samples, key=lambda s: s.wal_bytes)
    print(f"steady state ({args.before:.0f} s): {rate(before):,.0f} spans/s acknowledged")
    print(f"outage ({args.outage:.0f} s): {rate(during):,.0f} spans/s acknowledged into the log")
    print(
        f"log peak: {peak.wal_bytes / _MIB:,.0f} MiB at {peak.at - outage_at:.1f} s after the outage began "
        f"(drained means back under {threshold / _MIB:,.0f} MiB)"
    )
    if drained_under_load is not None:
        print(f"drained {drained_under_load:.1f} s after ClickHouse returned, under full load")
    else:
        print(f"not drained within {args.drain_timeout:.0f} s under full load", end="; ")
        if drained_after_load is not None:
            print(f"drained {drained_after_load:.1f} s after the load stopped")
        else:
            print("not drained after the load stopped either")
    print(f"after the outage, under load: {rate(after):,.0f} spans/s acknowledged")
    refusals = {code: errors.count(code) for code in sorted(set(errors))}
    print(f"refused requests: {refusals or 'none'}")
    print(
        f"acknowledged {acknowledged:,} spans, stored {stored:,}: "
        + ("zero loss, no duplicates" if stored == acknowledged else f"DIFFERENCE {stored - acknowledged:+,}")
    )
    print(f"peak RSS of all Vigil processes: {peak_rss:,.0f} MiB")


if __name__ == "__main__":
    main()
