"""Block Kit messages for alert groups: exact payloads, cascades, truncation, escaping, limits."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from tests.slack_server import block_errors
from vigil.alerts.slack_message import (
    AlertView,
    alert_message,
    format_duration,
    format_value,
    resolution_reply,
    resolved_message,
)

ONSET = 1_699_963_380.0  # 2023-11-14 12:03:00 UTC
URL = "https://vigil.example"
TRACE = "0af7651916cd43dd8448eb211c80319c"


def alert(**changes: Any) -> AlertView:
    base = AlertView(
        key="a1",
        rule="checkout-latency",
        severity="critical",
        state="firing",
        kind="service_regression",
        service="checkout",
        operation="POST /checkout",
        signal="latency_p95",
        summary="p95 latency of POST /checkout is 6.9 times its baseline.",
        started_at=ONSET,
        ended_at=None,
        baseline=180.0,
        observed=1240.4,
        unit="ms",
        deploy_id="v42",
        exemplar_trace_ids=(TRACE, "1" * 32),
        finding_id="f-1",
    )
    return dataclasses.replace(base, **changes)


def cascade() -> list[AlertView]:
    """A deploy breaks checkout: latency, then errors, then throughput drops."""
    return [
        alert(
            key="a3",
            rule="checkout-throughput",
            severity="warning",
            signal="throughput",
            operation="",
            summary="Throughput of checkout fell by a third.",
            started_at=ONSET + 60,
            baseline=1800.0,
            observed=1200.0,
            unit="requests/min",
            exemplar_trace_ids=(),
            finding_id="f-3",
        ),
        alert(
            key="a2",
            rule="checkout-errors",
            signal="error_rate",
            operation="POST /pay",
            summary="Errors of POST /pay rose to 4.5%.",
            started_at=ONSET + 120,
            baseline=0.002,
            observed=0.045,
            unit="ratio",
            deploy_id="",
            finding_id="f-2",
        ),
        alert(),
    ]


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text a person sees in `blocks`."""
    found: list[str] = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [element["text"] for element in block.get("elements", [])]
    return found


def test_one_latency_regression_is_one_exact_message() -> None:
    text, blocks = alert_message([alert()], service="checkout", public_url=URL + "/")

    assert text == "🔴 checkout: latency p95 regression on POST /checkout: 180 ms → 1,240 ms since 12:03 UTC"
    assert blocks == [
        {"type": "header", "text": {"type": "plain_text", "text": "🔴 checkout: latency p95 regression"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    "🔴 *Latency p95 regression* on POST /checkout\n"
                    "p95 latency of POST /checkout is 6.9 times its baseline.\n"
                    "*180 ms → 1,240 ms* (6.9x) · since 12:03 UTC · suspected deploy v42\n"
                    "<https://vigil.example/services/checkout?start=1699961580|Dashboard>"
                    " · <https://vigil.example/api/v1/findings/f-1|Finding>"
                    f" · <https://vigil.example/traces/{TRACE}|Trace>"
                ),
                "verbatim": True,
            },
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "Rule: checkout-latency · Severity: critical", "verbatim": True}],
        },
    ]
    assert block_errors(blocks) == []


def test_a_cascade_is_one_message_most_severe_first() -> None:
    text, blocks = alert_message(cascade(), service="checkout", public_url=URL)

    assert text == (
        "🔴 checkout: 3 alerts: latency p95 regression on POST /checkout;"
        " error rate regression on POST /pay; throughput regression"
    )
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "context"]
    assert blocks[0]["text"]["text"] == "🔴 checkout: 3 alerts"
    # Critical before warning; among the critical ones, the earlier onset first.
    assert blocks[2]["text"]["text"] == (
        "🔴 *Error rate regression* on POST /pay\n"
        "Errors of POST /pay rose to 4.5%.\n"
        "*0.2% → 4.5%* (22x) · since 12:05 UTC\n"
        "<https://vigil.example/services/checkout?start=1699961700|Dashboard>"
        " · <https://vigil.example/api/v1/findings/f-2|Finding>"
        f" · <https://vigil.example/traces/{TRACE}|Trace>"
    )
    assert blocks[3]["text"]["text"] == (
        "🟠 *Throughput regression*\n"
        "Throughput of checkout fell by a third.\n"
        "*1,800 requests/min → 1,200 requests/min* (-33%) · since 12:04 UTC · suspected deploy v42\n"
        "<https://vigil.example/services/checkout?start=1699961640|Dashboard>"
        " · <https://vigil.example/api/v1/findings/f-3|Finding>"
    )
    assert blocks[4]["elements"][0]["text"] == (
        "Rules: checkout-latency, checkout-errors, checkout-throughput · Severity: 2 critical, 1 warning"
    )
    assert block_errors(blocks) == []


