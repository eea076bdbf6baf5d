"""End to end: an injected latency regression, sent by the OpenTelemetry SDK, is one Slack message
naming the service and operation, updated as its cascade grows, then resolved in place."""

from __future__ import annotations

import math
import random
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from tests.conftest import RunningVigil
from tests.slack_server import SlackServer
from vigil.alerts.engine import AlertEngine
from vigil.alerts.slack import SlackSender
from vigil.detectors.runner import DetectorRunner
from vigil.detectors.service_regressions import ServiceRegressions
from vigil.store.client import open_client
from vigil.store.findings import FindingStore

MINUTES = 200
SLOW_FROM, SLOW_UNTIL = 150, 170  # POST /pay takes five times as long for twenty minutes


def send_traffic(endpoint: str, start: float) -> None:
    rng = random.Random(11)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout", "service.version": "1.0"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=16_384, max_export_batch_size=2048))
    tracer = provider.get_tracer("shop")
    for m in range(MINUTES):
        for operation, count, median_ms in (("POST /pay", 40, 50.0), ("GET /cart", 20, 20.0)):
            for _ in range(count):
                ms = median_ms * math.exp(rng.gauss(0, 0.3))
                if operation == "POST /pay" and SLOW_FROM <= m < SLOW_UNTIL:
                    ms *= 5
                begin = int((start + 60 * m + rng.uniform(0, 59)) * 1e9)
                span = tracer.start_span(operation, kind=SpanKind.SERVER, start_time=begin)
                span.end(end_time=begin + int(ms * 1e6))
    provider.shutdown()


def test_a_regression_is_one_slack_message_then_its_resolution(quiet_vigil: RunningVigil) -> None:
    start = float(int(time.time()) // 60 * 60 - 60 * (MINUTES + 5))
    send_traffic(quiet_vigil.otlp_grpc, start)
    quiet_vigil.flush()
    client = open_client(quiet_vigil.settings.clickhouse_url)
    database = quiet_vigil.settings.clickhouse_database
    now = start + 60 * (SLOW_FROM - 10)
    runner = DetectorRunner(
        ServiceRegressions(client, database), FindingStore(client, database), grace=0.0, clock=lambda: now
    )
    runner.reset(start)
    with SlackServer(token="xoxb-test") as slack:
        engine = AlertEngine(client, database, default_channel="#oncall", public_url="https://vigil.example.com")
        sender = SlackSender(engine.store, token="xoxb-test", base_url=slack.api_url, sleep=lambda s: None)
        # Minute by minute, as `vigil serve` would: detectors, then alerts, then delivery.
        for minute in range(SLOW_FROM - 10, MINUTES + 1):
            now = start + 60 * minute
            runner.run()
            engine.evaluate(now)
            sender.deliver()

        posts = [r for r in slack.calls("chat.postMessage") if "thread_ts" not in r.body]
        assert len(posts) == 1
        post = posts[0]
        assert post.body["channel"] == "#oncall"
        # The service and its operation regressed together: one message for the cascade.
        assert post.body["text"] == (
            "🔴 checkout: 4 alerts: latency p50 regression; latency p95 regression; "
            "latency p50 regression on POST /pay; latency p95 regression on POST /pay"
        )
        assert [r.method for r in slack.requests] == ["chat.postMessage", "chat.update", "chat.postMessage"]
        assert "GET /cart" not in str(post.body["blocks"]) and "GET /cart" not in str(slack.requests)
        ts = post.response["ts"]
        final = slack.message("#oncall", ts)
        assert final["blocks"][0]["text"]["text"] == "✅ checkout: 4 alerts resolved"
        (reply,) = slack.replies("#oncall", ts)
        assert reply["text"].startswith("Resolved")
    alerts = engine.store.alerts()
    assert alerts and {a.state for a in alerts} == {"resolved"}
    assert {a.service for a in alerts} == {"checkout"}
