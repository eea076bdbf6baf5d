"""Dashboard page benchmark: server time of every page, and of the API calls behind them, on a day of data.

    .venv/bin/python -m tests.bench.pages --data-dir /var/tmp/vigil-pages [--spans 10000000] [--logs 5000000]
        [--requests 20] [--ranges 15m,1h,24h] [--concurrent 1]

When `--data-dir` is new or empty, `tests.bench.page_data` fills it first (in a child process: one
chDB directory, one process) with `--spans` spans and `--logs` logs over the last 24 h. A store it
filled before is reused as it is (`--spans` and `--logs` are then ignored), so a big store is
generated once; but its data ages: the last 15 minutes of a store filled an hour ago are empty.

Then `vigil serve` runs over it (VIGIL_CLICKHOUSE_URL=chdb://DIR, detectors off, no collector
processes) and each URL is requested once to warm up, then `--requests` times in a row over
loopback with keep-alive. The time is the wall time of the HTTP request: what a browser on the
same host waits for the HTML or JSON; `/healthz`, which reads nothing, is the floor under every
figure. With `--concurrent N`, N clients (each its own connection) request each URL `--requests`
times at once, as a team opening the dashboard together during an incident; every request's
time counts. The table gives p50 and p95 per URL and range; a page that answers 404 (not built yet)
is listed as missing, any other failure with its status. The pages whose p95 must stay under
200 ms (services, one service, one trace) are summed up at the end. Asserts nothing.

Small scale, to develop on a shared machine: ``--spans 300000 --logs 150000``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np

from tests.bench import page_data

DEFAULT_RANGES = "15m,1h,24h"
# Pages named by the target: p95 under this on the full store.
TARGET_MS = 200.0
_STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Url:
    path: str
    range: str  # "" when the URL takes no range
    target: bool = False  # one of the pages with the p95 target


@dataclass(frozen=True, slots=True)
class Timing:
    url: Url
    outcome: str  # "ok", "missing", or the failing status
    p50_ms: float
    p95_ms: float
    size: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def generated(data_dir: Path) -> dict[str, float] | None:
    """What `page_data` recorded in `data_dir`, or None when it has not filled it."""
    marker = data_dir / page_data.MARKER
    if marker.is_file():
        made: dict[str, float] = json.loads(marker.read_text())
        return made
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise SystemExit(f"{data_dir} holds something other than a page benchmark store; name a new directory")
    return None


def generate(data_dir: Path, spans: int, logs: int) -> None:
    command = [sys.executable, "-m", "tests.bench.page_data", "--data-dir", str(data_dir)]
    subprocess.run([*command, "--spans", str(spans), "--logs", str(logs)], check=True)


def start_vigil(data_dir: Path, wal_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = os.environ | {
        "VIGIL_CLICKHOUSE_URL": f"chdb://{data_dir}",
        "VIGIL_DETECTORS_ENABLED": "false",
        "VIGIL_COLLECTOR_PROCESSES": "0",
        "VIGIL_HTTP_PORT": str(port),
        "VIGIL_OTLP_GRPC_PORT": "0",
        "VIGIL_OTLP_HTTP_PORT": "0",
        "VIGIL_STATSD_PORT": "0",
        "VIGIL_NETFLOW_PORT": "0",
        "VIGIL_IPFIX_PORT": "0",
        "VIGIL_WAL_DIR": str(wal_dir),
        "VIGIL_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "vigil.cli", "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"vigil serve exited with {process.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_vigil(process)
    raise SystemExit(f"vigil serve was not ready within {_STARTUP_TIMEOUT_S:.0f} s")


def stop_vigil(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def subjects(client: httpx.Client) -> tuple[str, str]:
    """The busiest service of the last day, and a trace of it from the last hour with the most spans."""
    services = client.get("/api/v1/services", params={"since": "24h"})
    services.raise_for_status()
    if not services.json():
        raise SystemExit("the store has no requests in the last 24 h; generate a new one")
    busiest = max(services.json(), key=lambda s: s["requests"])["service"]
    traces = client.get("/api/v1/traces", params={"service": busiest, "since": "1h", "limit": 50})
    traces.raise_for_status()
    if not traces.json():
        raise SystemExit(f"no trace of {busiest} in the last hour; the store is too old, generate a new one")
    trace = max(traces.json(), key=lambda t: t["span_count"])["trace_id"]
    return busiest, trace


def urls(service: str, trace_id: str, ranges: list[str]) -> list[Url]:
    """Each page and API call, once per range (each URL's ranges together), then those without one."""
    s = quote(service, safe="")
    ranged = [
        ("/?", True),
        (f"/services/{s}?", True),
        ("/traces?", False),
        (f"/traces?service={s}&", False),
        ("/logs?", False),
        ("/logs/patterns?", False),
        ("/network?", False),
        ("/slos?", False),
        ("/findings?", False),
        ("/deploys?", False),
        ("/alerts?", False),
        ("/api/v1/services?", False),
        ("/api/v1/traces?", False),
        (f"/api/v1/traces?service={s}&status=error&", False),
        ("/api/v1/logs?", False),
        (f"/api/v1/logs?service={s}&severity=error&q=failed&", False),
        (f"/api/v1/logs/patterns?service={s}&", False),
    ]
    listed = [Url(f"{prefix}since={r}", r, target) for prefix, target in ranged for r in ranges]
    return [
        # No store, no template: what every other request costs on top of its own work.
        Url("/healthz", ""),
        *listed,
        Url(f"/traces/{trace_id}", "", target=True),
        Url(f"/api/v1/traces/{trace_id}", ""),
        Url(f"/api/v1/logs?trace_id={trace_id}", ""),
    ]


def time_url(clients: list[httpx.Client], url: Url, requests: int) -> Timing:
    """`requests` timed requests of `url` from each client, all clients at once."""
    warm = clients[0].get(url.path)
    if warm.status_code == 404:
        return Timing(url, "missing", float("nan"), float("nan"), 0)
    if warm.status_code != 200:
        return Timing(url, f"HTTP {warm.status_code}", float("nan"), float("nan"), len(warm.content))

    def run(client: httpx.Client) -> tuple[list[float], httpx.Response | None]:
        elapsed = []
        for _ in range(requests):
            began = time.perf_counter()
            response = client.get(url.path)
            elapsed.append(time.perf_counter() - began)
            if response.status_code != 200:
                return elapsed, response
        return elapsed, None

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(run, clients))
    for _, failed in results:
        if failed is not None:
            return Timing(url, f"HTTP {failed.status_code}", float("nan"), float("nan"), len(failed.content))
    ms = np.array([t for elapsed, _ in results for t in elapsed]) * 1000
    return Timing(url, "ok", float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), len(warm.content))


