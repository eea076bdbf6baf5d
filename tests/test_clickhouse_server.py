"""Vigil against a ClickHouse server: each role its own process, all through ClickHouse's HTTP interface.

The server is `tests.clickhouse_http.ClickHouseHttp`: ClickHouse's HTTP interface on 127.0.0.1 over
the test session's embedded engine, so these tests drive Vigil's server client (clickhouse-connect's
`HttpClient`: its Native format, compression, settings and parameters) end to end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from tests.clickhouse_http import ClickHouseHttp
from tests.ports import free_port
from tests.spans import checkout_trace, expected_span, now_ns, raw_request, trace_id_of
from tests.store.test_client import SLOW_QUERY, running
from tests.test_cli import VIGIL, vigil_env, wait_for_trace, wait_ready
from tests.waiting import wait_until
from vigil.collector.request_dedup import request_digest
from vigil.collector.request_exchange import FLEET_JOURNAL
from vigil.store.client import INSERT_PRIORITY, READ_PRIORITY, chdb_path, open_client
from vigil.store.schema import MIGRATIONS


@pytest.fixture
def clickhouse(chdb_url: str, chdb_client: Client) -> Iterator[ClickHouseHttp]:
    # A password that must be URL-decoded on its way from VIGIL_CLICKHOUSE_URL to the server.
    with ClickHouseHttp(chdb_path(chdb_url), user="vigil", password="s3cret:/@ pass") as server:
        yield server


class Role:
    """A `vigil ROLE` process with its own ports, log and write-ahead log directory."""

    def __init__(self, role: str, clickhouse_url: str, directory: Path, **variables: str) -> None:
        self.role = role
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{role}.log"
        self.env = vigil_env(directory)
        # A collector in the role's own process unless a test asks for child processes.
        self.env.update(
            VIGIL_CLICKHOUSE_URL=clickhouse_url, VIGIL_COLLECTOR_PROCESSES="0", VIGIL_WAL_DIR=str(directory / "wal")
        )
        self.env.update(variables)
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*VIGIL, role], env=self.env, stdout=subprocess.DEVNULL, stderr=log, text=True
            )

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.env[variable]}"

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        wait_ready(self.env, self.process, log=self.log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture
def started() -> Iterator[list[Role]]:
    roles: list[Role] = []
    yield roles
    for role in roles:
        role.stop()


def metric(role: Role, sample: str) -> float | None:
    """The sum of `sample` (e.g. ``vigil_detector_leader``) on a role's /metrics; None before it answers or has it."""
    try:
        text = httpx.get(f"{role.url('VIGIL_HTTP_PORT')}/metrics", timeout=5).text
    except httpx.TransportError:
        return None
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == sample]
    return sum(values) if values else None


def leading(detect: Role) -> float | None:
    return metric(detect, "vigil_detector_leader")


def lease_holder(client: Client, database: str) -> str:
    ((holder,),) = client.query(f"SELECT Holder FROM {database}.leases FINAL").result_rows
    return str(holder)


def expected_trace(spans: list) -> dict[str, object]:  # type: ignore[type-arg]
    ordered = sorted((expected_span(s) for s in spans), key=lambda s: (s["start_time_unix_nano"], s["span_id"]))
    return {"trace_id": trace_id_of(spans), "spans": ordered}


