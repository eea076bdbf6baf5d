"""Trace search and the trace view in a real browser, over spans sent by the real OTel SDK."""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from playwright.sync_api import Locator, Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import chart_spec, follow, send_logs, send_spans, table_rows
from tests.logs import orders_logs_with_span
from tests.spans import checkout_trace, now_ns, trace_id_of
from tests.trace_spans import S, build_trace

MINUTE = 60_000_000_000


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def send_shop_traces(vigil: RunningVigil) -> dict[str, str]:
    """Three traces two minutes ago, by letter: a checkout with a failed charge, a cart view,
    a slow search."""
    start = now_ns() - 2 * MINUTE
    traces = {
        "checkout": build_trace([
            S("shop", "GET /checkout", 0, 30, attributes={"http.route": "/checkout"},
              children=[S("shop", "POST payments", 5, 25, kind=SpanKind.CLIENT,
                          children=[S("payments", "charge", 6, 24, status="error", message="card declined")])]),
        ], start_ns=start),
        "cart": build_trace([S("shop", "GET /cart", 0, 3, status="ok", attributes={"http.route": "/cart"})],
                            start_ns=start + 1_000_000_000),
        "search": build_trace([
            S("search", "GET /search", 0, 1500, attributes={"http.route": "/search", "user.tier": "gold"},
              children=[S("search", "query index", 10, 1400, kind=SpanKind.INTERNAL)]),
        ], start_ns=start + 2_000_000_000),
    }  # fmt: skip
    send_spans(vigil, [span for spans in traces.values() for span in spans])
    return {name: trace_id_of(spans) for name, spans in traces.items()}


CHECKOUT_ROW = ["shop: GET /checkout", "30.00", "3", "1", "payments, shop"]
CART_ROW = ["shop: GET /cart", "3.00", "1", "0", "shop"]
SEARCH_ROW = ["search: GET /search", "1,500.00", "2", "0", "search"]


def pairs(dl: Locator) -> list[tuple[str, str]]:
    """A definition list's (term, definition) pairs as shown."""
    return list(zip(dl.locator("dt").all_inner_texts(), dl.locator("dd").all_inner_texts(), strict=True))


def result_rows(page: Page) -> list[list[str]]:
    return [row[1:] for row in table_rows(page, "#traces")]


def test_each_search_filter_shows_exactly_the_matching_traces(quiet_vigil: RunningVigil, page: Page) -> None:
    send_shop_traces(quiet_vigil)
    cases = [
        ("", [SEARCH_ROW, CART_ROW, CHECKOUT_ROW]),
        ("service=shop", [CART_ROW, CHECKOUT_ROW]),
        ("service=payments", [CHECKOUT_ROW]),
        ("operation=charge", [CHECKOUT_ROW]),
        ("operation=query+index", [SEARCH_ROW]),
        ("min_ms=1000", [SEARCH_ROW]),
        ("min_ms=20&max_ms=30", [CHECKOUT_ROW]),
        ("max_ms=5", [CART_ROW]),
        ("status=error", [CHECKOUT_ROW]),
        ("status=ok", [CART_ROW]),
        ("status=unset", [SEARCH_ROW, CHECKOUT_ROW]),
        ("attr=http.route%3D%2Fcheckout", [CHECKOUT_ROW]),
        ("attr=http.route%3D%2Fsearch&attr=user.tier%3Dgold", [SEARCH_ROW]),
        ("attr=service.name%3Dpayments", [CHECKOUT_ROW]),  # a resource attribute
    ]
    for query, rows in cases:
        page.goto(f"{quiet_vigil.api}/traces?since=1h&{query}")
        assert result_rows(page) == rows, query
    page.goto(f"{quiet_vigil.api}/traces?since=1h&attr=user.tier%3Dsilver&service=search")
    assert page.locator("#traces").count() == 0
    assert page.locator("#empty").inner_text() == (
        "No traces match these filters in the last 1h. Clear the filters or pick a longer range."
    )
    page.click("#empty a")
    assert page.url == f"{quiet_vigil.api}/traces?since=1h"
    assert len(result_rows(page)) == 3


