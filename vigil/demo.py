"""Synthetic traffic for ``vigil demo``: a small shop that sends real OTLP traces to Vigil.

Five services (frontend, checkout, payments, inventory, recommendations) and a postgres database are
simulated with the OpenTelemetry SDK. Every service owns its TracerProviders, so each shows up in
Vigil as its own service, and every request is one trace across them. Durations are log-normal and
written as explicit span timestamps instead of slept, so a request costs microseconds to generate.

This module is a client of Vigil: it imports only the standard library and OpenTelemetry.

Usage::

    from vigil.demo import DemoTraffic, otlp_grpc_exporter_factory

    demo = DemoTraffic(otlp_grpc_exporter_factory("localhost:4317"), requests_per_second=20, seed=1)
    demo.start()  # a background daemon thread issues Poisson-distributed requests
    ...
    demo.shutdown()  # stops the thread, flushes and shuts down every provider
"""

from __future__ import annotations

import functools
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import Attributes, AttributeValue

__all__ = ["DemoTraffic", "otlp_grpc_exporter_factory"]


class UpstreamError(Exception):
    """A dependency failed, so this hop failed too."""


class CardProcessorError(Exception):
    """The external card processor refused to answer."""


class QueryCanceled(Exception):
    """Postgres cancelled a statement (named after the psycopg error)."""


class DeadlineExceeded(TimeoutError):
    """A gRPC call ran past its deadline."""


# (service.name, service.version, regions): one instance, i.e. one TracerProvider, per region.
_SERVICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("frontend", "2.7.0", ("eu-west-1", "us-east-1")),
    ("checkout", "1.4.2", ("eu-west-1",)),
    ("payments", "3.1.0", ("us-east-1",)),
    ("inventory", "0.9.5", ("eu-west-1",)),
    ("recommendations", "1.12.1", ("eu-central-1",)),
)
_TIERS = ("free", "pro", "enterprise")
_TIER_WEIGHTS = (0.6, 0.3, 0.1)
_SLOW_TAIL_RATE = 0.01  # a GC pause, a cold cache: real latency distributions have a long tail
_PAYMENT_FAILURE_RATE = 0.02
_INVENTORY_TIMEOUT_RATE = 0.015
_INVENTORY_DEADLINE_NS = 250_000_000
_GRPC_OK, _GRPC_DEADLINE_EXCEEDED, _GRPC_UNAVAILABLE = 0, 4, 14
_DB_HOST = "postgres.demo.internal"
_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)")
_SELECT_STOCK = "SELECT quantity FROM stock WHERE product_id = $1"
_UPDATE_STOCK = "UPDATE stock SET quantity = quantity - $2 WHERE product_id = $1"
_LIST_RECOMMENDATIONS = "demo.RecommendationService/ListRecommendations"
_GET_STOCK = "demo.InventoryService/GetStock"
_RESERVE_STOCK = "demo.InventoryService/ReserveStock"
_CARD_PROCESSOR: dict[str, AttributeValue] = {
    "http.request.method": "POST",
    "url.full": "https://api.cards.example/v1/charges",
    "server.address": "api.cards.example",
    "net.peer.name": "api.cards.example",
    "server.port": 443,
}
_SLEEP_SLICE_S = 0.05  # the longest the loop sleeps before rechecking the stop event
_MAX_LAG_S = 1.0  # after a stall, skip missed arrivals rather than bursting to catch up
_JOIN_TIMEOUT_S = 5.0
_FLUSH_BUDGET_S = 3.0


@dataclass(frozen=True)
class _Failure:
    """How a hop failed, in both protocols' vocabularies, and the exception behind it."""

    http_status: int
    grpc_code: int
    error: BaseException

    def seen_through(self, callee: str) -> _Failure:
        """The same failure as reported one hop further up, naming the dependency that caused it."""
        return _Failure(self.http_status, self.grpc_code, UpstreamError(f"{callee}: {self.error}"))


