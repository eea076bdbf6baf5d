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
from prometheus_client.parser import text_string_to_metric_families

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
        VIGIL_NETFLOW_PORT=str(free_port()),
        VIGIL_IPFIX_PORT=str(free_port()),
        VIGIL_STATSD_FLUSH_INTERVAL="200ms",
        VIGIL_COLLECTOR_PROCESSES="1",
        VIGIL_MAX_BATCH_AGE="20ms",
    )
    return env


def wait_ready(
    env: dict[str, str], process: subprocess.Popen[str], timeout_s: float = 60, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = log.read_text(errors="replace") if log is not None else process.communicate()[1]
            raise AssertionError(f"{' '.join(process.args[2:])} exited with {process.returncode}: {said}")
        try:
            if httpx.get(f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{' '.join(process.args[2:])} did not become ready within {timeout_s} s")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[dict[str, str], list[subprocess.Popen[str]]]]:
    env = vigil_env(tmp_path / "data")
    processes: list[subprocess.Popen[str]] = []
    yield env, processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


# Each started Vigil's log, by pid. A file, not a pipe: a pipe nobody reads until the stop fills
# up with a busy Vigil's log lines and blocks it mid-test.
_LOGS: dict[int, Path] = {}


def start(env: dict[str, str], processes: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    log = Path(env["VIGIL_CLICKHOUSE_URL"].removeprefix("chdb://")).parent / f"vigil-{len(processes)}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([*VIGIL, "serve"], env=env, stderr=stderr, stdout=subprocess.DEVNULL, text=True)
    processes.append(process)
    _LOGS[process.pid] = log
    wait_ready(env, process, log=log)
    return process


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, and the log of a clean stop."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log = _LOGS.pop(process.pid).read_text(errors="replace")
    assert process.returncode == 0, log
    return log


@pytest.mark.slow
def test_spans_written_before_a_restart_are_there_after_it(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    env["VIGIL_COLLECTOR_PROCESSES"] = "0"  # the restart is the point; collector processes have their own tests
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
    # In one process: tests/collector/test_faults.py kills collector processes under load.
    env["VIGIL_COLLECTOR_PROCESSES"] = "0"
    first = start(env, processes)
    trace_id = send_one_span(env)
    first.kill()
    first.wait(timeout=30)

    env["VIGIL_INSERT_INTERVAL"] = "50ms"
    second = start(env, processes)
    trace = wait_for_trace(env, trace_id)
    assert [(s["name"], s["service"], s["duration_ns"]) for s in trace["spans"]] == [("op", "raw", 42)]  # type: ignore[index, attr-defined]
    assert "replaying 1 rows left in the write-ahead log by an earlier run" in stop(second)


def accepted_spans(env: dict[str, str]) -> dict[str, float]:
    """Spans acknowledged by each collector process, from the parent's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}/metrics").text
    return {
        sample.labels["collector"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "vigil_receiver_accepted_items_total" and sample.labels["signal"] == "traces"
    }


@pytest.mark.slow
def test_two_collector_processes_share_the_otlp_ports_and_every_span_is_stored(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]],
) -> None:
    env, processes = serve
    env["VIGIL_COLLECTOR_PROCESSES"] = "2"
    vigil = start(env, processes)
    # A new connection per request, so the kernel spreads them over both collectors.
    trace_ids = [send_one_span(env) for _ in range(12)]
    # Each collector process leaves its counts beside its log about once a second; the parent serves them.
    for _ in range(50):
        accepted = accepted_spans(env)
        if sum(accepted.values()) == 12:
            break
        time.sleep(0.1)
    assert (sorted(accepted), sum(accepted.values())) == (["collector-0", "collector-1"], 12.0)
    log = stop(vigil)  # drains both collectors and the logs
    assert "2 collector process(es)" in log
    restarted = start(env, processes)
    for trace_id in trace_ids:
        assert wait_for_trace(env, trace_id)["trace_id"] == trace_id
    stop(restarted)
    wal_root = Path(env["VIGIL_CLICKHOUSE_URL"].removeprefix("chdb://") + "-wal")
    # Each collector's log, and its journal of recent requests (to recognise retries).
    assert sorted(p.name for p in wal_root.iterdir()) == [
        "collector-0",
        "collector-0.requests",
        "collector-1",
        "collector-1.requests",
    ]


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
    env["VIGIL_COLLECTOR_PROCESSES"] = "0"  # the store's lock is the point, taken before any collector starts
    start(env, processes)
    second = {**env, "VIGIL_HTTP_PORT": str(free_port()), "VIGIL_OTLP_HTTP_PORT": str(free_port())}
    second["VIGIL_OTLP_GRPC_PORT"] = str(free_port())
    second["VIGIL_STATSD_PORT"] = str(free_port())
    second["VIGIL_NETFLOW_PORT"], second["VIGIL_IPFIX_PORT"] = str(free_port()), str(free_port())
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
        "vigil: VIGIL_BIND='0.0.0.0' is not a loopback address and no API tokens are configured; "
        "set VIGIL_TOKENS or VIGIL_TOKENS_FILE (`vigil token new` makes one), or VIGIL_AUTH=off to "
        "serve without authentication on a trusted network\n"
    )


def new_token(name: str, scopes: str) -> tuple[str, str]:
    """`vigil token new`: (the secret, the tokens-file entry it prints)."""
    result = subprocess.run(
        [*VIGIL, "token", "new", "--name", name, "--scopes", scopes], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    secret = lines[0].removeprefix("secret (shown once; give it to the holder): ")
    entry = "\n".join(lines[3:6])
    assert entry.startswith(f"  - name: {name}\n    scopes: [")
    return secret, entry


@pytest.mark.slow
def test_tokens_from_vigil_token_new_secure_collector_processes_and_the_ci_commands(
    serve: tuple[dict[str, str], list[subprocess.Popen[str]]], tmp_path: Path
) -> None:
    env, processes = serve
    agents, agents_entry = new_token("agents", "ingest")
    pipeline, pipeline_entry = new_token("pipeline", "ci")
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(f"tokens:\n{agents_entry}\n{pipeline_entry}\n")
    assert agents not in tokens_file.read_text()  # the file holds digests only
    env["VIGIL_TOKENS_FILE"] = str(tokens_file)
    vigil = start(env, processes)  # /readyz stays open for probes

    otlp = f"http://127.0.0.1:{env['VIGIL_OTLP_HTTP_PORT']}/v1/traces"
    start_ns = now_ns()
    body = raw_request([{"trace_id": os.urandom(16), "span_id": os.urandom(8), "start": start_ns, "end": start_ns + 1}])
    protobuf = {"Content-Type": "application/x-protobuf"}
    # The collector process enforces the tokens it was handed, not only the parent.
    assert httpx.post(otlp, content=body.SerializeToString(), headers=protobuf).status_code == 401
    ingest_headers = {**protobuf, "Authorization": f"Bearer {agents}"}
    assert httpx.post(otlp, content=body.SerializeToString(), headers=ingest_headers).status_code == 200

    api = f"http://127.0.0.1:{env['VIGIL_HTTP_PORT']}"
    mark = [*VIGIL, "deploy", "mark", "--service", "checkout", "--version", "2.0.0", "--url", api]
    refused = subprocess.run(mark, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 4
    assert refused.stderr == (
        "vigil: Vigil refused the request: HTTP 401: this route needs a token with the 'ci' scope: send "
        "Authorization: Bearer <secret>, or sign in at /login; pass --token or set VIGIL_TOKEN\n"
    )
    wrong_scope = subprocess.run([*mark, "--token", agents], env=env, capture_output=True, text=True, timeout=60)
    assert wrong_scope.returncode == 4
    assert "token 'agents' has scopes ingest; this route needs 'ci'" in wrong_scope.stderr
    marked = subprocess.run(mark, env={**env, "VIGIL_TOKEN": pipeline}, capture_output=True, text=True, timeout=60)
    assert marked.returncode == 0, marked.stderr
    assert marked.stdout.endswith(": checkout 2.0.0 (full, production)\n")
    log = stop(vigil)
    assert agents not in log and pipeline not in log


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [*VIGIL, "--help"], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"}
    )
    assert result.returncode == 0
    commands_box = result.stdout.split("Commands")[1]
    commands = [line.split()[1] for line in commands_box.splitlines() if line.startswith("│ ")]
    assert commands == ["serve", "demo", "collector", "api", "detect", "deploy", "canary", "silence", "token"]


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


@pytest.mark.slow
def test_a_sigterm_to_the_whole_process_group_stops_the_demo_with_its_last_exports_delivered(tmp_path: Path) -> None:
    # As `timeout`, `kill -- -PGID` and systemd stop a service: every process of the group at once.
    # The collector process must wait for its parent, which stops the demo's senders first.
    env = vigil_env(tmp_path / "data")
    log = tmp_path / "demo.log"
    with log.open("w") as stderr:
        demo = subprocess.Popen(
            [*VIGIL, "demo"], env=env, stderr=stderr, stdout=subprocess.DEVNULL, text=True, start_new_session=True
        )
    try:
        wait_ready(env, demo, log=log)
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=10)
    said = log.read_text(errors="replace")
    failed_exports = [line for line in said.splitlines() if "opentelemetry.exporter" in line]
    assert (demo.returncode, "Vigil stopped" in said, failed_exports) == (0, True, [])


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