def test_the_search_form_puts_every_filter_in_the_url_and_keeps_it(quiet_vigil: RunningVigil, page: Page) -> None:
    ids = send_shop_traces(quiet_vigil)
    page.goto(f"{quiet_vigil.api}/traces?since=15m")
    assert sorted(page.locator("#service-names option").evaluate_all("os => os.map(o => o.value)")) == [
        "payments",
        "search",
        "shop",
    ]
    page.fill("#trace-search input[name=service]", "shop")
    page.fill("#trace-search input[name=operation]", "POST payments")
    page.fill("#trace-search input[name=min_ms]", "10")
    page.fill("#trace-search input[name=max_ms]", "25")
    page.select_option("#trace-search select[name=status]", "unset")
    page.fill("#trace-search input[name=attr]", "http.route=/nowhere")
    page.click("#trace-search button[type=submit]")
    assert query_of(page.url) == [
        ("since", "15m"), ("service", "shop"), ("operation", "POST payments"), ("min_ms", "10"), ("max_ms", "25"),
        ("status", "unset"), ("attr", "http.route=/nowhere"),
    ]  # fmt: skip
    assert page.locator("#traces").count() == 0
    # The form shows the search it ran; removing the attribute finds the client span's trace.
    assert page.locator("#trace-search input[name=operation]").input_value() == "POST payments"
    assert page.locator("#trace-search select[name=status]").input_value() == "unset"
    page.locator("#trace-search input[name=attr]").first.fill("")
    page.click("#trace-search button[type=submit]")
    assert result_rows(page) == [CHECKOUT_ROW]
    follow(page.locator("#traces tbody tr a"))
    assert page.url == f"{quiet_vigil.api}/traces/{ids['checkout']}"


def test_clicking_a_histogram_bar_searches_that_duration_range(quiet_vigil: RunningVigil, page: Page) -> None:
    send_shop_traces(quiet_vigil)
    page.goto(f"{quiet_vigil.api}/traces?since=1h&status=unset")
    spec = chart_spec(page, "latency-histogram")
    (bars,) = spec["data"]
    assert bars["x"] == [
        "&lt;1 ms", "1-2 ms", "2-5 ms", "5-10 ms", "10-20 ms", "20-50 ms", "50-100 ms", "100-200 ms", "200-500 ms",
        "500 ms-1 s", "1-2 s", "2-5 s", "5-10 s", "10-30 s", "≥30 s",
    ]  # fmt: skip
    # Unset spans: checkout 30 and POST payments 20 ms; search 1500 and query index 1390 ms.
    assert bars["y"] == [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0]
    assert result_rows(page) == [SEARCH_ROW, CHECKOUT_ROW]

    # Where a user clicks: the middle of the bar (plotly's drag layer on top takes the click).
    box = page.locator("#latency-histogram g.point path").nth(10).bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r".*max_ms=2000.*"))
    assert sorted(query_of(page.url)) == [("max_ms", "2000"), ("min_ms", "1000"), ("since", "1h"), ("status", "unset")]
    assert result_rows(page) == [SEARCH_ROW]
    # The histogram still shows every duration, with the selected bucket highlighted.
    narrowed = chart_spec(page, "latency-histogram")["data"][0]
    assert narrowed["y"] == bars["y"]
    colors = narrowed["marker"]["color"]
    assert [i for i, color in enumerate(colors) if color != colors[0]] == [10]


def test_the_time_picker_keeps_the_filters_and_changes_the_results(quiet_vigil: RunningVigil, page: Page) -> None:
    spans = build_trace([S("shop", "GET /old", 0, 7)], start_ns=now_ns() - 10 * MINUTE)
    send_spans(quiet_vigil, spans)
    page.goto(f"{quiet_vigil.api}/traces?since=5m&service=shop")
    assert page.locator("#traces").count() == 0
    page.click("a.range:text-is('1h')")
    assert query_of(page.url) == [("since", "1h"), ("service", "shop")]
    assert result_rows(page) == [["shop: GET /old", "7.00", "1", "0", "shop"]]


def test_bad_filters_are_a_400_naming_the_problem(quiet_vigil: RunningVigil, page: Page) -> None:
    cases = {
        "min_ms=500&max_ms=100": "min_ms (500) is not below max_ms (100); swap them, or clear one to leave that side "
        "open.",
        "min_ms=fast": "min_ms='fast' is not a duration in milliseconds; give a number such as 250.",
        "max_ms=-1": "max_ms='-1' is not a duration in milliseconds; give a number such as 250.",
        "attr=http.route": "attr='http.route' is not valid: expected key=value, e.g. http.route=/checkout.",
        "status=broken": "status='broken' is not a span status; use any, error, ok or unset.",
    }
    for query, message in cases.items():
        response = page.goto(f"{quiet_vigil.api}/traces?{query}")
        assert response is not None and response.status == 400, query
        assert page.locator(".error-message").inner_text() == message


def test_an_empty_store_says_where_to_send_traces(quiet_vigil: RunningVigil, page: Page) -> None:
    page.goto(f"{quiet_vigil.api}/traces")
    text = page.locator("#empty").inner_text()
    assert "No traces were received in the last 1h." in text
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{quiet_vigil.ports.otlp_http}" in text
    assert page.locator("#latency-histogram").count() == 0