@pytest.mark.slow
def test_two_collectors_an_api_and_two_detect_replicas_in_their_own_processes_share_one_clickhouse_server(
    clickhouse: ClickHouseHttp, started: list[Role], database: str, chdb_client: Client, tmp_path: Path
) -> None:
    url = clickhouse.url(database)
    # All five start at once: they migrate the same database concurrently, as a rollout does.
    collectors = [Role("collector", url, tmp_path / f"collector-{n}") for n in (1, 2)]
    api = Role("api", url, tmp_path / "api")
    detects = [Role("detect", url, tmp_path / f"detect-{n}", VIGIL_LEASE_TTL="4s") for n in (1, 2)]
    started += [*collectors, api, *detects]
    for role in started:
        role.wait_ready()

    # One trace to each collector: over OTLP/gRPC to the first, OTLP/HTTP to the second.
    first, second = checkout_trace(), checkout_trace()
    grpc_exporter = GrpcSpanExporter(endpoint=collectors[0].url("VIGIL_OTLP_GRPC_PORT"), insecure=True)
    http_exporter = HttpSpanExporter(endpoint=f"{collectors[1].url('VIGIL_OTLP_HTTP_PORT')}/v1/traces")
    try:
        assert grpc_exporter.export(first) == SpanExportResult.SUCCESS
        assert http_exporter.export(second) == SpanExportResult.SUCCESS
    finally:
        grpc_exporter.shutdown()
        http_exporter.shutdown()
    assert wait_for_trace(api.env, trace_id_of(first)) == expected_trace(first)
    assert wait_for_trace(api.env, trace_id_of(second)) == expected_trace(second)

    # Each collector inserted its own trace's spans, under a deduplication token of its own.
    inserts = clickhouse.statements(rf"^INSERT INTO {database}\.spans\b")
    assert len(inserts) == 2
    assert all(s.settings.get("insert_deduplication_token") for s in inserts)
    assert len({s.settings["insert_deduplication_token"] for s in inserts}) == 2
    # Inserts yield to queries on the server too: the collectors' at INSERT_PRIORITY, the reads at READ_PRIORITY.
    priorities = {
        (s.sql.startswith("INSERT"), s.settings.get("priority"))
        for s in clickhouse.statements(rf"\b{database}\.spans\b")
    }
    assert priorities == {(True, str(INSERT_PRIORITY)), (False, str(READ_PRIORITY))}

    # One detect replica leads, as its metrics and the lease row both say; the other stands by.
    assert wait_until(lambda: sorted(leading(d) for d in detects) == [0.0, 1.0], timeout_s=30)
    leader, standby = detects if leading(detects[0]) == 1.0 else detects[::-1]
    assert lease_holder(chdb_client, database).startswith(f"{socket.gethostname()}-{leader.process.pid}-")

    # Four concurrent migrations left each version recorded and every statement succeeded, as "vigil".
    versions = chdb_client.query(f"SELECT DISTINCT version FROM {database}.schema_migrations ORDER BY version")
    assert [v for (v,) in versions.result_rows] == [m.version for m in MIGRATIONS]
    assert [(s.sql, s.error_code) for s in clickhouse.queries if s.error_code is not None] == []
    assert {s.user for s in clickhouse.queries} == {"vigil"}

    # The leader stops (releasing its lease): the standby takes over.
    assert leader.stop() == 0, leader.said()
    assert wait_until(lambda: leading(standby) == 1.0, timeout_s=30)
    assert lease_holder(chdb_client, database).startswith(f"{socket.gethostname()}-{standby.process.pid}-")

    # The logs name the store without its password.
    password = clickhouse.password
    for role in started:
        assert role.stop() == 0, role.said()
        said = role.said()
        assert (password in said, quote(password, safe="") in said) == (False, False)
        assert f"store http://vigil:***@127.0.0.1:{clickhouse.port}/{database} (database {database})" in said


def last_line(role: Role) -> str:
    assert role.process.wait(timeout=60) is not None
    return role.said().rstrip("\n").rpartition("\n")[2]


@pytest.mark.parametrize("command", ["collector", "api", "detect"])
def test_a_wrong_clickhouse_password_stops_a_role_at_start_naming_the_cause(
    command: str, clickhouse: ClickHouseHttp, database: str, tmp_path: Path
) -> None:
    role = Role(command, f"http://vigil:not-it@127.0.0.1:{clickhouse.port}/{database}", tmp_path)
    # No retry would ever get in, so even a collector, which outlives an outage, stops.
    assert last_line(role) == (
        f"vigil: ClickHouse at 127.0.0.1:{clickhouse.port} refused user 'vigil': vigil: Authentication failed: "
        "password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED). Check the user and "
        "password in VIGIL_CLICKHOUSE_URL (percent-encode any of : / @ ? # in them)"
    )
    assert role.process.returncode == 2
    assert "not-it" not in role.said()


def test_an_api_whose_clickhouse_is_unreachable_stops_saying_so_and_what_to_do(tmp_path: Path) -> None:
    port = free_port()
    role = Role("api", f"http://vigil:s3cret@127.0.0.1:{port}/obs", tmp_path)
    line = last_line(role)
    assert line.startswith(f"vigil: cannot reach ClickHouse at 127.0.0.1:{port}: ")
    assert line.endswith(
        "Only a collector alone starts without ClickHouse (its write-ahead log keeps the data); the api and detect "
        "roles need it now: start ClickHouse first, or let the supervisor restart this process until it answers"
    )
    assert (role.process.returncode, "Traceback" in role.said(), "s3cret" in role.said()) == (1, False, False)


