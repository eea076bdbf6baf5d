"""Deploy events: reported by a pipeline (API and `vigil deploy mark`) or detected from a new version."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.conftest import RunningVigil
from vigil.store.client import open_client
from vigil.store.deploys import DeployStore, deploy_id, detected_deploy_id

VIGIL = [sys.executable, "-m", "vigil.cli"]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def post(vigil: RunningVigil, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{vigil.api}/api/v1/deploys", json=body)


def deploys(vigil: RunningVigil, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{vigil.api}/api/v1/deploys", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_a_reported_deploy_is_listed_and_a_retried_report_is_the_same_deploy(vigil_server: RunningVigil) -> None:
    service = unique("orders")
    body = {
        "service": service,
        "version": "2.3.0",
        "environment": "staging",
        "kind": "canary",
        "commit": "9fceb02",
        "started_at": "2026-11-20T10:15:00Z",
        "url": "https://ci.example.com/run/77",
        "description": "faster checkout",
    }
    first = post(vigil_server, body)
    again = post(vigil_server, body)
    assert (first.status_code, again.status_code) == (201, 201)
    started = 1795169700.0  # 2026-11-20T10:15:00Z
    assert first.json() == again.json() == {"id": deploy_id(service, "2.3.0", "staging", started)}

    finished = post(vigil_server, body | {"finished_at": "2026-11-20T10:25:00+00:00"})
    assert finished.json() == first.json()
    listed = deploys(vigil_server, service=service, since="90d")
    assert listed == [
        {
            "id": first.json()["id"],
            "service": service,
            "version": "2.3.0",
            "environment": "staging",
            "kind": "canary",
            "commit": "9fceb02",
            "started_at": started,
            "finished_at": started + 600,
            "url": "https://ci.example.com/run/77",
            "description": "faster checkout",
            "detected": False,
        }
    ]
    one = httpx.get(f"{vigil_server.api}/api/v1/deploys/{first.json()['id']}")
    assert one.json() == listed[0]


def test_a_report_without_a_start_starts_now_and_times_without_a_zone_are_utc(vigil_server: RunningVigil) -> None:
    service = unique("cart")
    before = time.time()
    created = post(vigil_server, {"service": service, "version": "1"}).json()
    [deploy] = deploys(vigil_server, service=service)
    assert deploy["id"] == created["id"]
    assert (deploy["kind"], deploy["environment"]) == ("full", "production")
    assert before - 1 <= deploy["started_at"] <= time.time()

    post(vigil_server, {"service": service, "version": "2", "started_at": "2026-11-20T10:15:00"})
    assert [d["started_at"] for d in deploys(vigil_server, service=service, since="90d")][-1] == 1795169700.0


def test_bad_reports_get_a_422_naming_the_field(vigil_server: RunningVigil) -> None:
    cases = [
        ({"version": "1"}, ["body", "service"], "Field required"),
        ({"service": "  ", "version": "1"}, ["body", "service"], "Value error, must not be blank"),
        ({"service": "a", "version": "1", "kind": "blue"}, ["body", "kind"], "Input should be 'canary', 'rolling' or 'full'"),  # noqa: E501
        (
            {"service": "a", "version": "1", "started_at": "2026-11-20T10:15Z", "finished_at": "2026-11-20T10:00Z"},
            ["body"],
            "Value error, finished_at is before started_at",
        ),
        ({"service": "a", "version": "1", "started_at": "yesterday"}, ["body", "started_at"], None),
    ]  # fmt: skip
    for body, loc, msg in cases:
        response = post(vigil_server, body)
        assert response.status_code == 422, body
        (error,) = response.json()["detail"]
        assert error["loc"] == loc, body
        if msg is not None:
            assert error["msg"] == msg


def test_an_unknown_deploy_is_a_404(vigil_server: RunningVigil) -> None:
    response = httpx.get(f"{vigil_server.api}/api/v1/deploys/d-0000")
    assert (response.status_code, response.json()) == (404, {"detail": "no deploy with id 'd-0000'"})


def send_versions(vigil: RunningVigil, service: str, versions: list[tuple[str, float]]) -> None:
    """Ten requests of each version, starting at the given unix time."""
    for version, at in versions:
        provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": version}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=vigil.otlp_grpc, insecure=True)))
        tracer = provider.get_tracer("t")
        for i in range(10):
            begin = int((at + i) * 1e9)
            tracer.start_span("GET /", kind=SpanKind.SERVER, start_time=begin).end(end_time=begin + 5_000_000)
        provider.shutdown()
    vigil.flush()


def test_a_new_version_serving_is_a_detected_deploy_unless_a_pipeline_reported_it(vigil_server: RunningVigil) -> None:
    service = unique("search")
    minute = int(time.time()) // 60 * 60
    send_versions(vigil_server, service, [("1.0", minute - 3600), ("1.1", minute - 1800), ("1.2", minute - 600)])
    reported = post(
        vigil_server, {"service": service, "version": "1.2", "kind": "rolling", "started_at": minute - 660}
    ).json()

    listed = [
        (d["id"], d["version"], d["kind"], d["detected"], d["started_at"])
        for d in deploys(vigil_server, service=service)
    ]
    # 1.0 was the service's first version: its start, not a deploy. 1.2 was reported: no detected twin.
    assert listed == [
        (reported["id"], "1.2", "rolling", False, minute - 660.0),
        (detected_deploy_id(service, "1.1"), "1.1", "unknown", True, minute - 1800.0),
    ]
    detected = httpx.get(f"{vigil_server.api}/api/v1/deploys/{detected_deploy_id(service, '1.1')}").json()
    assert detected["description"] == "version 1.1 first served requests"

    store = DeployStore(open_client(vigil_server.settings.clickhouse_url), vigil_server.settings.clickhouse_database)
    nearest = store.nearest_before(service, minute - 700, lookback=86400)
    assert nearest is not None and nearest.version == "1.1"
    nearest = store.nearest_before(service, minute, lookback=86400)
    assert nearest is not None and nearest.id == reported["id"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIGIL, "deploy", "mark", *args], capture_output=True, text=True, timeout=60)


def test_deploy_mark_reports_a_deploy_and_exits_by_outcome(vigil_server: RunningVigil) -> None:
    service = unique("billing")
    done = cli(
        "--url", vigil_server.api, "--service", service, "--version", "7.1", "--kind", "canary", "--commit", "abc"
    )
    assert done.returncode == 0, done.stderr
    [deploy] = deploys(vigil_server, service=service)
    assert done.stdout == f"deploy {deploy['id']}: {service} 7.1 (canary, production)\n"
    assert (deploy["commit"], deploy["kind"]) == ("abc", "canary")

    refused = cli("--url", vigil_server.api, "--service", service, "--version", "7.2", "--kind", "blue-green")
    assert refused.returncode == 1
    assert refused.stderr == "vigil: the deploy was not recorded: kind: Input should be 'canary', 'rolling' or 'full'\n"

    unreachable = cli("--url", "http://127.0.0.1:9", "--service", service, "--version", "7.3")
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("vigil: cannot reach Vigil at http://127.0.0.1:9: ")