def send_order_trace(vigil: RunningVigil) -> tuple[list[ReadableSpan], dict[str, str]]:
    """An order across five services: sequential, overlapping and async children, an error, an
    orphan; returns the spans and their ids by span name.

    api GET /order 0-100 ms
      api auth check 2-10           (critical)
      stock reserve 12-60, error    (overlaps quote, which finished later: not critical)
      pricing quote 15-90           (critical)
      mail send email 95-150        (async, outlives the order: critical until 100)
    worker reindex 20-40, its parent never arrived
    """
    spans = build_trace([
        S("api", "GET /order", 0, 100, children=[
            S("api", "auth check", 2, 10, kind=SpanKind.INTERNAL),
            S("stock", "reserve", 12, 60, status="error", message="out of stock"),
            S("pricing", "quote", 15, 90),
            S("mail", "send email", 95, 150, kind=SpanKind.CONSUMER),
        ]),
        S("worker", "reindex", 20, 40, kind=SpanKind.INTERNAL, orphan=True),
    ], start_ns=now_ns() - MINUTE)  # fmt: skip
    send_spans(vigil, spans)
    return spans, {s.name: format(s.context.span_id, "016x") for s in spans}


def test_the_waterfall_shows_every_span_in_tree_order_with_the_critical_path(
    quiet_vigil: RunningVigil, page: Page
) -> None:
    spans, ids = send_order_trace(quiet_vigil)
    page.goto(f"{quiet_vigil.api}/traces/{trace_id_of(spans)}")
    assert table_rows(page, "#waterfall") == [
        ["api GET /order Server", "", "100.00", "12.00", ""],
        ["api auth check Internal", "", "8.00", "8.00", ""],
        ["stock reserve Server", "error", "48.00", "", ""],
        ["pricing quote Server", "", "75.00", "75.00", ""],
        ["mail send email Consumer", "", "55.00", "5.00", ""],
        ["worker reindex Internal parent missing", "", "20.00", "", ""],
    ]
    critical = page.locator("#waterfall tr.critical").evaluate_all("rows => rows.map(r => r.id)")
    assert critical == [f"span-{ids[name]}" for name in ("GET /order", "auth check", "quote", "send email")]
    assert page.locator("#waterfall tr.error").evaluate_all("rows => rows.map(r => r.id)") == [f"span-{ids['reserve']}"]
    # One colour per service: both api rows alike, every other service its own.
    colors = page.locator("#waterfall tbody .bar").evaluate_all("bars => bars.map(b => b.style.backgroundColor)")
    assert colors[0] == colors[1] and len(set(colors)) == 5
    # The critical sections under the bars: own time of the order (3), auth, quote, email.
    assert page.locator("#waterfall .crit").count() == 6
    page.uncheck("#show-critical")
    assert page.locator("#waterfall .crit").first.is_hidden()
    assert "critical path" in page.locator("#critical-legend").inner_text()

    header = dict(pairs(page.locator("#trace-header")))
    assert {k: header[k] for k in ("Root", "Duration", "Spans", "Errors", "Services")} == {
        "Root": "api: GET /order",
        "Duration": "150.00 ms",
        "Spans": "6",
        "Errors": "1",
        "Services": "api, mail, pricing, stock, worker",
    }
    service_links = page.locator("#trace-services a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert [urlsplit(href).path for href in service_links] == [
        "/services/api",
        "/services/mail",
        "/services/pricing",
        "/services/stock",
        "/services/worker",
    ]
    # Five minutes either side of the trace, in whole seconds.
    start_ns = min(s.start_time or 0 for s in spans)
    end_ns = max(s.end_time or 0 for s in spans)
    around = [("start", str(math.floor(start_ns / 1e9) - 300)), ("end", str(math.ceil(end_ns / 1e9) + 300))]
    assert [query_of(href) for href in service_links] == [around] * 5
    assert page.locator("#trace-start").inner_text().endswith("Z")


