"""Vigil's own traces, through opentelemetry-sdk: one `TracerProvider` per Vigil, exported over OTLP/HTTP.

``VIGIL_SELF_TRACES_ENDPOINT`` turns them on: an OTLP/HTTP base URL (``http://collector:4318``;
``/v1/traces`` is added) or ``self``, this Vigil's own OTLP/HTTP receiver, where they become
spans of service ``vigil`` like any other. Empty (the default) leaves every tracer a no-op.

What has a span: each API or page request (`TraceRequests`, named after its route template, e.g.
``GET /api/v1/services/{service}``), each insert of log segments into ClickHouse (the inserter),
and each detector round, with a child per detector family. The OTLP receivers never trace their
requests: exporting to itself, a span per received export would make every export cause the
next, without end. What remains is bounded when Vigil traces itself: an idle Vigil's insert of
its own spans is one more span, exported with the next batch (about one every 5 s).

The provider belongs to its Vigil and is never installed globally (`trace.set_tracer_provider`),
so several Vigils in one process (the tests) keep their spans apart; parts take a `Tracer`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SELF", "SELF_TRACES_TOKEN", "SelfTracing", "TraceRequests", "route_template", "traces_url"]

# VIGIL_SELF_TRACES_ENDPOINT's value for "this Vigil's own OTLP/HTTP receiver".
SELF = "self"
# The name of the token a Vigil makes for its own spans when "self" has tokens to check.
SELF_TRACES_TOKEN = "vigil-own-traces"
# An export to an endpoint that is down must not hold up a shutdown for long.
_EXPORT_TIMEOUT_S = 5.0
# Probes and scrapes come every few seconds and say nothing about users; assets are static files.
_UNTRACED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_UNTRACED_PREFIXES = ("/static/", "/assets/")


def traces_url(setting: str, *, host: str, otlp_http_port: int) -> str:
    """The OTLP/HTTP traces URL that VIGIL_SELF_TRACES_ENDPOINT names; "" when it is off.

    >>> traces_url("self", host="0.0.0.0", otlp_http_port=4318)
    'http://127.0.0.1:4318/v1/traces'
    >>> traces_url("http://otel-collector:4318/", host="127.0.0.1", otlp_http_port=0)
    'http://otel-collector:4318/v1/traces'
    """
    if not setting:
        return ""
    base = f"http://{_connectable(host)}:{otlp_http_port}" if setting == SELF else setting.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _connectable(host: str) -> str:
    """An address to reach a listener bound to `host` from this machine (a wildcard bind is reached on loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


class SelfTracing:
    """One Vigil's tracer provider, or no-op tracers when `enabled` is false.

    Spans are kept nowhere until an exporter is added (`export_to`), so parts can be handed
    their tracers before the endpoint is known (``self`` needs the OTLP port bound first).
    """

    def __init__(self, *, enabled: bool, roles: Iterable[str] = (), version: str = "") -> None:
        self.provider: TracerProvider | None = None
        if enabled:
            resource = Resource(
                {
                    "service.name": "vigil",
                    "service.version": version,
                    "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
                    "host.name": socket.gethostname(),
                    "vigil.roles": ",".join(sorted(roles)),
                }
            )
            # Vigil shuts its provider down itself, flushing what is queued; no atexit hook per instance.
            self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name) if self.provider is not None else trace.NoOpTracer()

    def export_to(self, url: str, *, bearer: str | None = None) -> None:
        """Send spans in batches to the OTLP/HTTP traces `url`, with `bearer` as the token if given
        (else OTEL_EXPORTER_OTLP_TRACES_HEADERS applies, as for any OTel exporter)."""
        headers = {"authorization": f"Bearer {bearer}"} if bearer else None
        self.add_exporter(OTLPSpanExporter(endpoint=url, timeout=_EXPORT_TIMEOUT_S, headers=headers))

    def add_exporter(self, exporter: SpanExporter) -> None:
        if self.provider is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export every span ended so far; False if that took over `timeout_s`."""
        return self.provider.force_flush(int(timeout_s * 1000)) if self.provider is not None else True

    def shutdown(self) -> None:
        """Export what is queued and stop. Idempotent."""
        provider, self.provider = self.provider, None
        if provider is not None:
            provider.shutdown()


def route_template(scope: Scope) -> str | None:
    """The template of the route that served a request (``/services/{name:path}``), once the router
    has put it in the scope; None when no route matched. Names spans and labels metrics: the
    template, not the path, so /services/a and /services/b are one operation."""
    route = getattr(scope.get("route"), "path", None)
    return route if isinstance(route, str) else None


class TraceRequests:
    """ASGI middleware: one SERVER span per HTTP request, named ``METHOD route`` after the matched route template.

    Probes, ``/metrics`` and static assets are not traced.
    """

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _UNTRACED_PATHS or path.startswith(_UNTRACED_PREFIXES):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 0

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        attributes = {"http.request.method": method, "url.path": path, "url.scheme": scope.get("scheme", "http")}
        with self.tracer.start_as_current_span(method, kind=SpanKind.SERVER, attributes=attributes) as span:
            try:
                await self.app(scope, receive, send_and_note_status)
            finally:
                route = route_template(scope)
                if route is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
