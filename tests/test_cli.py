"""`vigil` as a user runs it: a real process, real signals, a real restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from tests.conftest import RunningVigil
from tests.ports import free_port
from tests.spans import now_ns, raw_request
from vigil.cli import _release_demo_version
from vigil.demo import DemoTraffic, otlp_grpc_exporter_factory

VIGIL = [sys.executable, "-m", "vigil.cli"]


def vigil_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        VIGIL_CLICKHOUSE_URL=f"chdb://{data}",
        VIGIL_HTTP_PORT=str(free_port()),
        VIGIL_OTLP_HTTP_PORT=str(free_port()),
        VIGIL_OTLP_GRPC_PORT=str(free_port()),
        VIGIL_STATSD_PORT=str(free_port()),
        VIGIL_NETFLOW_PORT="0",
        VIGIL_IPFIX_PORT="0",
        VIGIL_STATSD_FLUSH_INTERVAL="200ms",
        VIGIL_COLLECTOR_PROCESSES="1",
        VIGIL_MAX_BATCH_AGE="20ms",
    )
    return env


def wait_ready(env: dict[str, str], process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("vigil serve did not become ready in time")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[str]]]]:
    env = vigil_env(tmp_path / "data")
    processes: list[subprocess.Popen[str]] = []
    yield env, processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def start(env: dict[str, str], processes: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    process = subprocess.Popen([*VIGIL, "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    processes.append(process)
    wait_ready(env, process)
    return process


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    return stderr


@pytest.mark.slow
def test_spans_written_before_a_restart_are_there_after_it(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    first = start(env, processes)
    trace_id = send_one_span(env)
    first_log = stop(first)
    assert "applied schema migration 1" in first_log
    assert "Vigil stopped" in first_log

    second = start(env, processes)
    trace = httpx.get(f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}/api/v1/traces/{trace_id}").json()
    assert [(s["name"], s["service"], s["duration_ns"]) for s in trace["spans"]] == [("op", "raw", 42)]
    second_log = stop(second)
    assert "applied schema migration" not in second_log


def send_one_span(env: dict[str, str]) -> str:
    trace_id = os.urandom(16)
    start_ns = now_ns()
    body = raw_request([{"trace_id": trace_id, "span_id": os.urandom(8), "start": start_ns, "end": start_ns + 42}])
    response = httpx.post(
        f"http://127.0.0.1:{env['VIGIL_OTLP_HTTP_PORT']}/v1/traces",
        content=body.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    return trace_id.hex()


def wait_for_trace(env: dict[str, str], trace_id: str, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.get(f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}/api/v1/traces/{trace_id}")
        if response.status_code == 200:
            return dict(response.json())
        time.sleep(0.1)
    raise AssertionError(f"trace {trace_id} did not appear within {timeout_s} s")


@pytest.mark.slow
def test_spans_acknowledged_before_a_kill_9_are_stored_after_the_restart(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    env["VIGIL_INSERT_INTERVAL"] = "1h"  # acknowledged rows stay only in the write-ahead log
    first = start(env, processes)
    trace_id = send_one_span(env)
    first.kill()
    first.communicate(timeout=30)  # also closes its stderr pipe

    env["VIGIL_INSERT_INTERVAL"] = "50ms"
    second = start(env, processes)
    trace = wait_for_trace(env, trace_id)
    assert [(s["name"], s["service"], s["duration_ns"]) for s in trace["spans"]] == [("op", "raw", 42)]  # type: ignore[index, attr-defined]
    assert "replaying 1 rows left in the write-ahead log by an earlier run" in stop(second)


@pytest.mark.slow
def test_two_collector_processes_share_the_otlp_ports_and_every_span_is_stored(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    env["VIGIL_COLLECTOR_PROCESSES"] = "2"
    vigil = start(env, processes)
    # A new connection per request, so the kernel spreads them over both collectors.
    trace_ids = [send_one_span(env) for _ in range(12)]
    log = stop(vigil)  # drains both collectors and the logs
    assert "2 collector process(es)" in log
    restarted = start(env, processes)
    for trace_id in trace_ids:
        assert wait_for_trace(env, trace_id)["trace_id"] == trace_id
    stop(restarted)
    wal_root = Path(env["VIGIL_CLICKHOUSE_URL"].removeprefix("chdb://") + "-wal")
    assert sorted(p.name for p in wal_root.iterdir()) == ["collector-0", "collector-1"]


def test_a_bad_setting_stops_the_start_with_the_variable_named(tmp_path: Path) -> None:
    env = vigil_env(tmp_path / "data")
    env["VIGIL_OTLP_GRPC_PORT"] = "70000"
    result = subprocess.run([*VIGIL, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        "vigil: invalid settings:\n  VIGIL_OTLP_GRPC_PORT='70000': Input should be less than or equal to 65535\n"
    )


def test_a_data_directory_in_use_is_refused_with_the_reason(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    start(env, processes)
    second = {**env, "VIGIL_HTTP_PORT": str(free_port()), "VIGIL_OTLP_HTTP_PORT": str(free_port())}
    second["VIGIL_OTLP_GRPC_PORT"] = str(free_port())
    second["VIGIL_STATSD_PORT"] = str(free_port())
    result = subprocess.run([*VIGIL, "serve"], env=second, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        "Only one process may open a data directory: stop the other Vigil using it, "
        "or point VIGIL_CLICKHOUSE_URL elsewhere."
    )


def test_a_public_bind_address_without_tokens_is_refused(tmp_path: Path) -> None:
    env = vigil_env(tmp_path / "data")
    env["VIGIL_BIND"] = "0.0.0.0"
    result = subprocess.run([*VIGIL, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        "vigil: VIGIL_BIND='0.0.0.0' is not a loopback address and no API tokens exist yet; "
        "set VIGIL_AUTH=off to serve without authentication on a trusted network\n"
    )


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [*VIGIL, "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"}
    )
    assert result.returncode == 0
    commands_box = result.stdout.split("Commands")[1]
    commands = [line.split()[1] for line in commands_box.splitlines() if line.startswith("│ ")]
    assert commands == ["serve", "demo", "collector", "api", "detect", "deploy", "canary", "silence"]


def test_detect_backfills_an_embedded_store_and_stops_when_caught_up(tmp_path: Path) -> None:
    env = vigil_env(tmp_path / "data")
    result = subprocess.run(
        [*VIGIL, "detect", "--backfill", "2h", "--once"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "replaying 2h" in result.stdout


def test_detect_keeps_the_retention_the_settings_ask_for(tmp_path: Path) -> None:
    env = vigil_env(tmp_path / "data") | {"VIGIL_TRACES_RETENTION_DAYS": "3"}
    result = subprocess.run([*VIGIL, "detect", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # chDB opens one data directory per process, and this one already has the tests' own.
    ttl = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vigil.store.client import open_client; import sys; "
            f"print(open_client('chdb://{tmp_path / 'data'}').query("
            "\"SELECT extract(create_table_query, 'TTL (.+?) SETTINGS') FROM system.tables "
            "WHERE database = 'vigil' AND name = 'spans'\").result_rows[0][0])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ttl.stdout == "toDateTime(Timestamp) + toIntervalDay(3)\n", ttl.stderr


def test_detect_names_a_bad_backfill(tmp_path: Path) -> None:
    env = vigil_env(tmp_path / "data")
    result = subprocess.run([*VIGIL, "detect", "--backfill", "soon"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (
        "vigil: --backfill: 'soon' is not a duration; expected a number with a unit, e.g. 250ms, 10s, 15m, 1h, 7d\n"
    )


def test_statsd_lines_reach_the_store_through_a_collector_process_and_the_last_flush_on_stop(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    env["VIGIL_STATSD_FLUSH_INTERVAL"] = "1h"  # only the flush on shutdown can store these
    first = start(env, processes)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(
            b"jobs.done:2|c|#service:worker\njobs.done:3|c|#service:worker",
            ("127.0.0.1", int(env["VIGIL_STATSD_PORT"])),
        )
    time.sleep(0.5)  # the datagram is read by the collector process, not acknowledged
    stop(first)
    start(env, processes)
    response = httpx.get(
        f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}/api/v1/metrics/query",
        params={"name": "jobs.done", "agg": "sum", "group_by": "service", "step": "1h", "since": "2h"},
    )
    assert response.status_code == 200, response.text
    [series] = response.json()["series"]
    assert series["labels"] == {"service": "worker"}
    assert sum(value for _, value in series["points"]) == 5.0


def test_the_demo_release_rolls_out_checkout_and_reports_it_as_a_deploy(
    quiet_vigil: RunningVigil, chdb_client: Client, database: str
) -> None:
    traffic = DemoTraffic(otlp_grpc_exporter_factory(quiet_vigil.otlp_grpc), seed=7, batch=False)
    _release_demo_version(traffic, quiet_vigil.api)
    traffic.run_requests(30)
    traffic.shutdown()
    quiet_vigil.flush()
    deploys = httpx.get(f"{quiet_vigil.api}/api/v1/deploys", params={"service": "checkout"}).json()
    assert [(d["service"], d["version"], d["environment"], d["detected"]) for d in deploys] == [
        ("checkout", "1.5.0", "demo", False)
    ]
    versions = chdb_client.query(
        f"SELECT DISTINCT ServiceVersion FROM {database}.spans WHERE ServiceName = 'checkout'"
    ).result_rows
    assert versions == [("1.5.0",)]
