"""The time range a page shows: parsed from the URL, kept by every link and by the picker."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page

from tests.conftest import RunningVigil
from tests.dashboards.pages import send_spans
from tests.spans import checkout_trace, now_ns
from vigil.dashboards.render import link
from vigil.dashboards.timerange import BadTimeRange, TimeRange, parse_time_range


def test_no_range_is_the_last_hour() -> None:
    assert parse_time_range(now=10_000.0) == TimeRange(6_400.0, 10_000.0, "1h", "off")


def test_an_absolute_range_takes_unix_seconds_or_iso_times_in_utc() -> None:
    by_seconds = parse_time_range(start="1763805600", end="1763809200")
    by_iso = parse_time_range(start="2025-11-22T10:00", end="2025-11-22T11:00:00Z")
    assert (by_seconds.start_s, by_seconds.end_s, by_seconds.since) == (1763805600.0, 1763809200.0, None)
    assert (by_iso.start_s, by_iso.end_s) == (1763805600.0, 1763809200.0)
    assert by_iso.label == "2025-11-22 10:00 to 11:00 UTC"
    assert by_iso.params() == {"start": "1763805600", "end": "1763809200"}


def test_an_absolute_range_never_refreshes_and_a_relative_one_only_when_asked() -> None:
    assert parse_time_range(start="100", end="200", refresh="30s").refresh_s is None
    assert parse_time_range("15m").refresh_s is None
    assert parse_time_range("15m", refresh="30s").refresh_s == 30.0
    assert parse_time_range("15m", refresh="7s").refresh == "off"  # not one of the choices


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"since": "soon"}, "since='soon' is not a duration; use one of 5m, 15m, 1h"),
        ({"since": "90d"}, "since='90d' is out of range; choose between 1s and 31d"),
        ({"start": "yesterday"}, "start='yesterday' is not a time; give unix seconds"),
        ({"start": "200", "end": "100"}, "the range ends (100) before it starts (200); swap start and end"),
        ({"start": "0", "end": "3000000"}, "the range is longer than 31 days"),
    ],
)
def test_a_malformed_range_names_the_parameter_and_the_fix(arguments: dict[str, str], message: str) -> None:
    with pytest.raises(BadTimeRange) as raised:
        parse_time_range(**arguments)
    assert str(raised.value).startswith(message)


def test_links_keep_the_range_and_drop_empty_parameters_and_repeat_lists() -> None:
    last_hour = parse_time_range("1h", refresh="1m")
    assert link("/traces", last_hour, service="shop", status="") == "/traces?since=1h&refresh=1m&service=shop"
    assert link("/traces", None, attr=["a=1", "b=2"]) == "/traces?attr=a%3D1&attr=b%3D2"


def test_the_picker_keeps_every_filter_including_repeated_ones(vigil_server: RunningVigil, page: Page) -> None:
    page.goto(f"{vigil_server.api}/traces?since=1h&service=shop&attr=a%3D1&attr=b%3D2")
    page.click("#picker a.range:text-is('15m')")
    query = parse_qs(urlparse(page.url).query)
    assert query == {"since": ["15m"], "service": ["shop"], "attr": ["a=1", "b=2"]}
    page.click("#picker a.refresh-choice:text-is('30s')")
    assert parse_qs(urlparse(page.url).query)["refresh"] == ["30s"]
    assert page.locator("body").get_attribute("data-refresh-seconds") == "30"
    page.fill("#picker input[name=start]", "2026-01-02T03:04")
    page.fill("#picker input[name=end]", "2026-01-02T05:04")
    page.click("#picker button[type=submit]")
    query = parse_qs(urlparse(page.url).query)
    assert query == {
        "service": ["shop"],
        "attr": ["a=1", "b=2"],
        "start": ["2026-01-02T03:04"],
        "end": ["2026-01-02T05:04"],
    }
    assert page.locator("#range-label").inner_text() == "2026-01-02 03:04 to 05:04 UTC"
    assert page.locator("body").get_attribute("data-refresh-seconds") == "0"


def test_a_bad_range_renders_an_error_page_naming_it(vigil_server: RunningVigil, page: Page) -> None:
    response = page.goto(f"{vigil_server.api}/?since=soon")
    assert response is not None and response.status == 400
    assert page.title() == "Bad time range · Vigil"
    assert page.locator("#error-message").inner_text().startswith("since='soon' is not a duration")


def test_an_unknown_page_is_a_404_page_and_the_api_keeps_json(vigil_server: RunningVigil, page: Page) -> None:
    response = page.goto(f"{vigil_server.api}/nowhere")
    assert response is not None and response.status == 404
    assert page.locator("#error-message").inner_text() == "There is no page at /nowhere. Start from Services."
    api = page.request.get(f"{vigil_server.api}/api/v1/nowhere")
    assert (api.status, api.json()) == (404, {"detail": "Not Found"})


def test_plotly_is_served_by_vigil_gzipped_and_cacheable(vigil_server: RunningVigil, page: Page) -> None:
    send_spans(vigil_server, checkout_trace(now_ns() - 1_000_000_000))
    page.goto(f"{vigil_server.api}/traces")  # the latency histogram is a chart
    page.wait_for_selector("#latency-histogram[data-drawn='true']")
    source = page.locator("script[src*='plotly']").get_attribute("src")
    assert source is not None and source.startswith("/assets/plotly-")
    response = page.request.get(vigil_server.api + source, headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-encoding"] == "gzip"
    assert page.evaluate("typeof Plotly.newPlot") == "function"


def test_a_page_without_charts_does_not_load_plotly(vigil_server: RunningVigil, page: Page) -> None:
    page.goto(f"{vigil_server.api}/alerts")
    page.wait_for_load_state("load")
    assert page.locator("script[src*='plotly']").count() == 0
    assert page.evaluate("typeof Plotly") == "undefined"