def report(timings: list[Timing], requests: int, concurrent: int) -> None:
    width = max(len(t.url.path) for t in timings)
    each = f"{requests} requests each" + (f" from {concurrent} clients at once" if concurrent > 1 else "")
    print(f"\n{'URL':{width}}  {'range':>5}  {'p50 ms':>8}  {'p95 ms':>8}  {'KiB':>7}  ({each})")
    for t in timings:
        figures = f"{t.p50_ms:8.1f}  {t.p95_ms:8.1f}  {t.size / 1024:7.1f}" if t.outcome == "ok" else f"{t.outcome:>8}"
        print(f"{t.url.path:{width}}  {t.url.range or '-':>5}  {figures}")
    print(f"\np95 under {TARGET_MS:.0f} ms for the services, service and trace pages:")
    for t in (t for t in timings if t.url.target):
        verdict = t.outcome if t.outcome != "ok" else ("yes" if t.p95_ms < TARGET_MS else f"NO ({t.p95_ms:.0f} ms)")
        print(f"  {t.url.path:{width}}  {t.url.range or '-':>5}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path, help="chDB directory: reused if it holds a store")
    parser.add_argument("--spans", type=int, default=10_000_000, help="spans to generate when the store is new")
    parser.add_argument("--logs", type=int, default=5_000_000, help="logs to generate when the store is new")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per URL")
    parser.add_argument("--ranges", default=DEFAULT_RANGES, help="comma-separated page ranges")
    parser.add_argument("--concurrent", type=int, default=1, help="clients requesting each URL at once")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    made = generated(data_dir)
    if made is None:
        generate(data_dir, args.spans, args.logs)
    else:
        age_min = (time.time() - made["generated_at"]) / 60
        print(f"reusing {data_dir}: {made['spans']:,.0f} spans, {made['logs']:,.0f} logs, ending {age_min:.0f} min ago")
        if age_min > 5:
            print(f"  ranges up to {age_min:.0f} min read little or nothing: fill a new directory to time them")
    with tempfile.TemporaryDirectory(prefix="vigil-pages-wal-") as wal:
        began = time.perf_counter()
        process, base = start_vigil(data_dir, Path(wal))
        print(f"vigil serve ready in {time.perf_counter() - began:.1f} s at {base}")
        try:
            with ExitStack() as stack:
                clients = [
                    stack.enter_context(httpx.Client(base_url=base, timeout=120)) for _ in range(args.concurrent)
                ]
                service, trace_id = subjects(clients[0])
                print(f"service {service}, trace {trace_id}")
                ranges = [r.strip() for r in args.ranges.split(",") if r.strip()]
                timings = [time_url(clients, url, args.requests) for url in urls(service, trace_id, ranges)]
        finally:
            stop_vigil(process)
    report(timings, args.requests, args.concurrent)


if __name__ == "__main__":
    main()
