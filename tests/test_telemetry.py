"""Vigil's own traces: a Vigil that sends its spans to itself stores them as service "vigil"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.auth_tokens import READ, TOKENS_SETTING, bearer
from tests.conftest import RunningVigil, start_vigil, stop_vigil
from tests.waiting import wait_until
from vigil.errors import ConfigError
from vigil.settings import load_settings
from vigil.store.client import Client

UNKNOWN_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def self_tracing_vigil(vigil_settings: dict[str, Any]) -> Iterator[RunningVigil]:
    running, thread = start_vigil(load_settings(**vigil_settings, detectors_enabled=False, self_traces_endpoint="self"))
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def vigil_spans(client: Client, database: str, where: str) -> list[tuple[Any, ...]]:
    return client.query(
        f"""SELECT SpanName, SpanKind, ResourceAttributes['service.name'], SpanAttributes['http.route'],
                   SpanAttributes['http.response.status_code'], SpanAttributes['url.path'],
                   SpanAttributes['db.collection.name'], SpanAttributes['vigil.rows']
            FROM {database}.spans WHERE ServiceName = 'vigil' AND {where} ORDER BY Timestamp"""
    ).result_rows


def stored_vigil_spans(vigil: RunningVigil, client: Client, database: str, where: str) -> list[tuple[Any, ...]]:
    """Vigil's own spans matching `where`, once some are stored.

    A request's span ends just after its response is sent, so the client can see the response
    before the span is queued for export: export and insert until it arrives.
    """

    def stored() -> bool:
        assert vigil.vigil.tracing.force_flush()  # exported to this Vigil's own OTLP/HTTP receiver
        vigil.flush()
        return bool(vigil_spans(client, database, where))

    assert wait_until(stored, timeout_s=30.0)
    return vigil_spans(client, database, where)


def test_a_vigil_tracing_itself_stores_its_request_and_insert_spans_as_service_vigil(
    self_tracing_vigil: RunningVigil, chdb_client: Client, database: str
) -> None:
    vigil = self_tracing_vigil
    # Probes and scrapes are not traced; an API request is, named after its route template.
    for path in ("/healthz", "/metrics", f"/api/v1/traces/{UNKNOWN_TRACE}"):
        httpx.get(f"{vigil.api}{path}")
    assert stored_vigil_spans(vigil, chdb_client, database, "SpanKind = 'Server'") == [
        (
            "GET /api/v1/traces/{trace_id}",
            "Server",
            "vigil",
            "/api/v1/traces/{trace_id}",
            "404",
            f"/api/v1/traces/{UNKNOWN_TRACE}",
            "",
            "",
        )
    ]
    # Storing that span was an insert, which is a span too, sent with the next export.
    assert stored_vigil_spans(vigil, chdb_client, database, "SpanName = 'INSERT spans'")[0] == (
        "INSERT spans",
        "Client",
        "vigil",
        "",
        "",
        "",
        "spans",
        "1",
    )


def test_a_vigil_with_tokens_traces_itself_with_a_token_of_its_own(
    vigil_settings: dict[str, Any], chdb_client: Client, database: str
) -> None:
    settings = load_settings(
        **vigil_settings, detectors_enabled=False, self_traces_endpoint="self", tokens=TOKENS_SETTING
    )
    vigil, thread = start_vigil(settings)
    try:
        path = f"/api/v1/traces/{UNKNOWN_TRACE}"
        assert httpx.get(f"{vigil.api}{path}", headers=bearer(READ)).status_code == 404
        assert [row[0] for row in stored_vigil_spans(vigil, chdb_client, database, "SpanKind = 'Server'")] == [
            "GET /api/v1/traces/{trace_id}"
        ]
        # Its receivers still refuse a sender without a token of its own.
        refused = httpx.post(f"{vigil.otlp_http}/v1/traces", content=b"", headers={"Content-Type": "application/json"})
        assert refused.status_code == 401
    finally:
        stop_vigil(vigil, thread)


def test_a_self_traces_endpoint_that_is_not_a_url_stops_the_start_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(self_traces_endpoint="otel-collector:4318")
    assert str(raised.value) == (
        "invalid settings:\n  VIGIL_SELF_TRACES_ENDPOINT='otel-collector:4318': 'otel-collector:4318' is not an "
        'OTLP/HTTP endpoint; expected an http(s) base URL such as http://otel-collector:4318, "self" (this '
        "Vigil's own receiver), or empty (off)"
    )
