"""Canary gates end to end: two versions from the OpenTelemetry SDK, the verdict API, and `vigil canary gate`."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningVigil
from tests.metric_rows import metric_rows
from vigil.detectors.canary import CanaryFinalizer
from vigil.store.client import open_client
from vigil.store.write import StoreWriter

VIGIL = [sys.executable, "-m", "vigil.cli"]
WINDOW_S = 600


def send_versions(
    vigil: RunningVigil, service: str, start: float, *, requests: int, slowdown: float = 1.0, canary_errors: float = 0.0
) -> set[str]:
    """`requests` per version and operation over ten minutes from `start`: version 1.0 and 2.0 side
    by side, log-normal latencies (sigma 0.5); 2.0's POST /pay is `slowdown` times slower and fails
    with probability `canary_errors`. Returns the trace ids of 2.0's requests."""
    rng = random.Random(5)
    canary_traces: set[str] = set()
    for version in ("1.0", "2.0"):
        provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": version}))
        exporter = OTLPSpanExporter(endpoint=vigil.otlp_grpc, insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=16_384, max_export_batch_size=2048))
        tracer = provider.get_tracer("shop")
        for operation, median_ms in (("POST /pay", 80.0), ("GET /cart", 20.0)):
            for _ in range(requests):
                ms = median_ms * math.exp(rng.gauss(0, 0.5))
                failed = rng.random() < 0.01
                if version == "2.0" and operation == "POST /pay":
                    ms *= slowdown
                    failed = failed or rng.random() < canary_errors
                begin = int((start + rng.uniform(0, WINDOW_S - 1)) * 1e9)
                span = tracer.start_span(operation, kind=SpanKind.SERVER, start_time=begin)
                if failed:
                    span.set_status(Status(StatusCode.ERROR))
                if version == "2.0":
                    canary_traces.add(format(span.get_span_context().trace_id, "032x"))
                span.end(end_time=begin + int(ms * 1e6))
        provider.shutdown()
    vigil.flush()
    return canary_traces


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def ask(vigil: RunningVigil, **body: Any) -> httpx.Response:
    return httpx.post(f"{vigil.api}/api/v1/canary/analyses", json=body, timeout=30)  # as `vigil canary gate`


def verdict_of(vigil: RunningVigil, service: str, start: float, **extra: Any) -> dict[str, Any]:
    created = ask(
        vigil, service=service, baseline_version="1.0", canary_version="2.0", start=iso(start), duration="10m", **extra
    )
    assert created.status_code == 201, created.text
    response = httpx.get(f"{vigil.api}/api/v1/canary/analyses/{created.json()['id']}", timeout=30)
    assert response.status_code == 200
    return dict(response.json())


def past_window() -> float:
    return float(int(time.time()) // 60 * 60 - WINDOW_S - 120)


def checks_by_name(analysis: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["name"]): c for c in analysis["checks"]}


def test_a_slower_canary_fails_on_the_slow_operation_with_exemplars(vigil_server: RunningVigil) -> None:
    service = f"pay-{uuid.uuid4().hex[:6]}"
    start = past_window()
    canary_traces = send_versions(vigil_server, service, start, requests=300, slowdown=1.6)
    analysis = verdict_of(vigil_server, service, start)

    assert (analysis["status"], analysis["verdict"]) == ("done", "FAIL")
    checks = checks_by_name(analysis)
    assert sorted(checks) == [
        ("error_rate", "GET /cart"),
        ("error_rate", "POST /pay"),
        ("error_rate", service),
        ("latency", "GET /cart"),
        ("latency", "POST /pay"),
        ("latency", service),
    ]
    pay = checks[("latency", "POST /pay")]
    assert pay["result"] == "fail"
    assert (pay["baseline"]["n"], pay["canary"]["n"]) == (300, 300)
    assert pay["canary"]["p50_ms"] > 1.3 * pay["baseline"]["p50_ms"]
    assert checks[("latency", "GET /cart")]["result"] == "pass"
    assert "latency of POST /pay" in analysis["reason"]
    assert 1 <= len(analysis["exemplar_trace_ids"]) <= 5
    assert set(analysis["exemplar_trace_ids"]) <= canary_traces
    assert analysis["start"] == start and analysis["end"] == start + WINDOW_S


def test_an_unchanged_canary_passes_and_the_same_request_is_the_same_analysis(vigil_server: RunningVigil) -> None:
    service = f"same-{uuid.uuid4().hex[:6]}"
    start = past_window()
    send_versions(vigil_server, service, start, requests=300)
    analysis = verdict_of(vigil_server, service, start)
    assert (analysis["status"], analysis["verdict"], analysis["score"]) == ("done", "PASS", 100.0)
    assert {c["result"] for c in analysis["checks"]} == {"pass"}
    again = verdict_of(vigil_server, service, start)
    assert again == analysis


def test_too_few_requests_is_inconclusive_with_the_counts(vigil_server: RunningVigil) -> None:
    service = f"quiet-{uuid.uuid4().hex[:6]}"
    start = past_window()
    send_versions(vigil_server, service, start, requests=20, slowdown=3.0)
    analysis = verdict_of(vigil_server, service, start)
    assert (analysis["status"], analysis["verdict"], analysis["score"]) == ("done", "INCONCLUSIVE", None)
    assert {c["result"] for c in analysis["checks"]} == {"inconclusive"}
    # 20 per operation, 40 for the service: below the minimum of 50 in every check.
    assert (
        "baseline 40, canary 40 (need at least 50 in each arm)"
        in checks_by_name(analysis)[("latency", service)]["reason"]
    )


