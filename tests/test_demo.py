"""The demo traffic generator, exercised through the real OpenTelemetry SDK and an in-memory exporter."""

from __future__ import annotations

import ast
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import vigil.demo as demo_module
from vigil.demo import DemoTraffic, otlp_grpc_exporter_factory

SEED = 7
N = 2000
SERVICES = {"frontend", "checkout", "payments", "inventory", "recommendations"}
PROVIDERS = 6  # frontend runs in two regions, every other service in one
CHARGE_CHAIN = {"POST /charge", "POST /checkout", "POST /cart/checkout"}
ROUTES = {"GET /", "GET /product/{id}", "POST /cart/checkout"}
MS = 1_000_000


class CountingExporter(InMemorySpanExporter):
    def __init__(self) -> None:
        super().__init__()
        self.shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1
        super().shutdown()


def make_demo(**kwargs: object) -> tuple[DemoTraffic, InMemorySpanExporter]:
    """A demo whose providers all share one exporter; shutdown() flushes every provider before stopping it."""
    exporter = InMemorySpanExporter()
    kwargs.setdefault("batch", False)
    return DemoTraffic(lambda: exporter, **kwargs), exporter  # type: ignore[arg-type]


def simulate(n: int, seed: int = SEED, batch: bool = False) -> tuple[ReadableSpan, ...]:
    demo, exporter = make_demo(seed=seed, batch=batch)
    demo.run_requests(n)
    demo.shutdown()
    return exporter.get_finished_spans()


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def by_trace(spans: tuple[ReadableSpan, ...]) -> dict[int, list[ReadableSpan]]:
    traces: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        assert span.context is not None
        traces[span.context.trace_id].append(span)
    return traces


def by_span_id(spans: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans if span.context is not None}


def times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None and span.end_time is not None
    return span.start_time, span.end_time


def is_error(span: ReadableSpan) -> bool:
    return span.status.status_code is StatusCode.ERROR


def roots(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [span for span in spans if span.parent is None]


@pytest.fixture(scope="module")
def spans() -> tuple[ReadableSpan, ...]:
    return simulate(N)


@pytest.fixture
def demo_threads() -> Iterator[Callable[[], list[threading.Thread]]]:
    def alive() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "vigil-demo-traffic"]

    yield alive
    assert alive() == [], "a demo thread outlived its test"


# -- what the traffic looks like -------------------------------------------------------------------------


def test_a_seeded_run_touches_exactly_the_five_shop_services(spans: tuple[ReadableSpan, ...]) -> None:
    assert {service(span) for span in spans} == SERVICES


def test_every_request_becomes_exactly_one_trace(spans: tuple[ReadableSpan, ...]) -> None:
    assert len(by_trace(spans)) == N
    assert len(by_trace(simulate(37))) == 37


def test_every_trace_has_exactly_one_root_and_it_is_a_frontend_server_span(
    spans: tuple[ReadableSpan, ...],
) -> None:
    for trace_spans in by_trace(spans).values():
        (root,) = [span for span in trace_spans if span.parent is None]
        assert service(root) == "frontend"
        assert root.kind is SpanKind.SERVER
        assert root.name in ROUTES


def test_every_non_root_span_has_its_parent_in_the_same_trace(spans: tuple[ReadableSpan, ...]) -> None:
    for trace_spans in by_trace(spans).values():
        ids = {span.context.span_id for span in trace_spans if span.context is not None}
        for span in trace_spans:
            if span.parent is not None:
                assert span.parent.span_id in ids
                assert span.parent.trace_id == span.context.trace_id  # type: ignore[union-attr]


def test_every_hop_parents_the_callee_server_span_on_the_caller_client_span_within_its_bounds(
    spans: tuple[ReadableSpan, ...],
) -> None:
    index = by_span_id(spans)
    hops = 0
    for span in spans:
        if span.kind is not SpanKind.SERVER or span.parent is None:
            continue
        client = index[span.parent.span_id]
        assert client.kind is SpanKind.CLIENT
        assert client.name == span.name
        assert service(client) != service(span)
        assert times(client)[0] < times(span)[0] and times(span)[1] < times(client)[1]
        hops += 1
    # Every request makes at least one hop, and a checkout makes three.
    assert hops >= N