def test_twelve_alerts_show_ten_and_2_more() -> None:
    alerts = [
        alert(key=f"k{i:02}", operation=f"GET /items/{i}", started_at=ONSET + i, severity="warning") for i in range(12)
    ]
    text, blocks = alert_message(alerts, service="checkout", public_url=URL)

    assert len(blocks) == 1 + 10 + 1 + 1
    assert blocks[0]["text"]["text"] == "🟠 checkout: 12 alerts"
    sections = [b["text"]["text"] for b in blocks[1:11]]
    assert [s.splitlines()[0] for s in sections] == [
        f"🟠 *Latency p95 regression* on GET /items/{i}" for i in range(10)
    ]
    assert blocks[11]["text"]["text"] == (
        "…and 2 more: 🟠 Latency p95 regression on GET /items/10; 🟠 Latency p95 regression on GET /items/11"
    )
    assert blocks[12]["elements"][0]["text"] == "Rule: checkout-latency · Severity: 12 warning"
    assert text.startswith("🟠 checkout: 12 alerts: latency p95 regression on GET /items/0;")
    assert block_errors(blocks) == []


def test_outside_text_is_escaped_and_pings_no_one() -> None:
    hostile = alert(
        service="<!channel> & co",
        operation="<script>alert(1)</script>",
        summary="Errors in <@U123> & <!here> since <https://evil.example|login>",
        rule="a<b>&c",
        deploy_id="<!everyone>",
        unit="<b>",
        finding_id="f/<1>&2",
        exemplar_trace_ids=("<x>",),
    )
    text, blocks = alert_message([hostile], service=hostile.service, public_url=URL)

    seen = texts(blocks)
    assert blocks[0]["text"]["text"] == "🔴 &lt;!channel&gt; &amp; co: latency p95 regression"
    assert "on &lt;script&gt;alert(1)&lt;/script&gt;" in seen[1]
    assert "Errors in &lt;@U123&gt; &amp; &lt;!here&gt; since &lt;https://evil.example|login&gt;" in seen[1]
    assert "suspected deploy &lt;!everyone&gt;" in seen[1]
    assert "*180 &lt;b&gt; → 1,240 &lt;b&gt;*" in seen[1]
    assert seen[2] == "Rule: a&lt;b&gt;&amp;c · Severity: critical"
    # Path parts are URL-encoded, and & in a URL is escaped as everywhere else.
    assert "/services/%3C%21channel%3E%20%26%20co?start=" in seen[1]
    assert "/api/v1/findings/f%2F%3C1%3E%262|Finding>" in seen[1]
    assert "/traces/%3Cx%3E|Trace>" in seen[1]
    for shown in [text, *seen]:
        # The only markup left is the message's own links; every & starts an entity.
        bare = re.sub(r"<https://vigil\.example/[^<>|\s]+\|[A-Za-z]+>", "", shown)
        assert "<" not in bare and ">" not in bare, shown
        assert not re.search(r"&(?!amp;|lt;|gt;)", shown), shown
    assert all(b["text"].get("verbatim") for b in blocks if b["type"] == "section")


def test_limits_hold_for_huge_outside_text() -> None:
    huge = alert(
        service="s" * 5000,
        operation="<" * 5000,
        summary="&" * 10_000,
        rule="r" * 5000,
        deploy_id="d" * 5000,
        finding_id="f" * 5000,
    )
    alerts = [dataclasses.replace(huge, key=str(i), rule=f"{i}" + "r" * 5000) for i in range(60)]
    for message in (
        alert_message(alerts, service=huge.service, public_url=URL),
        resolved_message(alerts, service=huge.service, public_url=URL),
    ):
        text, blocks = message
        assert len(text) <= 3000
        assert block_errors(blocks) == []
        assert len(blocks) <= 50
        for shown in texts(blocks):
            assert not re.search(r"&(?!amp;|lt;|gt;)", shown.replace("&amp;", "")), "an entity was cut"
    _, reply = resolution_reply(alerts, public_url=URL)
    assert block_errors(reply) == []


def test_resolved_message_replaces_the_original() -> None:
    resolved = alert(state="resolved", ended_at=ONSET + 23 * 60 + 5)
    text, blocks = resolved_message([resolved], service="checkout", public_url=URL)

    assert text == "✅ checkout: latency p95 regression resolved after 23 min"
    assert blocks == [
        {"type": "header", "text": {"type": "plain_text", "text": "✅ checkout: latency p95 regression resolved"}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    "✅ *Latency p95 regression* on POST /checkout\n"
                    "p95 latency of POST /checkout is 6.9 times its baseline.\n"
                    "*180 ms → 1,240 ms* (6.9x) · 12:03 to 12:26 UTC (23 min) · suspected deploy v42\n"
                    "<https://vigil.example/services/checkout?start=1699961580&amp;end=1699965665|Dashboard>"
                    " · <https://vigil.example/api/v1/findings/f-1|Finding>"
                    f" · <https://vigil.example/traces/{TRACE}|Trace>"
                ),
                "verbatim": True,
            },
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "Rule: checkout-latency · Severity: critical", "verbatim": True}],
        },
    ]


