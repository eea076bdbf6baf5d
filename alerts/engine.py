"""The alert lifecycle: findings and rules in, alert states and Slack notifications (in the outbox) out.

Each round (`AlertEngine.evaluate`), for every finding that is open or recently closed and every
rule that matches it, one alert, keyed by (rule, finding):

- **pending** while the finding has been open for less than the rule's `for`;
- **firing** once it has; it then joins a *group*: the open group of its service and channel
  opened within `group_window` (a cascade becomes one Slack message, updated as alerts join), or a
  new one (a new message);
- **silenced** instead of firing while a silence matches its labels (kind, service, severity,
  rule, operation, signal); it fires when the silence ends and the finding is still open;
- **inhibited** instead of firing while an SLO page is firing for its service and the alert is
  less severe than critical: the page already says the service is in trouble;
- **resolved** when the finding closes: a firing alert's message is updated (all resolved: a
  resolved message plus a reply in its thread); a pending, silenced or inhibited one just ends.

Alert states, groups and notifications are stored (`vigil.store.alerts`), so a restart carries on
where it stopped; notification ids derive from (group, what changed), so deciding the same thing
twice writes one notification. Notifications are written before the states that caused them: a
crash between the two decides again and finds the notification already queued.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from clickhouse_connect.driver.client import Client

from vigil.alerts.rules import DEFAULT_RULES, SEVERITY_RANK, AlertRule, matching, parse_rules
from vigil.alerts.slack import SlackSender
from vigil.alerts.slack_message import AlertView, alert_message, resolution_reply, resolved_message
from vigil.self_metrics import AlertMetrics
from vigil.settings import Settings
from vigil.store.alerts import AlertGroup, AlertState, AlertStore, Notification, Silence
from vigil.store.findings import Finding, FindingQuery, FindingStore

__all__ = ["AlertEngine", "AlertLoop", "alert_key", "build_alert_loop"]

logger = logging.getLogger(__name__)

# Findings that closed longer ago than this are not looked at again.
_LOOKBACK_S = 86400.0


def _hash(*parts: str) -> str:
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=10).hexdigest()


def alert_key(rule: str, finding_id: str) -> str:
    return "a-" + _hash(rule, finding_id)


class AlertEngine:
    def __init__(
        self,
        client: Client,
        database: str,
        *,
        default_channel: str,
        public_url: str,
        group_window_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = AlertStore(client, database)
        self.findings = FindingStore(client, database)
        self.default_channel = default_channel
        self.public_url = public_url
        self.group_window_s = group_window_s
        self.clock = clock

    def rules(self) -> tuple[AlertRule, ...]:
        document = self.store.rules_document()
        return DEFAULT_RULES if document is None else parse_rules(document)

    def evaluate(self, now: float | None = None) -> int:
        """One round; returns how many notifications it queued."""
        now = self.clock() if now is None else now
        rules = self.rules()
        findings = {f.id: f for f in self.findings.query(FindingQuery(since=now - _LOOKBACK_S, limit=10_000))}
        alerts = {a.key: a for a in self.store.alerts(since=now - _LOOKBACK_S)}
        silences = [s for s in self.store.silences() if s.active(now)]
        paged = {
            f.service
            for f in findings.values()
            if f.kind == "slo_burn" and f.status == "open" and f.severity == "critical"
        }
        changed: dict[str, AlertState] = {}
        rule_of: dict[str, AlertRule] = {}
        for finding in findings.values():
            labels = {
                "kind": finding.kind,
                "service": finding.service,
                "severity": finding.severity,
                "operation": finding.operation,
                "signal": finding.signal,
            }
            for rule in matching(rules, **labels):
                key = alert_key(rule.name, finding.id)
                severity = rule.notify_severity or finding.severity
                alert = alerts.get(key) or AlertState(
                    key=key,
                    rule=rule.name,
                    severity=severity,
                    state="pending",
                    kind=finding.kind,
                    service=finding.service,
                    operation=finding.operation,
                    signal=finding.signal,
                    summary=finding.summary,
                    finding_id=finding.id,
                    started_at=finding.started_at,
                    channels=rule.channels or (self.default_channel,),
                )
                rule_of[key] = rule
                state = self._next_state(alert, finding, rule, now, silences, paged, labels | {"rule": rule.name})
                if state != alert.state or key not in alerts or alert.summary != finding.summary:
                    changed[key] = replace(
                        alert,
                        state=state,
                        severity=severity,
                        summary=finding.summary,
                        firing_at=now if state == "firing" and alert.firing_at is None else alert.firing_at,
                        resolved_at=now if state == "resolved" else alert.resolved_at,
                    )
        queued = self._notify(changed, alerts, findings, now)
        return queued + self._repeat(alerts, changed, rule_of, findings, now)

    def _repeat(
        self,
        alerts: dict[str, AlertState],
        changed: dict[str, AlertState],
        rule_of: dict[str, AlertRule],
        findings: dict[str, Finding],
        now: float,
    ) -> int:
        """A reply in the thread of each alert still firing `repeat` after it last notified."""
        due = [
            a
            for key, a in alerts.items()
            if key not in changed
            and a.state == "firing"
            and key in rule_of
            and rule_of[key].repeat_s > 0
            and a.notified_at is not None
            and now - a.notified_at >= rule_of[key].repeat_s
        ]
        groups = {g.id: g for g in self.store.groups(open_only=True)}
        notifications = []
        for alert in due:
            text, blocks = alert_message(
                [self._view(alert, findings)], service=alert.service, public_url=self.public_url
            )
            for group_id in alert.group_id.split(","):
                group = groups.get(group_id)
                if group is None:
                    continue
                notifications.append(
                    Notification(
                        id=_hash(group.id, "repeat", alert.key, str(alert.notified_at)),
                        group_id=group.id,
                        channel=group.channel,
                        action="reply",
                        text=f"Still firing: {text}",
                        blocks=blocks,
                        created_at=now,
                    )
                )
        fresh = [n for n in notifications if n.id not in self.store.notification_ids([n.id for n in notifications])]
        self.store.enqueue(fresh)
        self.store.write_alerts([replace(a, notified_at=now) for a in due])
        return len(fresh)

    def _next_state(
        self,
        alert: AlertState,
        finding: Finding,
        rule: AlertRule,
        now: float,
        silences: Sequence[Silence],
        paged: set[str],
        labels: dict[str, str],
    ) -> str:
        if alert.state == "resolved":
            return "resolved"
        if finding.status == "closed":
            return "resolved"
        if alert.state == "firing":
            return "firing"  # a firing alert stays in its message until resolved
        if now - finding.started_at < rule.for_s:
            return "pending"
        if any(s.silences(labels) for s in silences):
            return "silenced"
        severity = rule.notify_severity or finding.severity
        if (
            finding.service in paged
            and finding.kind != "slo_burn"
            and SEVERITY_RANK[severity] < SEVERITY_RANK["critical"]
        ):
            return "inhibited"
        return "firing"

    def _notify(
        self, changed: dict[str, AlertState], alerts: dict[str, AlertState], findings: dict[str, Finding], now: float
    ) -> int:
        groups = {g.id: g for g in self.store.groups(open_only=True)}
        # A stored group's message was posted (its post is queued in the round that opens it).
        posted = set(groups)
        touched: set[str] = set()
        for key, alert in list(changed.items()):
            before = alerts.get(key)
            if alert.state == "firing" and (before is None or before.state != "firing"):
                group_ids = []
                for channel in alert.channels:
                    group = self._group_for(groups, alert, channel, now)
                    groups[group.id] = replace(group, keys=(*group.keys, key))
                    group_ids.append(group.id)
                    touched.add(group.id)
                changed[key] = replace(alert, group_id=",".join(group_ids), notified_at=now)
            elif alert.state == "resolved" and before is not None and before.state == "firing":
                touched.update(g for g in before.group_id.split(",") if g)
        everything = alerts | changed
        notifications: list[Notification] = []
        for group_id in sorted(touched):
            group = groups[group_id]
            members = [everything[k] for k in group.keys if k in everything]
            views = [self._view(a, findings) for a in members]
            all_resolved = all(a.state == "resolved" for a in members)
            if all_resolved:
                text, blocks = resolved_message(views, service=group.service, public_url=self.public_url)
                notifications.append(self._notification(group, "update", text, blocks, now, members))
                reply_text, reply_blocks = resolution_reply(views, public_url=self.public_url)
                notifications.append(self._notification(group, "reply", reply_text, reply_blocks, now, members))
                groups[group_id] = replace(group, resolved=True)
            else:
                text, blocks = alert_message(views, service=group.service, public_url=self.public_url)
                action = "update" if group.id in posted else "post"
                notifications.append(self._notification(group, action, text, blocks, now, members))
        # The outbox is sent in CreatedAt order: a group's update before its reply, as decided.
        notifications = [replace(n, created_at=now + i / 1000) for i, n in enumerate(notifications)]
        fresh = [n for n in notifications if n.id not in self.store.notification_ids([n.id for n in notifications])]
        # Order matters for a crash: the outbox first, then what caused it.
        self.store.enqueue(fresh)
        self.store.write_groups([groups[g] for g in sorted(touched)])
        self.store.write_alerts(list(changed.values()))
        return len(fresh)

    def _group_for(self, groups: dict[str, AlertGroup], alert: AlertState, channel: str, now: float) -> AlertGroup:
        for group in groups.values():
            if (
                group.service == alert.service
                and group.channel == channel
                and now - group.opened_at < self.group_window_s
            ):
                return group
        # Named after the alert that opens it: deciding again after a crash opens the same group,
        # whose post is then already in the outbox.
        group = AlertGroup(
            id="g-" + _hash(alert.service, channel, alert.key),
            service=alert.service,
            channel=channel,
            opened_at=now,
            keys=(),
        )
        groups[group.id] = group
        return group

    def _notification(
        self,
        group: AlertGroup,
        action: str,
        text: str,
        blocks: list[dict[str, object]],
        now: float,
        members: list[AlertState],
    ) -> Notification:
        # A post is once per group; an update or reply is once per state of the group's alerts.
        version = "" if action == "post" else "|".join(f"{a.key}:{a.state}" for a in members)
        return Notification(
            id=_hash(group.id, action) if action == "post" else _hash(group.id, action, version),
            group_id=group.id,
            channel=group.channel,
            action=action,
            text=text,
            blocks=blocks,
            created_at=now,
        )

    def _view(self, alert: AlertState, findings: dict[str, Finding]) -> AlertView:
        finding = findings.get(alert.finding_id) or self.findings.get(alert.finding_id)
        return AlertView(
            key=alert.key,
            rule=alert.rule,
            severity=alert.severity,
            state="resolved" if alert.state == "resolved" else "firing",
            kind=alert.kind,
            service=alert.service,
            operation=alert.operation,
            signal=alert.signal,
            summary=alert.summary,
            started_at=alert.started_at,
            ended_at=finding.ended_at if finding else alert.resolved_at,
            baseline=finding.baseline if finding else 0.0,
            observed=finding.observed if finding else 0.0,
            unit=finding.unit if finding else "",
            deploy_id=finding.deploy_id if finding else "",
            exemplar_trace_ids=tuple(finding.exemplar_trace_ids) if finding else (),
            finding_id=alert.finding_id,
        )


class AlertLoop:
    """Evaluates alerts and delivers the outbox every `interval` seconds, in a thread, until stopped."""

    def __init__(
        self,
        engine: AlertEngine,
        deliver: Callable[[], object] | None,
        *,
        interval: float,
        metrics: AlertMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.deliver = deliver
        self.interval = interval
        # Vigil's /metrics: the outbox's undelivered notifications, counted after each round.
        self.metrics = metrics or AlertMetrics()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self.engine.evaluate()
        except Exception:
            logger.exception("alert evaluation failed; retrying next round")
        if self.deliver is not None:
            try:
                self.deliver()
            except Exception:
                logger.exception("alert delivery failed; the outbox keeps the notifications")
        try:
            self.metrics.outbox(*self.engine.store.outbox_backlog())
        except Exception:
            logger.exception("counting the undelivered notifications failed; retrying next round")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.metrics.forget()


def build_alert_loop(
    settings: Settings, client: Client, database: str, metrics: AlertMetrics | None = None
) -> AlertLoop:
    """Alerts as `settings` ask: evaluated every interval, delivered to Slack when it is configured."""
    engine = AlertEngine(
        client,
        database,
        default_channel=settings.slack_channel,
        public_url=settings.public_url,
        group_window_s=settings.alert_group_window,
    )
    sender = None
    if settings.slack_token or settings.slack_webhook_url:
        sender = SlackSender(
            engine.store,
            token=settings.slack_token,
            base_url=settings.slack_base_url,
            webhook_url=settings.slack_webhook_url,
        )
    return AlertLoop(engine, sender.deliver if sender else None, interval=settings.alert_interval, metrics=metrics)
