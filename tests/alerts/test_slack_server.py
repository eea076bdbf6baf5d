"""The local Slack against the real slack-sdk clients: what they send and what they get back."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler, builtin_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from tests.alerts.test_slack_message import ONSET, alert
from tests.slack_server import SlackServer
from vigil.alerts.slack_message import alert_message, resolution_reply, resolved_message

TOKEN = "xoxb-test"
URL = "https://vigil.example"


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    with SlackServer(token=TOKEN) as server:
        yield server


def client(slack: SlackServer, retry_handlers: list[RetryHandler] | None = None) -> WebClient:
    # No retries unless a test asks for them: a failure shows as it is.
    return WebClient(token=TOKEN, base_url=slack.api_url, timeout=5, retry_handlers=retry_handlers or [])


def test_auth_test(slack: SlackServer) -> None:
    answer = client(slack).auth_test()

    assert answer.data == {
        "ok": True,
        "url": "https://vigil-test.slack.com/",
        "team": "Vigil Test",
        "user": "vigil",
        "team_id": "T1",
        "user_id": "U1",
        "bot_id": "B1",
        "is_enterprise_install": False,
    }
    [request] = slack.requests
    assert (request.method, request.path, request.status) == ("auth.test", "/api/auth.test", 200)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_auth_test_with_another_token_or_none(slack: SlackServer) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-other", base_url=slack.api_url, retry_handlers=[]).auth_test()
    assert wrong.value.response.status_code == 200
    assert wrong.value.response.data == {"ok": False, "error": "invalid_auth"}

    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=slack.api_url, retry_handlers=[]).auth_test()
    assert missing.value.response["error"] == "not_authed"


def test_post_update_and_reply_as_slack_sdk_sends_them(slack: SlackServer) -> None:
    web = client(slack)
    firing = alert()
    text, blocks = alert_message([firing], service="checkout", public_url=URL)

    posted = web.chat_postMessage(channel="#alerts", text=text, blocks=blocks)
    channel, ts = posted["channel"], posted["ts"]
    assert (channel, ts) == (slack.channel_id("alerts"), "1700000000.000100")
    assert channel.startswith("C")

    resolved = alert(state="resolved", ended_at=ONSET + 23 * 60)
    new_text, new_blocks = resolved_message([resolved], service="checkout", public_url=URL)
    updated = web.chat_update(channel=channel, ts=ts, text=new_text, blocks=new_blocks)
    assert (updated["channel"], updated["ts"], updated["text"]) == (channel, ts, new_text)

    reply_text, reply_blocks = resolution_reply([resolved], public_url=URL)
    reply = web.chat_postMessage(channel=channel, text=reply_text, blocks=reply_blocks, thread_ts=ts)
    assert reply["ts"] == "1700000000.000300"  # the update's edit took .000200

    # slack-sdk sends the chat methods as JSON, blocks as a JSON array in the body.
    post, update, thread = slack.requests
    assert [r.method for r in (post, update, thread)] == ["chat.postMessage", "chat.update", "chat.postMessage"]
    assert all(r.headers["Content-Type"] == "application/json;charset=utf-8" for r in (post, update, thread))
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in (post, update, thread))
    assert post.body == {"channel": "#alerts", "text": text, "blocks": blocks}
    assert update.body == {"channel": channel, "ts": ts, "text": new_text, "blocks": new_blocks}
    assert thread.body == {"channel": channel, "text": reply_text, "blocks": reply_blocks, "thread_ts": ts}

    bot = {"type": "message", "user": "U1", "bot_id": "B1", "app_id": "A1", "team": "T1"}
    assert slack.messages == {
        (channel, ts): bot
        | {
            "text": new_text,
            "ts": ts,
            "blocks": new_blocks,
            "edited": {"user": "U1", "ts": "1700000000.000200"},
            "thread_ts": ts,
            "reply_count": 1,
            "latest_reply": "1700000000.000300",
        },
        (channel, "1700000000.000300"): bot
        | {"text": reply_text, "ts": "1700000000.000300", "blocks": reply_blocks, "thread_ts": ts},
    }
    assert [m["text"] for m in slack.replies("#alerts", ts)] == [reply_text]


def test_form_encoded_blocks_are_decoded(slack: SlackServer) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    # api_call with params sends a form, as older clients and curl do.
    client(slack).api_call("chat.postMessage", params={"channel": "C0ALERTS01", "blocks": json.dumps(blocks)})

    [request] = slack.requests
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body == {"channel": "C0ALERTS01", "blocks": blocks}
    assert slack.message("C0ALERTS01", "1700000000.000100")["blocks"] == blocks


def test_update_needs_a_posted_message_and_the_channel_id(slack: SlackServer) -> None:
    web = client(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "firing"}}]
    posted = web.chat_postMessage(channel="alerts", text="firing", blocks=blocks)

    with pytest.raises(SlackApiError) as unknown_ts:
        web.chat_update(channel=posted["channel"], ts="1699999999.000100", text="resolved")
    assert unknown_ts.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as by_name:
        web.chat_update(channel="#alerts", ts=posted["ts"], text="resolved")
    assert by_name.value.response["error"] == "channel_not_found"
    # Text alone keeps the blocks; an empty list removes them.
    web.chat_update(channel=posted["channel"], ts=posted["ts"], text="resolved")
    assert slack.message("alerts", posted["ts"])["blocks"] == blocks
    web.chat_update(channel=posted["channel"], ts=posted["ts"], text="resolved", blocks=[])
    assert slack.calls("chat.update")[-1].body["blocks"] == []
    assert "blocks" not in slack.message("alerts", posted["ts"])


def test_channel_errors(slack: SlackServer) -> None:
    web = client(slack)
    slack.set_channel_error("#private", "not_in_channel")
    with pytest.raises(SlackApiError) as not_in:
        web.chat_postMessage(channel="#private", text="x")
    assert not_in.value.response["error"] == "not_in_channel"

    with SlackServer(token=TOKEN, channels={"alerts": "C0ALERTS01"}, accept_unknown_channels=False) as strict:
        assert client(strict).chat_postMessage(channel="#alerts", text="x")["channel"] == "C0ALERTS01"
        with pytest.raises(SlackApiError) as missing:
            client(strict).chat_postMessage(channel="#nowhere", text="x")
        assert missing.value.response["error"] == "channel_not_found"


def test_blocks_over_slack_limits_are_refused(slack: SlackServer) -> None:
    header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
    with pytest.raises(SlackApiError) as refused:
        client(slack).chat_postMessage(channel="#alerts", text="x", blocks=[header])
    assert refused.value.response["error"] == "invalid_blocks"
    assert refused.value.response["errors"] == ["must be less than 151 characters [json-pointer:/blocks/0/text/text]"]
    assert slack.messages == {}


def test_rate_limit_is_retried_after_retry_after(slack: SlackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    # The handler sleeps Retry-After plus up to a second of jitter: recorded, not waited.
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=slept.append))
    slack.fail_next(1, status=429, retry_after=1)
    web = client(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    posted = web.chat_postMessage(channel="#alerts", text="firing")

    assert posted["ok"]
    first, second = slack.calls("chat.postMessage")
    assert (first.status, first.response) == (429, {"ok": False, "error": "ratelimited"})
    assert second.status == 200 and second.body == first.body
    assert len(slept) == 1 and 1 <= slept[0] < 2
    assert len(slack.messages) == 1


def test_rate_limit_reaches_a_client_without_retries(slack: SlackServer) -> None:
    slack.fail_next(2, retry_after=7)
    for _ in range(2):
        with pytest.raises(SlackApiError) as limited:
            client(slack).chat_postMessage(channel="#alerts", text="x")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "7"
        assert limited.value.response["error"] == "ratelimited"
    assert client(slack).chat_postMessage(channel="#alerts", text="x")["ok"]


def test_server_errors_and_method_filter(slack: SlackServer) -> None:
    web = client(slack)
    slack.fail_next(1, status=500, method="chat.update")
    posted = web.chat_postMessage(channel="#alerts", text="x")  # not chat.update: unaffected
    with pytest.raises(SlackApiError) as failed:
        web.chat_update(channel=posted["channel"], ts=posted["ts"], text="y")
    assert failed.value.response.status_code == 500
    assert failed.value.response["error"] == "internal_error"
    assert "Retry-After" not in failed.value.response.headers
    assert web.chat_update(channel=posted["channel"], ts=posted["ts"], text="y")["ok"]


def test_outage_drops_connections_or_answers_503(slack: SlackServer) -> None:
    web = client(slack)
    slack.down()
    with pytest.raises(ConnectionError):
        web.chat_postMessage(channel="#alerts", text="x")
    slack.down(status=503)
    with pytest.raises(SlackApiError) as unavailable:
        web.chat_postMessage(channel="#alerts", text="x")
    assert unavailable.value.response.status_code == 503
    slack.up()
    assert web.chat_postMessage(channel="#alerts", text="x")["ok"]

    assert [r.status for r in slack.calls("chat.postMessage")] == [None, 503, 200]
    assert len(slack.messages) == 1


def test_incoming_webhook(slack: SlackServer) -> None:
    text, blocks = alert_message([alert()], service="checkout", public_url=URL)
    hook = WebhookClient(slack.webhook_url, timeout=5)

    sent = hook.send(text=text, blocks=blocks)

    assert (sent.status_code, sent.body) == (200, "ok")
    [request] = slack.requests
    assert (request.method, request.path) == ("webhook", "/services/T000/B000/XXXX")
    assert request.body == {"text": text, "blocks": blocks}
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"
    [message] = slack.messages.values()
    assert (message["text"], message["blocks"]) == (text, blocks)

    assert hook.send_dict({"unfurl_links": False}).body == "no_text"
    slack.fail_next(1)
    limited = hook.send(text="x")
    assert (limited.status_code, limited.body, limited.headers["Retry-After"]) == (429, "rate_limited", "1")
    request_bad = urllib.request.Request(slack.webhook_url, data=b"{not json", method="POST")
    request_bad.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request_bad, timeout=5)
    assert (bad.value.code, bad.value.read()) == (400, b"invalid_payload")
    bad.value.close()


def test_wait_for_calls_made_from_another_thread(slack: SlackServer) -> None:
    def deliver() -> None:
        time.sleep(0.05)
        client(slack).chat_postMessage(channel="#alerts", text="from a worker")

    worker = threading.Thread(target=deliver)
    worker.start()
    [call] = slack.wait_for("chat.postMessage", timeout=5)
    worker.join(5)
    assert call.body["text"] == "from a worker"
    with pytest.raises(TimeoutError):
        slack.wait_for("chat.update", timeout=0.05)


def test_stop_is_bounded_with_an_idle_connection_open() -> None:
    server = SlackServer().start()
    idle = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=5)
    try:
        time.sleep(0.05)  # the server is now reading from it
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1
    finally:
        idle.close()
    with pytest.raises(RuntimeError):
        _ = server.url
