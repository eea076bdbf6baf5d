"""Alert state, notification groups, the Slack outbox, silences and the current rule set.

Every table is a ReplacingMergeTree rewritten whole with a newer `UpdatedAt`; reads use FINAL.
The outbox is what makes delivery durable: a notification is a row before anything is sent, is
marked sent (with Slack's message ts) only after Slack accepted it, and a sender that died or a
Slack that was down leaves it to be sent later, in order. Row ids are derived from what they are
about, so re-deciding the same thing after a restart rewrites the same row instead of adding one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from vigil.errors import StoreUnavailable

__all__ = ["AlertGroup", "AlertState", "AlertStore", "Notification", "Silence"]


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@dataclass(frozen=True, slots=True)
class AlertState:
    key: str  # hash of (rule, finding id)
    rule: str
    severity: str
    state: str  # pending | firing | resolved | silenced | inhibited
    kind: str
    service: str
    operation: str
    signal: str
    summary: str
    finding_id: str
    started_at: float
    channels: tuple[str, ...]
    firing_at: float | None = None
    resolved_at: float | None = None
    group_id: str = ""
    notified_at: float | None = None


@dataclass(frozen=True, slots=True)
class AlertGroup:
    """One Slack message: the alerts of one service on one channel that fired close together."""

    id: str
    service: str
    channel: str
    opened_at: float
    keys: tuple[str, ...]
    ts: str = ""  # Slack's id of the message, once posted
    resolved: bool = False


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    group_id: str
    channel: str
    action: str  # post | update | reply
    text: str
    blocks: list[dict[str, Any]]
    created_at: float
    sent_at: float | None = None
    ts: str = ""
    attempts: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: dict[str, str]  # label -> exact value: kind, service, severity, rule, operation, signal
    author: str
    comment: str
    starts_at: float
    ends_at: float
    created_at: float = field(default_factory=time.time)

    def active(self, at: float) -> bool:
        return self.starts_at <= at < self.ends_at

    def silences(self, labels: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.matchers.items())


class AlertStore:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        self._last = 0.0

    def _now(self) -> datetime:
        # Strictly increasing versions, so two rewrites within a millisecond keep their order.
        now = max(time.time(), self._last + 0.001)
        self._last = now
        return datetime.fromtimestamp(now, UTC)

    def _insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        try:
            self.client.insert(f"{self.database}.{table}", list(rows), column_names=list(columns))
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse did not accept {len(rows)} rows for {table}: {exc}") from exc

    # -- alerts ---------------------------------------------------------------------------------

    _ALERT_COLUMNS = (
        "Key",
        "Rule",
        "Severity",
        "State",
        "Kind",
        "ServiceName",
        "Operation",
        "Signal",
        "Summary",
        "FindingId",
        "StartedAt",
        "Channels",
        "FiringAt",
        "ResolvedAt",
        "GroupId",
        "NotifiedAt",
        "UpdatedAt",
    )

    def write_alerts(self, alerts: Sequence[AlertState]) -> None:
        rows = [
            [
                a.key,
                a.rule,
                a.severity,
                a.state,
                a.kind,
                a.service,
                a.operation,
                a.signal,
                a.summary,
                a.finding_id,
                _utc(a.started_at),
                list(a.channels),
                _utc(a.firing_at),
                _utc(a.resolved_at),
                a.group_id,
                _utc(a.notified_at),
                self._now(),
            ]
            for a in alerts
        ]
        self._insert("alerts", rows, self._ALERT_COLUMNS)

    def alerts(self, *, states: Sequence[str] | None = None, since: float | None = None) -> list[AlertState]:
        where = ["1"]
        params: dict[str, Any] = {}
        if states is not None:
            where.append("State IN {states:Array(String)}")
            params["states"] = list(states)
        if since is not None:
            where.append("(ResolvedAt IS NULL OR ResolvedAt >= toDateTime64({since:Float64}, 3))")
            params["since"] = since
        rows = self.client.query(
            f"SELECT {', '.join(self._ALERT_COLUMNS[:-1])} FROM {self.database}.alerts FINAL "
            f"WHERE {' AND '.join(where)} ORDER BY StartedAt DESC, Key",
            parameters=params,
        ).result_rows
        return [
            AlertState(
                key=r[0],
                rule=r[1],
                severity=r[2],
                state=r[3],
                kind=r[4],
                service=r[5],
                operation=r[6],
                signal=r[7],
                summary=r[8],
                finding_id=r[9],
                started_at=float(r[10].timestamp()),
                channels=tuple(r[11]),
                firing_at=_seconds(r[12]),
                resolved_at=_seconds(r[13]),
                group_id=r[14],
                notified_at=_seconds(r[15]),
            )
            for r in rows
        ]

    # -- groups ---------------------------------------------------------------------------------

    def write_groups(self, groups: Sequence[AlertGroup]) -> None:
        rows = [
            [g.id, g.service, g.channel, _utc(g.opened_at), list(g.keys), g.ts, int(g.resolved), self._now()]
            for g in groups
        ]
        self._insert(
            "alert_groups", rows, ("Id", "ServiceName", "Channel", "OpenedAt", "Keys", "Ts", "Resolved", "UpdatedAt")
        )

    def groups(self, *, open_only: bool = False) -> list[AlertGroup]:
        where = "WHERE Resolved = 0" if open_only else ""
        rows = self.client.query(
            f"SELECT Id, ServiceName, Channel, OpenedAt, Keys, Ts, Resolved FROM {self.database}.alert_groups FINAL "
            f"{where} ORDER BY OpenedAt"
        ).result_rows
        return [
            AlertGroup(
                id=r[0],
                service=r[1],
                channel=r[2],
                opened_at=float(r[3].timestamp()),
                keys=tuple(r[4]),
                ts=r[5],
                resolved=bool(r[6]),
            )
            for r in rows
        ]

    # -- outbox ---------------------------------------------------------------------------------

    _OUTBOX_COLUMNS = (
        "Id",
        "GroupId",
        "Channel",
        "Action",
        "Text",
        "Blocks",
        "CreatedAt",
        "SentAt",
        "Ts",
        "Attempts",
        "Error",
        "UpdatedAt",
    )

    def enqueue(self, notifications: Sequence[Notification]) -> None:
        self._write_notifications(notifications)

    def _write_notifications(self, notifications: Sequence[Notification]) -> None:
        rows = [
            [
                n.id,
                n.group_id,
                n.channel,
                n.action,
                n.text,
                json.dumps(n.blocks),
                _utc(n.created_at),
                _utc(n.sent_at),
                n.ts,
                n.attempts,
                n.error,
                self._now(),
            ]
            for n in notifications
        ]
        self._insert("alert_outbox", rows, self._OUTBOX_COLUMNS)

    def mark(self, notification: Notification) -> None:
        self._write_notifications([notification])

    def notification_ids(self, ids: Sequence[str]) -> set[str]:
        rows = self.client.query(
            f"SELECT Id FROM {self.database}.alert_outbox FINAL WHERE Id IN {{ids:Array(String)}}",
            parameters={"ids": list(ids)},
        ).result_rows
        return {row[0] for row in rows}

    def unsent(self) -> list[Notification]:
        """Notifications not yet accepted by Slack, oldest first."""
        return self._notifications("SentAt IS NULL")

    def outbox_backlog(self) -> tuple[int, float | None]:
        """How many notifications Slack has not accepted yet, and when the oldest was queued (unix seconds)."""
        count, oldest = self.client.query(
            f"SELECT count(), min(CreatedAt) FROM {self.database}.alert_outbox FINAL WHERE SentAt IS NULL"
        ).result_rows[0]
        return int(count), float(oldest.timestamp()) if count else None

    def notifications(self) -> list[Notification]:
        return self._notifications("1")

    def _notifications(self, where: str) -> list[Notification]:
        rows = self.client.query(
            f"SELECT {', '.join(self._OUTBOX_COLUMNS[:-1])} FROM {self.database}.alert_outbox FINAL "
            f"WHERE {where} ORDER BY CreatedAt, Id"
        ).result_rows
        return [
            Notification(
                id=r[0],
                group_id=r[1],
                channel=r[2],
                action=r[3],
                text=r[4],
                blocks=json.loads(r[5]),
                created_at=float(r[6].timestamp()),
                sent_at=_seconds(r[7]),
                ts=r[8],
                attempts=int(r[9]),
                error=r[10],
            )
            for r in rows
        ]

    # -- silences -------------------------------------------------------------------------------

    def write_silence(self, silence: Silence) -> None:
        row = [
            silence.id,
            json.dumps(silence.matchers, sort_keys=True),
            silence.author,
            silence.comment,
            _utc(silence.starts_at),
            _utc(silence.ends_at),
            _utc(silence.created_at),
            self._now(),
        ]
        self._insert(
            "silences", [row], ("Id", "Matchers", "Author", "Comment", "StartsAt", "EndsAt", "CreatedAt", "UpdatedAt")
        )

    def silences(self) -> list[Silence]:
        rows = self.client.query(
            f"SELECT Id, Matchers, Author, Comment, StartsAt, EndsAt, CreatedAt FROM {self.database}.silences FINAL "
            "ORDER BY CreatedAt DESC"
        ).result_rows
        return [
            Silence(
                id=r[0],
                matchers=json.loads(r[1]),
                author=r[2],
                comment=r[3],
                starts_at=float(r[4].timestamp()),
                ends_at=float(r[5].timestamp()),
                created_at=float(r[6].timestamp()),
            )
            for r in rows
        ]

    # -- rules ----------------------------------------------------------------------------------

    def put_rules(self, document: dict[str, Any], source: str) -> None:
        self._insert(
            "alert_rules",
            [["current", json.dumps(document), source, self._now()]],
            ("Name", "Document", "Source", "UpdatedAt"),
        )

    def rules_document(self) -> dict[str, Any] | None:
        rows = self.client.query(
            f"SELECT Document FROM {self.database}.alert_rules FINAL WHERE Name = 'current'"
        ).result_rows
        return json.loads(rows[0][0]) if rows else None