def test_an_open_window_is_running_with_figures_so_far_and_judged_when_it_closes(vigil_server: RunningVigil) -> None:
    service = f"live-{uuid.uuid4().hex[:6]}"
    start = time.time() - WINDOW_S / 2
    send_versions(vigil_server, service, start - WINDOW_S / 2, requests=200)
    analysis = verdict_of(vigil_server, service, start)
    assert analysis["status"] == "running"
    assert checks_by_name(analysis)[("latency", service)]["baseline"]["n"] > 0

    settings = vigil_server.settings
    finalizer = CanaryFinalizer(
        open_client(settings.clickhouse_url), settings.clickhouse_database, grace=30.0, min_requests=50
    )
    assert finalizer.run(now=start + 10 * WINDOW_S) == 1
    assert finalizer.run(now=start + 10 * WINDOW_S) == 0
    stored = httpx.get(f"{vigil_server.api}/api/v1/canary/analyses/{analysis['id']}", timeout=30).json()
    assert stored["status"] == "done"
    listed = httpx.get(f"{vigil_server.api}/api/v1/canary/analyses", params={"service": service}).json()
    assert [(a["id"], a["status"]) for a in listed] == [(analysis["id"], "done")]


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"canary_version": "1.0"}, ["body"],
         "Value error, baseline_version and canary_version are the same; compare two versions"),
        ({"duration": "soon"}, ["body", "duration"], "Value error, expected a duration such as 10m or 1h"),
        ({"duration": "2d"}, ["body", "duration"], "Value error, must be between 1m and 24h"),
        ({"checks": ["latency", "vibes"]}, ["body", "checks", 1], "Input should be 'latency' or 'error_rate'"),
        ({"metrics": [{"name": "cpu"}, {"name": "cpu"}]}, ["body"],
         "Value error, a metric is listed twice with the same bad_direction"),
    ],
)  # fmt: skip
def test_bad_analysis_requests_get_a_422_naming_the_field(
    vigil_server: RunningVigil, body: dict[str, Any], loc: list[Any], msg: str
) -> None:
    response = ask(vigil_server, **({"service": "s", "baseline_version": "1.0", "canary_version": "2.0"} | body))
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (loc, msg)


def test_an_unknown_analysis_is_a_404(vigil_server: RunningVigil) -> None:
    response = httpx.get(f"{vigil_server.api}/api/v1/canary/analyses/c-0")
    assert (response.status_code, response.json()) == (404, {"detail": "no canary analysis with id 'c-0'"})


def gate(vigil_url: str, service: str, start: float, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIGIL, "canary", "gate", "--url", vigil_url, "--service", service, "--baseline", "1.0", "--canary", "2.0",
         "--duration", "10m", "--start", iso(start), *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_gate_exits_by_verdict_and_prints_a_summary(vigil_server: RunningVigil) -> None:
    start = past_window()
    slow, same, quiet = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("gslow", "gsame", "gquiet"))
    send_versions(vigil_server, slow, start, requests=300, slowdown=1.6)
    send_versions(vigil_server, same, start, requests=300)
    send_versions(vigil_server, quiet, start, requests=10)

    failed = gate(vigil_server.api, slow, start, "--wait")
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith(
        f"canary {slow} 2.0 vs 1.0, 10 min from {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M:%S} UTC: FAIL"
    )
    assert "latency POST /pay" in failed.stdout

    passed = gate(vigil_server.api, same, start, "--json")
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["verdict"] == "PASS"

    assert gate(vigil_server.api, quiet, start).returncode == 2
    assert gate(vigil_server.api, quiet, start, "--inconclusive-exit", "0").returncode == 0

    unreachable = gate("http://127.0.0.1:9", same, start)
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("vigil: cannot reach Vigil at http://127.0.0.1:9: ")


def test_the_gate_without_wait_on_an_open_window_is_inconclusive(vigil_server: RunningVigil) -> None:
    service = f"gopen-{uuid.uuid4().hex[:6]}"
    result = gate(vigil_server.api, service, time.time())
    assert result.returncode == 2
    assert "so far (window still open)" in result.stdout
    assert result.stderr == "vigil: the window has not been judged yet; use --wait to wait for the verdict\n"


def test_a_gauge_check_compares_the_versions_in_the_bad_direction(vigil_server: RunningVigil) -> None:
    service = f"cpu-{uuid.uuid4().hex[:6]}"
    start = past_window()
    send_versions(vigil_server, service, start, requests=300)
    rng = random.Random(3)
    points = [
        {
            "service": service,
            "ServiceVersion": version,
            "name": "process.cpu.utilization",
            "attributes": {"instance": f"{version}-{i}"},
            "time": start + 30 * k + i,
            "Value": rng.gauss(mean, 0.03),
        }
        for version, mean in (("1.0", 0.30), ("2.0", 0.55))
        for i in range(5)
        for k in range(20)
    ]
    writer = StoreWriter(open_client(vigil_server.settings.clickhouse_url), vigil_server.settings.clickhouse_database)
    writer.insert("metrics_gauge", metric_rows("metrics_gauge", points))

    metrics = [{"name": "process.cpu.utilization"}, {"name": "process.cpu.utilization", "bad_direction": "decrease"}]
    analysis = verdict_of(vigil_server, service, start, metrics=metrics)
    cpu = [c for c in analysis["checks"] if c["kind"] == "metric"]
    assert [(c["name"], c["result"], c["baseline"]["n"], c["canary"]["n"]) for c in cpu] == [
        ("process.cpu.utilization", "fail", 100, 100),
        ("process.cpu.utilization (decrease)", "pass", 100, 100),
    ]
    assert 0.6 < cpu[0]["effect"] < 1.0  # the canary's median CPU is 60-100% higher
    assert analysis["verdict"] == "FAIL"
    # The same window with other checks is another analysis.
    assert verdict_of(vigil_server, service, start)["verdict"] == "PASS"
