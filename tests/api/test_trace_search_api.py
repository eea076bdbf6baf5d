"""The traces API takes the search page's filters: a duration range and attributes."""

from __future__ import annotations

import httpx
from opentelemetry.trace import SpanKind

from tests.conftest import RunningVigil
from tests.dashboards.pages import send_spans
from tests.spans import now_ns, trace_id_of
from tests.trace_spans import S, build_trace


def test_traces_are_searched_by_duration_range_and_attributes(quiet_vigil: RunningVigil) -> None:
    start = now_ns() - 60_000_000_000
    checkout = build_trace(
        [S("shop", "GET /checkout", 0, 30, attributes={"http.route": "/checkout"},
           children=[S("shop", "POST payments", 5, 25, kind=SpanKind.CLIENT,
                       attributes={"peer.service": "payments"})])],
        start_ns=start,
    )  # fmt: skip
    cart = build_trace([S("shop", "GET /cart", 0, 3, attributes={"http.route": "/cart"})], start_ns=start + 10**9)
    send_spans(quiet_vigil, checkout + cart)

    def found(params: list[tuple[str, str]]) -> list[str]:
        response = httpx.get(f"{quiet_vigil.api}/api/v1/traces", params=[("since", "15m"), *params])
        assert response.status_code == 200, response.text
        return [t["trace_id"] for t in response.json()]

    checkout_id, cart_id = trace_id_of(checkout), trace_id_of(cart)
    assert found([]) == [cart_id, checkout_id]
    assert found([("max_duration_ms", "5")]) == [cart_id]
    assert found([("min_duration_ms", "20"), ("max_duration_ms", "30")]) == [checkout_id]  # POST payments, 20 ms
    assert found([("attr", "http.route=/cart")]) == [cart_id]
    assert found([("attr", "service.name=shop"), ("attr", "peer.service=payments")]) == [checkout_id]
    assert found([("attr", "http.route=/checkout"), ("attr", "peer.service=payments")]) == []


def test_bad_search_parameters_are_a_422_naming_them(quiet_vigil: RunningVigil) -> None:
    cases = [
        ([("attr", "http.route")], ["query", "attr"],
         "'http.route' is not valid for attr: expected key=value, e.g. http.route=/checkout"),
        ([("min_duration_ms", "50"), ("max_duration_ms", "50")], ["query", "max_duration_ms"],
         "50.0 is not valid for max_duration_ms: expected a duration above min_duration_ms (50.0)"),
    ]  # fmt: skip
    for params, loc, msg in cases:
        response = httpx.get(f"{quiet_vigil.api}/api/v1/traces", params=params)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert (error["loc"], error["msg"]) == (loc, msg)


def test_a_duration_filter_longer_than_a_year_is_refused_with_its_bound(quiet_vigil: RunningVigil) -> None:
    response = httpx.get(f"{quiet_vigil.api}/api/v1/traces", params={"min_duration_ms": "1.6760410686060946e308"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (
        ["query", "min_duration_ms"],
        "Input should be less than or equal to 31536000000",
    )
