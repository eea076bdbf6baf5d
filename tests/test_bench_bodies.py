"""The benchmarks' pre-encoded OTLP requests: each send distinct and, when asked, stamped with the time of sending."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.bench.ingest_otlp import DistinctBodies, build_logs_request, build_request
from tests.bench.soak import build_metrics_request

HOUR_NS = 3_600_000_000_000


def _spans(body: bytes) -> list[Any]:
    request = ExportTraceServiceRequest.FromString(body)
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _records(body: bytes) -> list[Any]:
    request = ExportLogsServiceRequest.FromString(body)
    return [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]


def _points(body: bytes) -> list[Any]:
    request = ExportMetricsServiceRequest.FromString(body)
    return [
        p for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics for p in m.gauge.data_points
    ]


def _stamps(signal_name: str, body: bytes) -> list[int]:
    if signal_name == "traces":
        return [t for s in _spans(body) for t in (s.start_time_unix_nano, s.end_time_unix_nano)]
    if signal_name == "logs":
        return [t for r in _records(body) for t in (r.time_unix_nano, r.observed_time_unix_nano)]
    return [p.time_unix_nano for p in _points(body)]


def _bodies(signal_name: str, *, restamp: bool) -> DistinctBodies:
    if signal_name == "traces":
        return DistinctBodies.by_trace_ids([build_request(random.Random(1), 20)], "traces", restamp=restamp)
    if signal_name == "logs":
        return DistinctBodies.by_trace_ids([build_logs_request(random.Random(1), 20)], "logs", restamp=restamp)
    marker = b"0123456789abcdef"
    return DistinctBodies(
        [build_metrics_request(random.Random(1), marker, 100)], [[marker]], "metrics", restamp=restamp
    )


@pytest.mark.parametrize("signal_name", ["traces", "logs", "metrics"])
def test_a_restamped_send_moves_every_timestamp_on_by_the_time_passed_since_building(signal_name: str) -> None:
    bodies = _bodies(signal_name, restamp=True)
    built = _stamps(signal_name, bodies.bodies[0])
    bodies._built_ns -= HOUR_NS  # as if built an hour ago

    sent = _stamps(signal_name, bodies.next())

    shifts = {after - before for before, after in zip(built, sent, strict=True)}
    assert len(built) == {"traces": 40, "logs": 40, "metrics": 100}[signal_name]
    assert len(shifts) == 1  # spacing between the items kept
    assert HOUR_NS <= shifts.pop() < HOUR_NS + 60_000_000_000


@pytest.mark.parametrize("signal_name", ["traces", "logs"])
def test_every_send_carries_new_trace_ids_and_the_rest_of_the_items_unchanged(signal_name: str) -> None:
    bodies = _bodies(signal_name, restamp=True)
    items = _spans if signal_name == "traces" else _records

    first, second = items(bodies.next()), items(bodies.next())

    assert {i.trace_id for i in first}.isdisjoint(i.trace_id for i in second)
    assert len({i.trace_id for i in first}) == 20
    original = items(bodies.bodies[0])
    assert [i.span_id for i in first] == [i.span_id for i in original]
    assert [list(i.attributes) for i in second] == [list(i.attributes) for i in original]


def test_without_restamp_a_send_keeps_the_built_timestamps() -> None:
    bodies = _bodies("logs", restamp=False)
    bodies._built_ns -= HOUR_NS

    assert _stamps("logs", bodies.next()) == _stamps("logs", bodies.bodies[0])