def test_span_details_show_attributes_events_links_resource_and_status(quiet_vigil: RunningVigil, page: Page) -> None:
    spans = checkout_trace(now_ns() - MINUTE)
    send_spans(quiet_vigil, spans)
    trace_id = trace_id_of(spans)
    ids = {s.name: format(s.context.span_id, "016x") for s in spans}
    page.goto(f"{quiet_vigil.api}/traces/{trace_id}")
    charge = page.locator(f"#span-{ids['charge']}")
    assert charge.locator(".span-details").is_hidden()
    charge.locator("summary").click()
    assert dict(pairs(charge.locator(".span-details dl.span-fields"))) == {
        "span id": ids["charge"],
        "parent id": ids["POST payments"],
        "kind": "Server",
        "status": "Error: card declined",
        "starts": "+6.000 ms",
        "scope": "payments.rpc",
    }
    assert charge.locator(".span-events > li").all_inner_texts() == [
        "exception +17.000 ms\nexception.message\ninsufficient funds\nexception.type\nCardDeclined"
    ]
    assert charge.locator(".span-links > li").all_inner_texts() == [
        f"trace {trace_id} span {ids['GET /checkout']}\nlink.reason\naudit\nlink.weight\n2"
    ]
    resource = charge.locator(".span-resource dt").all_inner_texts()
    (charge_span,) = (s for s in spans if s.name == "charge")
    assert resource == sorted(charge_span.resource.attributes)
    charge.locator(".span-links a.link-span").click()
    assert page.url.endswith(f"#span-{ids['GET /checkout']}")
    assert charge.locator(".span-links a.link-trace").get_attribute("href") == f"/traces/{trace_id}"

    root = page.locator(f"#span-{ids['GET /checkout']}")
    root.locator("summary").click()
    assert pairs(root.locator(".span-attributes dl")) == [
        ("cart.gift", "[false, true]"),
        ("cart.prices", "[9.5, 0.25]"),
        ("cart.quantities", "[1, 3]"),
        ("cart.skus", '["A1", "B2"]'),
        ("cart.total", "99.95"),
        ("http.request.method", "GET"),
        ("http.response.status_code", "502"),
        ("user.premium", "true"),
    ]
    assert root.locator(".span-details dd.scope").inner_text() == "shop.http 1.2.3"
    assert root.locator(".span-details dl.span-fields dd").nth(1).inner_text() == "none (root)"


def test_a_trace_s_logs_link_to_their_spans_and_to_the_log_search(quiet_vigil: RunningVigil, page: Page) -> None:
    records, trace_id, spans = orders_logs_with_span()
    send_spans(quiet_vigil, spans)
    send_logs(quiet_vigil, records)
    span_id = format(spans[0].context.span_id, "016x")
    page.goto(f"{quiet_vigil.api}/traces/{trace_id}")
    assert [row[1:] for row in table_rows(page, "#trace-logs")] == [
        ["orders", "INFO", "order A-42 accepted", "POST /orders"],
        ["orders", "ERROR", "payment for order A-42 failed: card declined", "POST /orders"],
    ]
    follow(page.locator("#trace-logs tbody tr").first.locator("a"))
    assert page.url == f"{quiet_vigil.api}/traces/{trace_id}#span-{span_id}"
    assert page.locator(f"#span-{span_id}").evaluate("row => row.matches(':target')")

    href = page.locator("#trace-logs-link").get_attribute("href") or ""
    assert urlsplit(href).path == "/logs"
    assert [k for k, _ in query_of(href)] == ["start", "end", "trace_id"] and query_of(href)[2][1] == trace_id
    page.click("#trace-logs-link")
    assert page.url == quiet_vigil.api + href
    # The log search over the trace's minutes finds its two records (of the four logged).
    assert page.locator("#logs tbody tr").count() == 2


@pytest.mark.parametrize("markup", ["<b>bold</b>", "<script>window.pwned = 1</script>"])
def test_names_and_attributes_with_markup_are_shown_as_text(quiet_vigil: RunningVigil, page: Page, markup: str) -> None:
    spans = build_trace(
        [
            S(f"svc {markup}", f"op {markup}", 0, 5, attributes={f"key {markup}": f"value {markup}"},
              events=[(f"event {markup}", 1, {"why": markup})]),
        ],
        start_ns=now_ns() - MINUTE,
    )  # fmt: skip
    send_spans(quiet_vigil, spans)
    page.goto(f"{quiet_vigil.api}/traces?since=1h")
    assert result_rows(page) == [[f"svc {markup}: op {markup}", "5.00", "1", "0", f"svc {markup}"]]
    follow(page.locator("#traces tbody tr a"))
    row = page.locator("#waterfall tbody tr").first
    row.locator("summary").click()
    assert row.locator("summary").inner_text() == f"svc {markup} op {markup} Server"
    assert pairs(row.locator(".span-attributes dl")) == [(f"key {markup}", f"value {markup}")]
    assert row.locator(".span-events > li").all_inner_texts() == [f"event {markup} +1.000 ms\nwhy\n{markup}"]
    assert page.locator("main b, main script").count() == 0
    assert page.evaluate("window.pwned") is None