def test_a_partly_resolved_cascade_says_so() -> None:
    alerts = cascade()
    alerts[0] = dataclasses.replace(alerts[0], state="resolved", ended_at=ONSET + 600)
    text, blocks = resolved_message(alerts, service="checkout", public_url=URL)

    assert blocks[0]["text"]["text"] == "🔴 checkout: 1 of 3 alerts resolved"
    assert text == "🔴 checkout: 1 of 3 alerts resolved after 10 min"
    assert [s["text"]["text"].splitlines()[0] for s in blocks[1:4]] == [
        "🔴 *Latency p95 regression* on POST /checkout",
        "🔴 *Error rate regression* on POST /pay",
        "✅ *Throughput regression*",
    ]
    assert "12:04 to 12:13 UTC (9 min)" in blocks[3]["text"]["text"]


def test_resolution_reply_for_one_alert() -> None:
    resolved = alert(state="resolved", ended_at=ONSET + 23 * 60 + 5)
    text, blocks = resolution_reply([resolved], public_url=URL)

    assert text == "Resolved after 23 min: latency p95 regression on POST /checkout"
    assert blocks == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    "✅ Resolved after *23 min*: latency p95 regression on POST /checkout"
                    " · <https://vigil.example/services/checkout?start=1699961580&amp;end=1699965665|Dashboard>"
                ),
                "verbatim": True,
            },
        }
    ]


def test_resolution_reply_for_a_cascade() -> None:
    ends = {"a1": ONSET + 41 * 60, "a2": ONSET + 30 * 60, "a3": ONSET + 20 * 60}
    alerts = [dataclasses.replace(a, state="resolved", ended_at=ends[a.key]) for a in cascade()]
    text, blocks = resolution_reply(alerts, public_url="")

    assert text == "Resolved after 41 min: 3 alerts on checkout"
    assert blocks == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": (
                    "✅ Resolved after *41 min*: 3 alerts on checkout\n"
                    "• Latency p95 regression on POST /checkout: 41 min\n"
                    "• Error rate regression on POST /pay: 28 min\n"
                    "• Throughput regression: 19 min"
                ),
                "verbatim": True,
            },
        }
    ]


def test_without_public_url_there_are_no_links() -> None:
    _, blocks = alert_message([alert()], service="checkout", public_url="")
    assert "<" not in json.dumps(blocks)
    assert blocks[1]["text"]["text"].endswith("since 12:03 UTC · suspected deploy v42")


def test_titles_follow_kind_and_signal() -> None:
    cases = {
        ("log_pattern", "new_pattern"): "new log pattern",
        ("network", "bits_per_second"): "traffic anomaly",
        ("network", "silent"): "exporter silent",
        ("replication_lag", "db.replication.lag_seconds"): "replication lag",
        ("slo_burn", "slo_burn_page"): "SLO burn (page)",
        ("monitor", "disk_full"): "disk full",
    }
    for (kind, signal), title in cases.items():
        _, blocks = alert_message([alert(kind=kind, signal=signal)], service="checkout", public_url=URL)
        assert blocks[0]["text"]["text"] == f"🔴 checkout: {title}"


def test_no_alerts_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one alert"):
        alert_message([], service="checkout", public_url=URL)


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (1240.4, "ms", "1,240 ms"),
        (12.6, "ms", "13 ms"),
        (2.54, "ms", "2.5 ms"),
        (0.354, "ms", "0.35 ms"),
        (0.0, "ms", "0 ms"),
        (0.0123, "ratio", "1.2%"),
        (0.25, "ratio", "25%"),
        (0.00012, "ratio", "0.012%"),
        (1_234_567.0, "requests/min", "1,234,567 requests/min"),
        (3.0, "lines/min", "3 lines/min"),
        (950.0, "bits/s", "950 bit/s"),
        (45_300.0, "bits/s", "45 kbit/s"),
        (1_234_567.0, "bits/s", "1.2 Mbit/s"),
        (2.5e9, "bits/s", "2.5 Gbit/s"),
        (4.2, "s", "4.2 s"),
        (125.0, "s", "2 min 5 s"),
        (120.0, "s", "2 min"),
        (3725.0, "s", "1 h 2 min"),
        (14.43, "x budget", "14.4x budget"),
        (2.0, "x budget", "2x budget"),
        (3.0, "", "3"),
        (float("nan"), "ms", "nan ms"),
    ],
)
def test_format_value(value: float, unit: str, shown: str) -> None:
    assert format_value(value, unit) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (59.4, "59 s"), (59.6, "1 min"), (23 * 60 + 29, "23 min"), (3600, "1 h"), (90_000, "1 d 1 h")],
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