def test_every_call_to_a_shop_service_reaches_exactly_one_server_span(
    spans: tuple[ReadableSpan, ...],
) -> None:
    children: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        if span.parent is not None:
            children[span.parent.span_id].append(span)
    for span in spans:
        peer = str((span.attributes or {}).get("net.peer.name", ""))
        if span.kind is SpanKind.CLIENT and peer.split(".")[0] in SERVICES:
            assert [child.kind for child in children[span.context.span_id]] == [SpanKind.SERVER]  # type: ignore[union-attr]


def test_children_start_and_end_within_their_parents(spans: tuple[ReadableSpan, ...]) -> None:
    index = by_span_id(spans)
    for span in spans:
        start, end = times(span)
        assert start < end
        if span.parent is not None:
            parent_start, parent_end = times(index[span.parent.span_id])
            assert parent_start <= start and end <= parent_end


def test_span_events_fall_within_their_span(spans: tuple[ReadableSpan, ...]) -> None:
    for span in spans:
        start, end = times(span)
        for event in span.events:
            assert start <= event.timestamp <= end


def test_requests_start_now() -> None:
    demo, exporter = make_demo(seed=SEED)
    before = time.time_ns()
    demo.run_requests(5)
    after = time.time_ns()
    demo.shutdown()
    for root in roots(exporter.get_finished_spans()):
        assert before <= times(root)[0] <= after


def test_requests_ignore_a_span_that_is_current_in_the_calling_thread() -> None:
    demo, exporter = make_demo(seed=SEED)
    outer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    with outer.start_as_current_span("unrelated"):
        demo.run_requests(5)
    demo.shutdown()
    assert len(roots(exporter.get_finished_spans())) == 5


def test_the_same_seed_produces_the_same_traffic_shape() -> None:
    def shape(spans: tuple[ReadableSpan, ...]) -> list[tuple[str, str, SpanKind, int, StatusCode]]:
        return [(service(s), s.name, s.kind, times(s)[1] - times(s)[0], s.status.status_code) for s in spans]

    assert shape(simulate(50, seed=3)) == shape(simulate(50, seed=3))
    assert shape(simulate(50, seed=3)) != shape(simulate(50, seed=4))


# -- errors ----------------------------------------------------------------------------------------------


def test_error_spans_have_error_status_and_an_exception_event(spans: tuple[ReadableSpan, ...]) -> None:
    errors = [span for span in spans if span.status.status_code is StatusCode.ERROR]
    assert errors, "the seeded run should include failures"
    for span in errors:
        assert span.status.description
        (exception,) = [event for event in span.events if event.name == "exception"]
        assert exception.attributes is not None
        assert exception.attributes["exception.type"]
        assert exception.attributes["exception.message"]
    assert all(
        span.status.status_code is StatusCode.ERROR
        for span in spans
        if any(event.name == "exception" for event in span.events)
    )


def test_a_card_processor_failure_returns_502_all_the_way_to_the_frontend(
    spans: tuple[ReadableSpan, ...],
) -> None:
    traces = by_trace(spans)
    failed = [span for span in spans if span.name == "POST /v1/charges" and is_error(span)]
    assert failed
    for processor in failed:
        assert processor.attributes is not None
        assert processor.attributes["http.response.status_code"] == 503
        trace_spans = traces[processor.context.trace_id]  # type: ignore[union-attr]
        chain = [s for s in trace_spans if s.name in CHARGE_CHAIN]
        assert len(chain) == 5  # charge client+server, checkout client+server, the root
        for span in chain:
            assert span.status.status_code is StatusCode.ERROR
            assert span.attributes is not None
            assert span.attributes["http.response.status_code"] == 502