_Result: TypeAlias = tuple[int, _Failure | None]  # (end time in ns, failure)
_Handler: TypeAlias = Callable[[Tracer, Span, int], _Result]  # (callee tracer, server span, start ns)


def otlp_grpc_exporter_factory(endpoint: str) -> Callable[[], SpanExporter]:
    """A factory of insecure OTLP/gRPC span exporters for ``endpoint`` (e.g. ``localhost:4317``)."""

    def factory() -> SpanExporter:
        return OTLPSpanExporter(endpoint=endpoint, insecure=True)

    return factory


def _start(
    tracer: Tracer,
    name: str,
    parent: Span | None,
    kind: SpanKind,
    t: int,
    attrs: Attributes = None,
    links: Sequence[Link] = (),
) -> Span:
    # The parent is always explicit, never the ambient context: a root gets an empty one, so a request
    # never adopts whatever span the calling thread has current.
    context = trace.set_span_in_context(parent) if parent is not None else Context()
    return tracer.start_span(name, context=context, kind=kind, attributes=attrs, links=links, start_time=t)


def _fail(span: Span, error: BaseException, at: int) -> None:
    span.record_exception(error, timestamp=at)
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, str(error)))


class DemoTraffic:
    """Simulated shop traffic; one TracerProvider, with one exporter from the factory, per service instance.

    ``batch=False`` exports each span as it ends (SimpleSpanProcessor), which tests use for determinism.
    """

    def __init__(
        self,
        span_exporter_factory: Callable[[], SpanExporter],
        *,
        requests_per_second: float = 20.0,
        seed: int | None = None,
        clock_sleep: Callable[[float], None] = time.sleep,
        batch: bool = True,
    ) -> None:
        if not requests_per_second > 0:
            raise ValueError(f"requests_per_second must be positive, got {requests_per_second}")
        self._rps = requests_per_second
        self._exporter_factory = span_exporter_factory
        self._batch = batch
        self._sleep = clock_sleep
        self._rng = random.Random(seed)
        # Arrivals draw from their own stream so a seed fixes run_requests() output whatever the loop does.
        self._arrivals = random.Random(self._rng.getrandbits(64))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._providers: list[TracerProvider] = []
        self._exporters: list[SpanExporter] = []
        self._tracers: dict[str, list[Tracer]] = {}
        self._slowdown: dict[str, float] = {}
        try:
            for name, version, regions in _SERVICES:
                for index, region in enumerate(regions):
                    tracer = self._add_provider(name, version, f"{name}-{index}", region)
                    self._tracers.setdefault(name, []).append(tracer)
        except BaseException:
            for provider in self._providers:  # don't leak the export threads already started
                provider.shutdown()
            raise

    def _add_provider(self, name: str, version: str, instance: str, region: str) -> Tracer:
        host = f"{instance}.{region}.demo.internal"
        resource = Resource.create(
            {
                "service.name": name,
                "service.version": version,
                "service.instance.id": host,
                "deployment.environment": "demo",
                "host.name": host,
                "cloud.provider": "aws",
                "cloud.region": region,
            }
        )
        # We own shutdown(), so no atexit hook per provider.
        provider = TracerProvider(sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False)
        exporter = self._exporter_factory()
        self._exporters.append(exporter)
        processor: SpanProcessor = (BatchSpanProcessor if self._batch else SimpleSpanProcessor)(exporter)
        provider.add_span_processor(processor)
        self._providers.append(provider)
        return provider.get_tracer("vigil.demo", version)

    def roll_out(self, service: str, version: str, *, slowdown: float = 1.0) -> None:
        """Replace `service`'s instances with `version`, whose requests take `slowdown` times as long.

        Later spans carry the new ``service.version``, so Vigil sees a deploy; a slowdown above 1
        makes it a bad one for the detectors and the service page to show.
        """
        regions = next((r for name, _, r in _SERVICES if name == service), None)
        if regions is None:
            raise ValueError(
                f"{service!r} is not a demo service; choose one of {', '.join(n for n, _, _ in _SERVICES)}"
            )
        if not slowdown > 0:
            raise ValueError(f"slowdown must be positive, got {slowdown}")
        with self._lock:
            if self._closed:
                raise RuntimeError("DemoTraffic has been shut down")
            # The old providers stay registered: shutdown() flushes what they still hold.
            self._tracers[service] = [
                self._add_provider(service, version, f"{service}-{version}-{index}", region)
                for index, region in enumerate(regions)
            ]
            self._slowdown[service] = slowdown

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Issue requests at about ``requests_per_second`` from a daemon thread until shutdown()."""
        with self._lock:
            if self._closed:
                raise RuntimeError("DemoTraffic has been shut down")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="vigil-demo-traffic", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop, then flush and shut down every provider. Idempotent; safe before start()."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_JOIN_TIMEOUT_S)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Flush all before shutting any: a factory may give every provider one shared exporter, and the
        # first provider's shutdown would stop it for the rest. Flushes run side by side under one budget
        # because force_flush ignores its timeout and OTLP retries an unreachable receiver for ~10 s.
        flushes = [threading.Thread(target=p.force_flush, daemon=True) for p in self._providers]
        for flush in flushes:
            flush.start()
        budget_ends = time.monotonic() + _FLUSH_BUDGET_S
        for flush, exporter in zip(flushes, self._exporters, strict=True):
            flush.join(max(0.0, budget_ends - time.monotonic()))
            if flush.is_alive():
                exporter.shutdown()  # aborts the retrying export, which provider.shutdown() would wait out
        for provider in self._providers:
            provider.shutdown()

    def run_requests(self, n: int) -> None:
        """Synchronously simulate exactly ``n`` front-door requests, each one trace starting now."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        with self._lock:
            if self._closed:
                raise RuntimeError("DemoTraffic has been shut down")
            for _ in range(n):
                self._request(time.time_ns())

    def _loop(self) -> None:
        # Poisson arrivals on an absolute schedule, so generation time does not lower the rate.
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if self._closed:
                    return
                self._request(time.time_ns())
            next_at = max(next_at + self._arrivals.expovariate(self._rps), time.monotonic() - _MAX_LAG_S)
            while not self._stop.is_set() and (remaining := next_at - time.monotonic()) > 0:
                self._sleep(min(remaining, _SLEEP_SLICE_S))

    # -- building blocks -------------------------------------------------------------------------------

    def _ns(self, median_ms: float, sigma: float = 0.35) -> int:
        """A log-normal duration in ns around ``median_ms``, occasionally in the slow tail."""
        ms = self._rng.lognormvariate(math.log(median_ms), sigma)
        if self._rng.random() < _SLOW_TAIL_RATE:
            ms *= self._rng.uniform(4.0, 12.0)
        return max(1_000, int(ms * 1_000_000))

    def _tracer(self, service: str) -> Tracer:
        return self._rng.choice(self._tracers[service])

    def _hop(
        self,
        caller: Tracer,
        parent: Span,
        t: int,
        callee: str,
        op: str,
        handler: _Handler,
        links: Sequence[Link] = (),
    ) -> _Result:
        """One cross-service call: a CLIENT span in the caller, a SERVER span parented on it in the callee.

        ``op`` is ``"METHOD /route"`` for HTTP or ``"package.Service/Method"`` for gRPC.
        """
        host = f"{callee}.demo.internal"
        grpc = " " not in op
        common: dict[str, AttributeValue] = {"server.address": host, "server.port": 50051 if grpc else 8080}
        if grpc:
            rpc_service, rpc_method = op.rsplit("/", 1)
            common.update({"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": rpc_method})
            client_only: dict[str, AttributeValue] = {"net.peer.name": host}
            server_only: dict[str, AttributeValue] = {}
        else:
            method, route = op.split(" ", 1)
            common["http.request.method"] = method
            client_only = {"net.peer.name": host, "url.full": f"http://{host}:8080{route}"}
            server_only = {"http.route": route, "url.path": route}
        client = _start(caller, op, parent, SpanKind.CLIENT, t, common | client_only)
        callee_tracer = self._tracer(callee)
        server_start = t + self._ns(0.3, 0.3)
        server = _start(callee_tracer, op, client, SpanKind.SERVER, server_start, common | server_only, links)
        server_end, failure = handler(callee_tracer, server, server_start)
        # A slower release spends the extra time in its own work, after its calls returned.
        server_end = server_start + int((server_end - server_start) * self._slowdown.get(callee, 1.0))
        client_end = server_end + self._ns(0.3, 0.3)
        for span, end in ((server, server_end), (client, client_end)):
            if grpc:
                span.set_attribute("rpc.grpc.status_code", failure.grpc_code if failure else _GRPC_OK)
            else:
                span.set_attribute("http.response.status_code", failure.http_status if failure else 200)
            if failure is not None:
                _fail(span, failure.error, end)
            span.end(end_time=end)
        return client_end, failure

    def _db(self, tracer: Tracer, parent: Span, t: int, sql: str, median: float, cancel_at: int = 0) -> int:
        """A postgres query of about ``median`` ms, as a CLIENT span; a nonzero ``cancel_at`` cancels it."""
        operation = sql.split(" ", 1)[0]
        match = _SQL_TABLE.search(sql)
        table = match.group(1) if match else "unknown"
        attributes: dict[str, AttributeValue] = {
            "db.system": "postgresql",
            "db.name": "shop",
            "db.operation": operation,
            "db.sql.table": table,
            "db.statement": sql,
            "server.address": _DB_HOST,
            "net.peer.name": _DB_HOST,
            "server.port": 5432,
        }
        span = _start(tracer, f"{operation} shop.{table}", parent, SpanKind.CLIENT, t, attributes)
        end = cancel_at or t + self._ns(median, 0.5)
        if cancel_at:
            _fail(span, QueryCanceled("canceling statement due to statement timeout"), end)
        span.end(end_time=end)
        return end

    # -- the shop --------------------------------------------------------------------------------------

    def _request(self, now: int) -> None:
        routes: tuple[tuple[str, str, _Handler], ...] = (
            ("GET", "/", self._home),
            ("GET", "/product/{id}", self._product),
            ("POST", "/cart/checkout", self._cart_checkout),
        )
        method, route, handler = self._rng.choices(routes, weights=(0.5, 0.35, 0.15))[0]
        tracer = self._tracer("frontend")
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "http.route": route,
            "url.path": route.replace("{id}", str(self._rng.randint(1000, 1099))),
            "url.scheme": "https",
            "server.address": "shop.demo.example",
            "client.address": f"203.0.113.{self._rng.randint(1, 254)}",
            "customer.tier": self._rng.choices(_TIERS, weights=_TIER_WEIGHTS)[0],
        }
        root = _start(tracer, f"{method} {route}", None, SpanKind.SERVER, now, attributes)
        end, failure = handler(tracer, root, now)
        root.set_attribute("http.response.status_code", failure.http_status if failure else 200)
        if failure is not None:
            _fail(root, failure.error, end)
        root.end(end_time=end)

    def _home(self, tracer: Tracer, root: Span, t: int) -> _Result:
        t += self._ns(3.0)  # session and routing
        t, _ = self._hop(tracer, root, t, "recommendations", _LIST_RECOMMENDATIONS, self._recommendations)
        return t + self._ns(12.0), None  # template rendering dominates the page

    def _product(self, tracer: Tracer, root: Span, t: int) -> _Result:
        t += self._ns(2.0)
        t, failure = self._hop(tracer, root, t, "inventory", _GET_STOCK, self._inventory)
        if failure is not None:
            return t + self._ns(0.5), failure.seen_through("inventory")
        t, _ = self._hop(tracer, root, t, "recommendations", _LIST_RECOMMENDATIONS, self._recommendations)
        return t + self._ns(10.0), None

    def _cart_checkout(self, tracer: Tracer, root: Span, t: int) -> _Result:
        cart = _start(tracer, "cart.build", root, SpanKind.INTERNAL, t)
        items = self._rng.randint(1, 5)
        for _ in range(items):
            t += self._ns(0.6)
            cart.add_event("cart.item_added", {"product.id": self._rng.randint(1000, 1099)}, timestamp=t)
        cart.set_attribute("cart.items", items)
        t += self._ns(1.0)
        cart.end(end_time=t)
        # Checkout works on a snapshot of the cart; the link lets Vigil jump from the order to it.
        link = Link(cart.get_span_context(), {"link.reason": "cart snapshot"})
        t, failure = self._hop(tracer, root, t, "checkout", "POST /checkout", self._checkout, [link])
        if failure is not None:
            return t + self._ns(1.0), failure.seen_through("checkout")
        return t + self._ns(3.0), None

    def _checkout(self, tracer: Tracer, server: Span, t: int) -> _Result:
        t += self._ns(8.0)  # order validation and pricing
        t, failure = self._hop(
            tracer, server, t, "inventory", _RESERVE_STOCK, functools.partial(self._inventory, reserve=True)
        )
        if failure is not None:
            return t + self._ns(1.0), failure.seen_through("inventory")
        t, failure = self._hop(tracer, server, t, "payments", "POST /charge", self._payments)
        if failure is not None:
            return t + self._ns(1.0), failure.seen_through("payments")
        t = self._db(tracer, server, t, "INSERT INTO orders (customer_id, total_cents) VALUES ($1, $2)", 4.0)
        server.add_event("order.placed", {"order.status": "paid"}, timestamp=t)
        return t + self._ns(2.0), None

    def _payments(self, tracer: Tracer, server: Span, t: int) -> _Result:
        t = self._db(tracer, server, t, "SELECT token FROM payment_methods WHERE customer_id = $1", 2.0)
        t += self._ns(4.0)
        server.add_event("fraud.checked", {"fraud.score": round(self._rng.random() * 0.3, 3)}, timestamp=t)
        # The card processor is outside the demo: a CLIENT span with no server side, as in real life.
        processor = _start(tracer, "POST /v1/charges", server, SpanKind.CLIENT, t, _CARD_PROCESSOR)
        t += self._ns(60.0)
        if self._rng.random() < _PAYMENT_FAILURE_RATE:
            processor.set_attribute("http.response.status_code", 503)
            error = CardProcessorError("card processor unavailable (HTTP 503)")
            _fail(processor, error, t)
            processor.end(end_time=t)
            return t + self._ns(1.0), _Failure(502, _GRPC_UNAVAILABLE, error)
        processor.set_attribute("http.response.status_code", 200)
        processor.end(end_time=t)
        t = self._db(tracer, server, t, "INSERT INTO payments (order_id, amount_cents) VALUES ($1, $2)", 3.0)
        return t + self._ns(1.0), None

    def _inventory(self, tracer: Tracer, server: Span, t: int, reserve: bool = False) -> _Result:
        deadline = t + _INVENTORY_DEADLINE_NS
        t += self._ns(0.8)
        if self._rng.random() < _INVENTORY_TIMEOUT_RATE:
            # A row lock outlives the caller's deadline; gRPC cancels the handler and its query there.
            self._db(tracer, server, t, _SELECT_STOCK + " FOR UPDATE", 2.0, cancel_at=deadline - 100_000)
            error = DeadlineExceeded(f"deadline exceeded after {_INVENTORY_DEADLINE_NS // 1_000_000} ms")
            return deadline, _Failure(504, _GRPC_DEADLINE_EXCEEDED, error)
        t = self._db(tracer, server, t, _SELECT_STOCK, 2.0)
        if reserve:
            t = self._db(tracer, server, t, _UPDATE_STOCK, 3.0)
        return t + self._ns(0.5), None

    def _recommendations(self, tracer: Tracer, server: Span, t: int) -> _Result:
        t += self._ns(3.0)  # model scoring
        t = self._db(tracer, server, t, "SELECT id, name FROM products WHERE category_id = $1 LIMIT 5", 3.0)
        return t + self._ns(1.0), None
