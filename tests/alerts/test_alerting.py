"""The alert lifecycle and its Slack delivery, against real ClickHouse and a local Slack Web API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.slack_server import SlackServer
from vigil.alerts.engine import AlertEngine
from vigil.alerts.slack import SlackSender
from vigil.alerts.slack_message import AlertView, alert_message, resolution_reply, resolved_message
from vigil.store.alerts import AlertStore, Silence
from vigil.store.client import Client
from vigil.store.findings import Finding, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

T0 = 1_795_000_000.0
PUBLIC = "https://vigil.example.com"


def finding(
    name: str, *, service: str = "checkout", severity: str = "warning", started: float = T0, **extra: Any
) -> Finding:
    fields: dict[str, Any] = {
        "id": f"f-{name}",
        "kind": "service_regression",
        "service": service,
        "operation": "POST /pay",
        "signal": name,
        "series": f"[{service!r},{name!r}]",
        "started_at": started,
        "ended_at": None,
        "status": "open",
        "severity": severity,
        "score": 0.9,
        "baseline": 180.0,
        "observed": 1240.0,
        "unit": "ms",
        "summary": f"{name} rose from 180 ms to 1,240 ms.",
        "deploy_id": "d-42",
        "exemplar_trace_ids": ("0af7651916cd43dd8448eb211c80319c",),
    }
    return Finding(**(fields | extra))


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer(token="xoxb-test") as server:
        yield server


class Rig:
    """Findings written as the detectors would, an alert engine and a sender on a fake clock."""

    def __init__(self, client: Client, database: str, slack: SlackServer) -> None:
        migrate(client, DdlContext(database=database))
        self.client, self.database, self.slack = client, database, slack
        self.findings = FindingStore(client, database)
        self.store = AlertStore(client, database)
        self.now = T0

    def engine(self) -> AlertEngine:
        return AlertEngine(
            self.client, self.database, default_channel="#alerts", public_url=PUBLIC, clock=lambda: self.now
        )

    def sender(self) -> SlackSender:
        return SlackSender(self.store, token="xoxb-test", base_url=self.slack.api_url, sleep=lambda s: None)

    def round(self, at: float) -> int:
        self.now = at
        queued = self.engine().evaluate()
        self.sender().deliver()
        return queued


@pytest.fixture
def rig(chdb_client: Client, database: str, slack: SlackServer) -> Rig:
    return Rig(chdb_client, database, slack)


def view(f: Finding, *, state: str = "firing", rule: str = "default", ended: float | None = None) -> AlertView:
    from vigil.alerts.engine import alert_key

    return AlertView(
        key=alert_key(rule, f.id), rule=rule, severity=f.severity, state=state, kind=f.kind, service=f.service,
        operation=f.operation, signal=f.signal, summary=f.summary, started_at=f.started_at, ended_at=ended,
        baseline=f.baseline, observed=f.observed, unit=f.unit, deploy_id=f.deploy_id,
        exemplar_trace_ids=f.exemplar_trace_ids, finding_id=f.id,
    )  # fmt: skip


def test_a_finding_is_one_slack_message_updated_and_answered_in_its_thread_when_it_resolves(rig: Rig) -> None:
    latency = finding("latency_p95")
    rig.findings.write([latency])
    assert rig.round(T0 + 30) == 1

    (post,) = rig.slack.calls("chat.postMessage")
    text, blocks = alert_message([view(latency)], service="checkout", public_url=PUBLIC)
    assert post.body["channel"] == "#alerts"
    assert (post.body["text"], post.body["blocks"]) == (text, blocks)
    assert text == "🟠 checkout: latency p95 regression on POST /pay: 180 ms → 1,240 ms since 11:06 UTC"
    assert [a.state for a in rig.store.alerts()] == ["firing"]

    # Nothing changed: nothing more is sent.
    assert rig.round(T0 + 60) == 0
    assert len(rig.slack.requests) == 1

    closed = replace(latency, status="closed", ended_at=T0 + 600)
    rig.findings.write([closed])
    assert rig.round(T0 + 630) == 2
    (update,) = rig.slack.calls("chat.update")
    ts = post.response["ts"]
    resolved_text, resolved_blocks = resolved_message(
        [view(closed, state="resolved", ended=T0 + 600)], service="checkout", public_url=PUBLIC
    )
    assert (update.body["ts"], update.body["text"], update.body["blocks"]) == (ts, resolved_text, resolved_blocks)
    (reply,) = rig.slack.replies("#alerts", ts)
    assert reply["text"] == resolution_reply([view(closed, state="resolved", ended=T0 + 600)], public_url=PUBLIC)[0]
    assert [a.state for a in rig.store.alerts()] == ["resolved"]
    assert rig.round(T0 + 700) == 0


def test_a_cascade_of_one_service_is_one_message_that_grows(rig: Rig) -> None:
    rig.findings.write([finding("latency_p95")])
    rig.round(T0 + 30)
    rig.findings.write([finding("latency_p99", started=T0 + 40), finding("error_rate", started=T0 + 50)])
    rig.round(T0 + 60)
    rig.findings.write([finding("other", service="search", started=T0 + 60)])
    rig.round(T0 + 90)

    # checkout's cascade is one message, posted and then updated; search's is another.
    assert [(r.method, r.body["blocks"][0]["text"]["text"]) for r in rig.slack.requests] == [
        ("chat.postMessage", "🟠 checkout: latency p95 regression"),
        ("chat.update", "🟠 checkout: 3 alerts"),
        ("chat.postMessage", "🟠 search: other regression"),
    ]
    posts, (update,) = rig.slack.calls("chat.postMessage"), rig.slack.calls("chat.update")
    assert update.body["ts"] == posts[0].response["ts"]


def test_a_rule_waits_for_its_for_duration_and_routes_to_its_channel(rig: Rig) -> None:
    rig.store.put_rules(
        {"rules": [{"name": "pay", "services": ["checkout"], "for": "2m", "channels": ["#pay"]}]}, "api"
    )
    rig.findings.write([finding("latency_p95")])
    rig.round(T0 + 60)
    assert [a.state for a in rig.store.alerts()] == ["pending"]
    assert rig.slack.requests == []
    rig.round(T0 + 121)
    (post,) = rig.slack.calls("chat.postMessage")
    assert post.body["channel"] == "#pay"


def test_a_pending_alert_whose_finding_closes_never_notifies(rig: Rig) -> None:
    rig.store.put_rules({"rules": [{"name": "slow", "for": "5m"}]}, "api")
    f = finding("latency_p95")
    rig.findings.write([f])
    rig.round(T0 + 60)
    rig.findings.write([replace(f, status="closed", ended_at=T0 + 120)])
    rig.round(T0 + 150)
    assert rig.slack.requests == []
    assert [a.state for a in rig.store.alerts()] == ["resolved"]


def test_a_silence_holds_an_alert_back_until_it_expires(rig: Rig) -> None:
    rig.store.write_silence(
        Silence(
            id="s-1",
            matchers={"service": "checkout"},
            author="ann",
            comment="deploying",
            starts_at=T0,
            ends_at=T0 + 300,
        )
    )
    rig.findings.write([finding("latency_p95")])
    rig.round(T0 + 30)
    assert [a.state for a in rig.store.alerts()] == ["silenced"]
    assert rig.slack.requests == []
    rig.round(T0 + 301)
    assert len(rig.slack.calls("chat.postMessage")) == 1
    assert [a.state for a in rig.store.alerts()] == ["firing"]


def test_an_slo_page_inhibits_the_services_lesser_alerts(rig: Rig) -> None:
    page = finding("slo_burn_page", severity="critical", kind="slo_burn", operation="checkout-availability")
    rig.findings.write([page, finding("latency_p95")])
    rig.round(T0 + 30)
    states = {a.signal: a.state for a in rig.store.alerts()}
    assert states == {"slo_burn_page": "firing", "latency_p95": "inhibited"}
    # One message: the page; the latency alert would only repeat that checkout is in trouble.
    assert [r.body["blocks"][0]["text"]["text"] for r in rig.slack.requests] == ["🔴 checkout: SLO burn (page)"]


def test_a_slack_outage_delays_notifications_in_order_and_loses_or_doubles_none(rig: Rig) -> None:
    f = finding("latency_p95")
    rig.findings.write([f])
    rig.slack.down()
    rig.round(T0 + 30)
    rig.findings.write([replace(f, status="closed", ended_at=T0 + 60)])
    rig.round(T0 + 90)
    assert rig.slack.calls("chat.update") == [] and len(rig.store.unsent()) == 3
    # The post was tried in each round; the update and reply wait behind it, untried.
    assert [(n.action, n.attempts) for n in rig.store.unsent()] == [("post", 2), ("update", 0), ("reply", 0)]
    assert rig.store.unsent()[0].error == "Remote end closed connection without response"

    rig.slack.up()
    rig.sender().deliver()
    methods = [r.method for r in rig.slack.requests if r.status == 200]
    assert methods == ["chat.postMessage", "chat.update", "chat.postMessage"]
    assert rig.store.unsent() == []
    rig.sender().deliver()
    assert [r.method for r in rig.slack.requests if r.status == 200] == methods


def test_a_rate_limited_post_is_retried_after_retry_after_and_sent_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slack_sdk.http_retry.builtin_handlers as handlers

    waits: list[float] = []
    monkeypatch.setattr(handlers.time, "sleep", waits.append)
    rig.slack.fail_next(1, status=429, retry_after=2)
    rig.findings.write([finding("latency_p95")])
    rig.round(T0 + 30)
    assert [r.status for r in rig.slack.calls("chat.postMessage")] == [429, 200]
    assert waits and 2 <= waits[0] <= 3
    assert rig.store.unsent() == []


def test_a_restarted_engine_decides_the_same_and_sends_nothing_twice(rig: Rig) -> None:
    rig.findings.write([finding("latency_p95")])
    rig.round(T0 + 30)
    rig.round(T0 + 40)  # a fresh engine and sender each round, as after a restart
    assert len(rig.slack.calls("chat.postMessage")) == 1
    assert len(rig.store.notifications()) == 1


def test_a_firing_alert_is_repeated_in_its_thread_every_repeat_interval(rig: Rig) -> None:
    rig.store.put_rules({"rules": [{"name": "loud", "repeat": "1h"}]}, "api")
    rig.findings.write([finding("latency_p95")])
    rig.round(T0 + 30)
    rig.round(T0 + 1800)
    assert len(rig.slack.requests) == 1
    rig.round(T0 + 3630)
    rig.round(T0 + 3700)
    (post,) = rig.slack.calls("chat.postMessage")[:1]
    replies = rig.slack.replies("#alerts", post.response["ts"])
    assert [r["text"].split(":")[0] for r in replies] == ["Still firing"]


def test_an_incoming_webhook_gets_each_notification_as_a_new_message(rig: Rig) -> None:
    f = finding("latency_p95")
    rig.findings.write([f])
    webhook = SlackSender(rig.store, webhook_url=rig.slack.webhook_url, sleep=lambda s: None)
    rig.now = T0 + 30
    rig.engine().evaluate()
    assert webhook.deliver() == 1
    rig.findings.write([replace(f, status="closed", ended_at=T0 + 60)])
    rig.now = T0 + 90
    rig.engine().evaluate()
    assert webhook.deliver() == 2
    calls = rig.slack.calls("webhook")
    text, blocks = alert_message([view(f)], service="checkout", public_url=PUBLIC)
    assert (calls[0].body["text"], calls[0].body["blocks"]) == (text, blocks)
    resolved = [view(f, state="resolved", ended=T0 + 60)]
    assert [(c.body["text"], c.body["blocks"]) for c in calls[1:]] == [
        resolved_message(resolved, service="checkout", public_url=PUBLIC),
        resolution_reply(resolved, public_url=PUBLIC),
    ]
    assert rig.store.unsent() == []


def test_one_channel_gets_at_most_one_message_a_second(rig: Rig) -> None:
    rig.findings.write([finding("latency_p95"), finding("other", service="search")])
    rig.now = T0 + 30
    rig.engine().evaluate()
    clock = [100.0]
    waits: list[float] = []
    sender = SlackSender(
        rig.store, token="xoxb-test", base_url=rig.slack.api_url, clock=lambda: clock[0], sleep=waits.append
    )
    assert sender.deliver() == 2  # two services: two messages, both to #alerts
    assert waits == [1.0]  # the second waited out the rest of the first's second


def test_a_crash_after_queueing_a_post_does_not_queue_a_second_one(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.findings.write([finding("latency_p95")])
    crashing = rig.engine()

    def crash(groups: object) -> None:
        raise RuntimeError("killed between the outbox and the state")

    monkeypatch.setattr(crashing.store, "write_groups", crash)
    with pytest.raises(RuntimeError):
        crashing.evaluate(T0 + 30)
    rig.round(T0 + 40)  # a fresh engine decides again
    assert [n.action for n in rig.store.notifications()] == ["post"]
    assert len(rig.slack.calls("chat.postMessage")) == 1