def test_an_inventory_timeout_is_a_deadline_exceeded_at_250_ms_and_a_504_at_the_front_door(
    spans: tuple[ReadableSpan, ...],
) -> None:
    traces = by_trace(spans)
    timeouts = [s for s in spans if service(s) == "inventory" and s.kind is SpanKind.SERVER and is_error(s)]
    assert timeouts
    for server in timeouts:
        assert server.attributes is not None
        assert server.attributes["rpc.grpc.status_code"] == 4
        assert times(server)[1] - times(server)[0] == 250 * MS
        (root,) = roots(tuple(traces[server.context.trace_id]))  # type: ignore[union-attr]
        assert root.attributes is not None
        assert root.attributes["http.response.status_code"] == 504
        assert root.status.status_code is StatusCode.ERROR


def test_front_door_requests_answer_200_unless_they_fail_with_a_502_or_504(
    spans: tuple[ReadableSpan, ...],
) -> None:
    statuses = [(root.attributes or {})["http.response.status_code"] for root in roots(spans)]
    assert set(statuses) == {200, 502, 504}
    for root, status in zip(roots(spans), statuses, strict=True):
        assert is_error(root) == (status != 200)
    assert statuses.count(200) > 0.95 * N


# -- attributes, resources, links ------------------------------------------------------------------------


def test_database_calls_are_postgres_client_spans_with_a_statement(spans: tuple[ReadableSpan, ...]) -> None:
    queries = [span for span in spans if span.attributes and "db.system" in span.attributes]
    assert queries
    parents = {span.parent.span_id for span in spans if span.parent is not None}
    for query in queries:
        assert query.kind is SpanKind.CLIENT
        assert query.attributes is not None
        assert query.attributes["db.system"] == "postgresql"
        assert str(query.attributes["db.statement"]).startswith(str(query.attributes["db.operation"]))
        assert query.attributes["net.peer.name"] == "postgres.demo.internal"
        assert query.context is not None and query.context.span_id not in parents


def test_every_service_resource_names_its_version_environment_host_and_region(
    spans: tuple[ReadableSpan, ...],
) -> None:
    for span in spans:
        resource = span.resource.attributes
        assert resource["deployment.environment"] == "demo"
        assert str(resource["service.version"]).count(".") == 2
        assert str(resource["host.name"]).startswith(service(span))
        assert resource["cloud.region"]
    assert len({span.resource.attributes["cloud.region"] for span in spans}) == 3
    frontend_hosts = {span.resource.attributes["host.name"] for span in spans if service(span) == "frontend"}
    assert len(frontend_hosts) == 2


def test_front_door_spans_carry_http_semantics_and_a_customer_tier(spans: tuple[ReadableSpan, ...]) -> None:
    for root in roots(spans):
        assert root.attributes is not None
        assert f"{root.attributes['http.request.method']} {root.attributes['http.route']}" == root.name
        assert str(root.attributes["url.path"]).startswith("/")
        assert root.attributes["server.address"] == "shop.demo.example"
    assert {root.name for root in roots(spans)} == ROUTES
    assert {(root.attributes or {})["customer.tier"] for root in roots(spans)} == {
        "free",
        "pro",
        "enterprise",
    }


def test_grpc_hops_say_so_and_http_hops_carry_a_status_code(spans: tuple[ReadableSpan, ...]) -> None:
    hops = [span for span in spans if span.kind is SpanKind.SERVER and span.parent is not None]
    for span in hops:
        assert span.attributes is not None
        if "/" in span.name and " " not in span.name:
            assert span.attributes["rpc.system"] == "grpc"
            assert "rpc.grpc.status_code" in span.attributes
        else:
            assert "http.response.status_code" in span.attributes