def test_threads_sharing_one_client_run_their_queries_on_the_server_at_once(
    clickhouse: ClickHouseHttp, database: str, chdb_client: Client
) -> None:
    # Every role shares one client between threads (request handlers, the inserter, the detectors).
    # ClickHouse runs one query at a time per session: a client that sent one session id with
    # every query would refuse all but one of four simultaneous queries (clickhouse-connect says
    # so itself before the server would, with SESSION_IS_LOCKED).
    client = open_client(clickhouse.url(database))
    marker = uuid.uuid4().hex
    failures: list[Exception] = []

    def slow_query() -> None:
        try:
            client.query(SLOW_QUERY, parameters={"marker": marker})
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=slow_query) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        all_running = wait_until(lambda: bool(failures) or running(chdb_client, marker) == 4, timeout_s=10)
        refused = [str(exc) for exc in failures]  # before the kill below ends every query with an error
    finally:
        chdb_client.command(f"KILL QUERY WHERE query LIKE '%{marker}%' AND query NOT LIKE '%KILL QUERY%' SYNC")
        for thread in threads:
            thread.join(timeout=10)
    assert refused == []
    assert all_running


def deduplicated(collector: Role) -> float | None:
    return metric(collector, "vigil_receiver_deduplicated_requests_total")


@pytest.mark.slow
def test_a_retry_the_load_balancer_sends_to_another_host_is_answered_and_not_stored_twice(
    clickhouse: ClickHouseHttp, started: list[Role], database: str, chdb_client: Client, tmp_path: Path
) -> None:
    url = clickhouse.url(database)
    first_host = Role("collector", url, tmp_path / "host-1")
    # The second host's collector runs in a child process, as by default: it reads the fleet journal too.
    second_host = Role("collector", url, tmp_path / "host-2", VIGIL_COLLECTOR_PROCESSES="1")
    started += [first_host, second_host]
    for role in started:
        role.wait_ready()
    trace_id, span_ids = os.urandom(16), [os.urandom(8) for _ in range(3)]
    start = now_ns()
    body = raw_request([{"trace_id": trace_id, "span_id": s, "start": start, "end": start + 5} for s in span_ids])
    request = body.SerializeToString()

    def post(host: Role) -> int:
        url = f"{host.url('VIGIL_OTLP_HTTP_PORT')}/v1/traces"
        return httpx.post(url, content=request, headers={"Content-Type": "application/x-protobuf"}).status_code

    assert post(first_host) == 200
    # The first host's answer is lost; by the exporter's retry the digest has reached the second host.
    digest = request_digest("traces", "application/x-protobuf", request).hex().encode()
    fleet_journal = Path(second_host.env["VIGIL_WAL_DIR"]) / FLEET_JOURNAL
    assert wait_until(lambda: fleet_journal.exists() and digest in fleet_journal.read_bytes(), timeout_s=30)
    assert post(second_host) == 200
    # A collector process reports its counts to its parent's /metrics about once a second.
    assert wait_until(lambda: deduplicated(second_host) == 1)
    assert deduplicated(first_host) == 0

    for role in started:
        assert role.stop() == 0, role.said()
    rows = chdb_client.query(f"SELECT SpanId, count() FROM {database}.spans GROUP BY SpanId").result_rows
    assert sorted(rows) == sorted((span_id.hex(), 1) for span_id in span_ids)


def test_a_detect_backfill_whose_clickhouse_is_unreachable_stops_saying_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    port = free_port()
    env["VIGIL_CLICKHOUSE_URL"] = f"http://vigil:s3cret@127.0.0.1:{port}/obs"
    done = subprocess.run([*VIGIL, "detect", "--once"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert (
        done.stderr.rstrip("\n").rpartition("\n")[2].startswith(f"vigil: cannot reach ClickHouse at 127.0.0.1:{port}: ")
    )
    assert ("Traceback" in done.stderr, "s3cret" in done.stderr) == (False, False)
