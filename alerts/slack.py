"""Delivery of the alert outbox to Slack, in order, at most one message per channel per second.

With a bot token (``VIGIL_SLACK_TOKEN``) a group's first notification is ``chat.postMessage``;
later ones update that message (``chat.update``) or reply in its thread (``thread_ts``). With only an
incoming webhook (``VIGIL_SLACK_WEBHOOK_URL``), every notification is a new message: webhooks cannot
update. slack-sdk's retry handlers wait out rate limits (HTTP 429 with Retry-After) and retry
dropped connections. A notification is marked sent only once Slack accepted it; one that fails
stays in the outbox with its error and attempt count, and its group's later notifications wait
behind it, so a Slack outage delays notifications, in order, and never drops one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from vigil.store.alerts import AlertGroup, AlertStore, Notification

__all__ = ["SlackSender"]

logger = logging.getLogger(__name__)

_TIMEOUT_S = 10


class _NotPostedYet(Exception):
    """An update or reply whose group's message Slack has not accepted yet."""


class SlackSender:
    def __init__(
        self,
        store: AlertStore,
        *,
        token: str = "",
        base_url: str = "https://slack.com/api/",
        webhook_url: str = "",
        per_channel_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token and not webhook_url:
            raise ValueError("a bot token or an incoming-webhook URL is needed")
        retries = [RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=2)]
        self.store = store
        self.client = (
            WebClient(token=token, base_url=base_url, timeout=_TIMEOUT_S, retry_handlers=retries) if token else None
        )
        self.webhook = WebhookClient(webhook_url, timeout=_TIMEOUT_S, retry_handlers=retries) if webhook_url else None
        self.per_channel_interval = per_channel_interval
        self.clock = clock
        self.sleep = sleep
        self._last_sent: dict[str, float] = {}

    def deliver(self) -> int:
        """Send what the outbox holds, oldest first; returns how many Slack accepted."""
        groups = {g.id: g for g in self.store.groups()}
        waiting: set[str] = set()  # groups with an earlier notification unsent: keep their order
        sent = 0
        for notification in self.store.unsent():
            if notification.group_id in waiting:
                continue
            try:
                where = self._send(notification, groups.get(notification.group_id))
            except _NotPostedYet:
                waiting.add(notification.group_id)
                continue
            except (SlackApiError, SlackClientError, OSError) as exc:
                error = exc.response.get("error", str(exc)) if isinstance(exc, SlackApiError) else str(exc)
                logger.warning("Slack did not take a notification for %s: %s", notification.channel, error)
                self.store.mark(replace(notification, attempts=notification.attempts + 1, error=str(error)[:500]))
                waiting.add(notification.group_id)
                if not isinstance(exc, SlackApiError):
                    break  # Slack unreachable: the rest would fail too; next round
                continue
            self.store.mark(replace(notification, sent_at=time.time(), ts=where, error=""))
            group = groups.get(notification.group_id)
            if notification.action == "post" and group is not None:
                groups[group.id] = replace(group, ts=where)
                self.store.write_groups([groups[group.id]])
            sent += 1
        return sent

    def _pace(self, channel: str) -> None:
        last = self._last_sent.get(channel)
        if last is not None:
            wait = self.per_channel_interval - (self.clock() - last)
            if wait > 0:
                self.sleep(wait)
        self._last_sent[channel] = self.clock()

    def _send(self, notification: Notification, group: AlertGroup | None) -> str:
        """Send one notification; returns where the message is, as "channel id/ts" ("" for webhooks)."""
        if self.client is None:
            assert self.webhook is not None
            self._pace(notification.channel)
            response = self.webhook.send(text=notification.text, blocks=notification.blocks)
            if response.status_code != 200:
                raise OSError(f"the webhook answered HTTP {response.status_code}: {response.body[:200]}")
            return ""
        if notification.action == "post":
            self._pace(notification.channel)
            posted = self.client.chat_postMessage(
                channel=notification.channel, text=notification.text, blocks=notification.blocks
            )
            return f"{posted['channel']}/{posted['ts']}"
        if group is None or not group.ts:
            raise _NotPostedYet
        channel_id, ts = group.ts.split("/", 1)
        self._pace(notification.channel)
        if notification.action == "update":
            self.client.chat_update(channel=channel_id, ts=ts, text=notification.text, blocks=notification.blocks)
            return group.ts
        reply = self.client.chat_postMessage(
            channel=channel_id, thread_ts=ts, text=notification.text, blocks=notification.blocks
        )
        return f"{reply['channel']}/{reply['ts']}"