def test_checkout_links_to_the_cart_build_span_of_its_trace(spans: tuple[ReadableSpan, ...]) -> None:
    index = by_span_id(spans)
    checkouts = [s for s in spans if service(s) == "checkout" and s.kind is SpanKind.SERVER]
    assert checkouts
    for checkout in checkouts:
        (link,) = checkout.links
        cart = index[link.context.span_id]
        assert cart.name == "cart.build"
        assert cart.context is not None and checkout.context is not None
        assert cart.context.trace_id == checkout.context.trace_id
        assert [event.name for event in cart.events] == ["cart.item_added"] * len(cart.events)
        assert len(cart.events) == (cart.attributes or {})["cart.items"]


def test_latencies_are_realistic_for_each_operation(spans: tuple[ReadableSpan, ...]) -> None:
    def median_ms(predicate: Callable[[ReadableSpan], bool]) -> float:
        return statistics.median((times(s)[1] - times(s)[0]) / MS for s in spans if predicate(s))

    assert 20 < median_ms(lambda s: s.name == "GET /" and s.parent is None) < 45
    assert 80 < median_ms(lambda s: s.name == "POST /checkout" and s.kind is SpanKind.SERVER) < 160
    assert 55 < median_ms(lambda s: s.name == "POST /charge" and s.kind is SpanKind.SERVER) < 110
    assert 1 < median_ms(lambda s: bool(s.attributes and "db.system" in s.attributes)) < 15
    # A slow tail exists: some front-door requests take several times the median.
    home = sorted((times(s)[1] - times(s)[0]) / MS for s in spans if s.name == "GET /" and s.parent is None)
    assert home[-1] > 3 * statistics.median(home)


# -- lifecycle -------------------------------------------------------------------------------------------


def test_each_provider_gets_its_own_exporter_and_shutdown_closes_each_once() -> None:
    exporters: list[CountingExporter] = []

    def factory() -> CountingExporter:
        exporters.append(CountingExporter())
        return exporters[-1]

    demo = DemoTraffic(factory, seed=SEED)
    demo.run_requests(20)
    demo.shutdown()
    demo.shutdown()
    assert len(exporters) == PROVIDERS
    assert [e.shutdowns for e in exporters] == [1] * PROVIDERS
    gathered = {service(s) for e in exporters for s in e.get_finished_spans()}
    assert gathered == SERVICES


def test_shutdown_flushes_batched_spans_from_every_provider_into_a_shared_exporter() -> None:
    assert len(simulate(40, batch=True)) == len(simulate(40, batch=False))


