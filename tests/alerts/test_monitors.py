"""Monitors: a rule over a metric query becomes monitor findings, then an alert in Slack."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tests.metric_rows import metric_rows
from tests.slack_server import SlackServer
from vigil.alerts.engine import AlertEngine
from vigil.alerts.rules import parse_rules
from vigil.alerts.slack import SlackSender
from vigil.detectors.monitors import Monitors
from vigil.detectors.runner import DetectorRunner
from vigil.store.alerts import AlertStore
from vigil.store.client import Client
from vigil.store.findings import FindingQuery, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter

RULES = {
    "rules": [
        {
            "name": "replica-lag",
            "monitor": {
                "metric": "db.replication.lag_seconds",
                "agg": "max",
                "group_by": ["replica"],
                "condition": "> 30",
            },
            "for": "2m",
            "channels": ["#db"],
        },
        {"name": "everything-else", "severity": "warning"},
    ]
}


def test_a_monitor_rule_alerts_on_its_own_breaches_only() -> None:
    monitor, other = parse_rules(RULES)
    labels = {"kind": "monitor", "service": "", "severity": "warning", "operation": "replica-lag", "signal": "x"}
    assert monitor.matches(**labels)
    assert not other.matches(**labels)
    assert not monitor.matches(**(labels | {"kind": "service_regression"}))
    assert monitor.to_dict()["monitor"] == {
        "metric": "db.replication.lag_seconds",
        "agg": "max",
        "filter": {},
        "group_by": ["replica"],
        "condition": "> 30",
    }


@pytest.mark.parametrize(
    ("monitor", "message"),
    [
        ({"agg": "max", "condition": "> 1"}, "monitor needs a metric name"),
        ({"metric": "m", "agg": "median", "condition": "> 1"}, "monitor agg must be one of"),
        ({"metric": "m", "condition": "over 9000"}, "monitor condition must be like '> 30', '<= 0.5' or 'anomalous'"),
    ],
)
def test_invalid_monitors_are_refused(monitor: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_rules({"rules": [{"name": "m", "monitor": monitor}]})
    assert message in str(raised.value)


def test_a_breaching_replica_is_one_monitor_finding_and_one_slack_alert(chdb_client: Client, database: str) -> None:
    migrate(chdb_client, DdlContext(database=database))
    store = AlertStore(chdb_client, database)
    store.put_rules(RULES, "api")
    start = float(int(time.time()) // 60 * 60 - 3600)
    points = [
        {"service": "orders-db", "name": "db.replication.lag_seconds", "attributes": {"replica": replica},
         "time": start + 10 * i, "Value": (45.0 if replica == "db-2" and 120 <= i < 240 else 2.0)}
        for replica in ("db-1", "db-2")
        for i in range(360)
    ]  # fmt: skip
    StoreWriter(chdb_client, database).insert("metrics_gauge", metric_rows("metrics_gauge", points))

    findings = FindingStore(chdb_client, database)
    runner = DetectorRunner(Monitors(chdb_client, database), findings, grace=0.0, clock=lambda: start + 3600)
    runner.reset(start)
    runner.run()
    [finding] = findings.query(FindingQuery(since=0))
    assert (finding.kind, finding.service, finding.operation, finding.signal, finding.status) == (
        "monitor", "replica-lag", "replica-lag", "db.replication.lag_seconds", "closed",
    )  # fmt: skip
    # Breached from the minute of the first 45 s report until the minute it was back to 2 s.
    assert (finding.started_at, finding.ended_at) == (start + 1200, start + 2400)
    assert (
        finding.summary == "Monitor replica-lag: max db.replication.lag_seconds (replica=db-2) is 45, > 30 (worst 45)."
    )

    with SlackServer(token="xoxb-test") as slack:
        engine = AlertEngine(chdb_client, database, default_channel="#alerts", public_url="")
        sender = SlackSender(engine.store, token="xoxb-test", base_url=slack.api_url, sleep=lambda s: None)
        # Replay the alert rounds at the finding's open and close.
        findings.write([replace(finding, status="open", ended_at=None)])
        engine.evaluate(start + 1200 + 150)
        sender.deliver()
        findings.write([finding])
        engine.evaluate(start + 2400)
        sender.deliver()
        posts = [r for r in slack.calls("chat.postMessage") if "thread_ts" not in r.body]
        assert [(p.body["channel"], p.body["blocks"][0]["text"]["text"]) for p in posts] == [
            ("#db", "🟠 replica-lag: db.replication.lag seconds")
        ]
        assert len(slack.calls("chat.update")) == 1