class StuckExporter(InMemorySpanExporter):
    """Like an OTLP exporter retrying an unreachable receiver: export blocks until shutdown()."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.released.wait(30.0)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.released.set()
        super().shutdown()


def test_shutdown_gives_up_on_an_exporter_that_hangs_after_the_flush_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_module, "_FLUSH_BUDGET_S", 0.2)
    exporters: list[StuckExporter] = []

    def factory() -> StuckExporter:
        exporters.append(StuckExporter())
        return exporters[-1]

    demo = DemoTraffic(factory, seed=SEED, batch=True)
    demo.run_requests(5)
    began = time.monotonic()
    demo.shutdown()
    assert time.monotonic() - began < 2.0
    assert all(e.released.is_set() for e in exporters)


def test_shutdown_is_safe_before_start_and_idempotent(
    demo_threads: Callable[[], list[threading.Thread]],
) -> None:
    demo, exporter = make_demo(seed=SEED)
    demo.shutdown()
    demo.shutdown()
    assert exporter.get_finished_spans() == ()
    assert demo_threads() == []


def test_a_shut_down_demo_refuses_to_start_or_run_requests() -> None:
    demo, _ = make_demo(seed=SEED)
    demo.shutdown()
    with pytest.raises(RuntimeError):
        demo.start()
    with pytest.raises(RuntimeError):
        demo.run_requests(1)


def test_run_requests_of_zero_emits_nothing_and_negative_is_rejected() -> None:
    demo, exporter = make_demo(seed=SEED)
    demo.run_requests(0)
    with pytest.raises(ValueError):
        demo.run_requests(-1)
    demo.shutdown()
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("rate", [0.0, -5.0, float("nan")])
def test_a_non_positive_rate_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError):
        DemoTraffic(InMemorySpanExporter, requests_per_second=rate)


def test_start_at_a_high_rate_emits_spans_and_shutdown_stops_promptly(
    demo_threads: Callable[[], list[threading.Thread]],
) -> None:
    demo, exporter = make_demo(seed=SEED, requests_per_second=2000.0)
    demo.start()
    demo.start()  # a second start is a no-op, not a second thread
    assert len(demo_threads()) == 1
    deadline = time.monotonic() + 5.0
    while len(roots(exporter.get_finished_spans())) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    demo.shutdown()
    assert time.monotonic() - began < 1.0
    assert demo_threads() == []
    emitted = exporter.get_finished_spans()
    assert len(roots(emitted)) >= 50
    assert {service(s) for s in emitted} == SERVICES
    time.sleep(0.05)
    assert len(exporter.get_finished_spans()) == len(emitted)


def test_the_loop_sleeps_through_the_injected_clock_in_short_slices(
    demo_threads: Callable[[], list[threading.Thread]],
) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    demo, exporter = make_demo(seed=SEED, requests_per_second=5.0, clock_sleep=sleep)
    demo.start()
    deadline = time.monotonic() + 5.0
    while len(slept) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    demo.shutdown()
    assert len(slept) >= 3
    assert all(0 < s <= 0.05 for s in slept)
    assert roots(exporter.get_finished_spans())


def test_the_otlp_factory_builds_a_fresh_grpc_exporter_per_call() -> None:
    factory = otlp_grpc_exporter_factory("localhost:4317")
    first, second = factory(), factory()
    try:
        assert isinstance(first, OTLPSpanExporter) and isinstance(second, OTLPSpanExporter)
        assert first is not second
    finally:
        first.shutdown()
        second.shutdown()


def test_the_demo_imports_only_the_standard_library_and_opentelemetry() -> None:
    source = Path(__file__).resolve().parents[1] / "vigil" / "demo.py"
    tree = ast.parse(source.read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    for module in modules:
        top = module.split(".")[0]
        assert top == "opentelemetry" or top == "__future__" or top in sys.stdlib_module_names, module


def test_a_roll_out_serves_later_requests_from_the_new_version_more_slowly() -> None:
    demo, exporter = make_demo(seed=SEED)
    demo.run_requests(200)
    demo.roll_out("checkout", "1.5.0", slowdown=2.0)
    demo.run_requests(200)
    demo.shutdown()
    checkout_servers = [
        s for s in exporter.get_finished_spans() if service(s) == "checkout" and s.kind == SpanKind.SERVER
    ]
    by_version: dict[str, list[int]] = {}
    for span in checkout_servers:
        assert span.end_time is not None and span.start_time is not None
        by_version.setdefault(str(span.resource.attributes["service.version"]), []).append(
            span.end_time - span.start_time
        )
    assert sorted(by_version) == ["1.4.2", "1.5.0"]
    assert len(by_version["1.4.2"]) + len(by_version["1.5.0"]) == len(checkout_servers)
    old_median = statistics.median(by_version["1.4.2"])
    new_median = statistics.median(by_version["1.5.0"])
    assert 1.6 < new_median / old_median < 2.4
    # Instances of the new release are named after it: a deploy is visible per instance too.
    new_instances = {
        s.resource.attributes["service.instance.id"]
        for s in checkout_servers
        if s.resource.attributes["service.version"] == "1.5.0"
    }
    assert new_instances == {"checkout-1.5.0-0.eu-west-1.demo.internal"}


def test_a_roll_out_of_an_unknown_service_or_a_bad_slowdown_is_refused() -> None:
    demo, _ = make_demo(seed=SEED)
    with pytest.raises(ValueError, match="'billing' is not a demo service; choose one of frontend, checkout"):
        demo.roll_out("billing", "1.0.0")
    with pytest.raises(ValueError, match="slowdown must be positive, got 0"):
        demo.roll_out("checkout", "1.5.0", slowdown=0)
    demo.shutdown()
