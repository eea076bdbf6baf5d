"""A local Slack for tests: the Web API methods Vigil uses and an incoming webhook, over real HTTP.

`SlackServer` is a `ThreadingHTTPServer` on 127.0.0.1 (a free port) in a thread. It answers as
Slack does, so the real ``slack_sdk.WebClient(token=..., base_url=slack.url + "/api/")`` and
``slack_sdk.webhook.WebhookClient(slack.webhook_url)`` work against it unchanged:

* ``POST /api/auth.test``: who the token is (``invalid_auth`` for another token, ``not_authed``
  for none). Every ``/api/`` method checks the token, from ``Authorization: Bearer`` or a
  ``token`` form field.
* ``POST /api/chat.postMessage``: ``channel`` (a name such as ``#alerts`` or ``alerts``, or an
  id), ``text`` and/or ``blocks``, optional ``thread_ts`` for a reply. Answers ``channel`` (the
  id), ``ts`` and ``message``. Timestamps are deterministic and increasing:
  ``1700000000.000100``, ``1700000000.000200``, ... Unknown channel names are accepted and get
  a stable id (`channel_id`) unless ``accept_unknown_channels=False``; `set_channel_error`
  makes a channel answer ``not_in_channel``, ``channel_not_found``, ``is_archived``...
* ``POST /api/chat.update``: ``channel`` must be the id (as on Slack, a name is
  ``channel_not_found``) and ``ts`` a posted message (else ``message_not_found``). Blocks left
  out are kept, as Slack keeps them; ``blocks=[]`` removes them.
* ``POST /services/T000/B000/XXXX`` (`webhook_url`): an incoming webhook; answers ``ok`` as
  text, ``invalid_payload`` or ``no_text`` (400) as Slack does.

Bodies are read as JSON or form-encoded, whichever the request says (slack-sdk sends the chat
methods as JSON; form-encoded ``blocks`` arrive as a JSON string and are decoded). Blocks are
checked against Slack's main limits (at most 50; header text <= 150 characters; text objects
<= 3000; ``emoji`` only on plain text, ``verbatim`` only on mrkdwn) and refused with
``invalid_blocks`` and Slack's ``errors`` list otherwise.

Every request is recorded (`requests`, `calls`) with its parsed body, headers, time and the
status it got; `messages` is the current state of every message by (channel id, ts), updates
and thread replies included (`replies`). Faults: `fail_next` answers the next calls with an
HTTP error (429 with ``Retry-After`` by default, as Slack rate-limits), `down` refuses
everything (a status, or a dropped connection) until `up`.

>>> import json, urllib.request
>>> with SlackServer(token="xoxb-test") as slack:
...     request = urllib.request.Request(
...         slack.url + "/api/auth.test", data=b"", headers={"Authorization": "Bearer xoxb-test"}
...     )
...     with urllib.request.urlopen(request, timeout=5) as response:
...         answer = json.load(response)
>>> answer["ok"], answer["user_id"], [r.method for r in slack.requests]
(True, 'U1', ['auth.test'])
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["WEBHOOK_PATH", "RecordedRequest", "SlackServer", "block_errors"]

WEBHOOK_PATH = "/services/T000/B000/XXXX"
TEAM_ID = "T1"
USER_ID = "U1"
BOT_ID = "B1"
APP_ID = "A1"
FIRST_TS_S = 1_700_000_000

# Slack's limits on what it accepts in a message.
MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_TEXT_OBJECT_CHARS = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_MESSAGE_TEXT_CHARS = 40_000

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")
# Form fields that Slack takes as JSON strings.
_JSON_FIELDS = ("blocks", "attachments", "metadata")
_KNOWN_BLOCKS = {"actions", "divider", "file", "image", "input", "markdown", "rich_text", "video"}
_ERROR_NAMES = {429: "ratelimited", 500: "internal_error", 502: "bad_gateway", 503: "service_unavailable"}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server got and what it answered."""

    method: str  # the API method ("chat.postMessage"), "webhook", or the path for anything else
    path: str  # without the query string
    body: dict[str, Any]  # parsed: JSON, or form fields (JSON-string fields decoded), plus query parameters
    headers: dict[str, str]
    time: float  # unix seconds
    status: int | None  # HTTP status answered; None when the connection was dropped
    response: Any  # the JSON object or the text answered; None when dropped


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    retry_after: int | None
    method: str | None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: Any  # dict -> JSON, str -> text
    headers: tuple[tuple[str, str], ...] = ()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # A stuck client cannot hold a thread past this (seconds).
    timeout = 10

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the server records requests itself

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        answer = self.server.slack._handle(self.path, dict(self.headers.items()), raw)
        if answer is None:
            # An outage at the connection level: the request is read, the answer never comes.
            self.close_connection = True
            return
        if isinstance(answer.body, str):
            payload, content_type = answer.body.encode(), "text/html"
        else:
            payload, content_type = json.dumps(answer.body).encode(), "application/json; charset=utf-8"
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, slack: SlackServer) -> None:
        self.slack = slack
        super().__init__(("127.0.0.1", 0), _Handler)


class SlackServer:
    """A local Slack Web API and incoming webhook; see the module docstring."""

    def __init__(
        self,
        token: str = "xoxb-test",
        *,
        channels: Mapping[str, str] | None = None,
        accept_unknown_channels: bool = True,
        webhook_channel: str = "alerts",
        team: str = "Vigil Test",
    ) -> None:
        self.token = token
        self.team = team
        self.accept_unknown_channels = accept_unknown_channels
        self._channels = {name.lstrip("#"): cid for name, cid in (channels or {}).items()}
        self.webhook_channel = webhook_channel
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._channel_errors: dict[str, str] = {}
        self._faults: list[_Fault] = []
        self._down: tuple[int | None] | None = None  # (status,) while down; status None drops connections
        self._ts_count = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SlackServer:
        if self._httpd is not None:
            return self
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; returns within about `timeout` seconds."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()  # the serve loop polls every 0.05 s
        httpd.server_close()
        thread.join(timeout)

    def __enter__(self) -> SlackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; the Web API is under ``/api/``."""
        if self._httpd is None:
            raise RuntimeError("the Slack server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``slack_sdk.WebClient``."""
        return self.url + "/api/"

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 429, retry_after: int | None = None, *, method: str | None = None
    ) -> None:
        """Answer the next `n` calls (to `method` only, if given) with HTTP `status`.

        API methods get Slack's error body (``{"ok": false, "error": "ratelimited"}`` for 429,
        ``internal_error`` for 500, ``service_unavailable`` for 503), the webhook a text. A
        429 carries ``Retry-After: <retry_after>`` (seconds, 1 unless given), as Slack's rate
        limits do; another status carries it only when `retry_after` is given.
        """
        after = (1 if status == 429 else None) if retry_after is None else retry_after
        with self._lock:
            self._faults.extend(_Fault(status, after, method) for _ in range(n))

    def down(self, *, status: int | None = None) -> None:
        """Refuse every request until `up`: drop the connection without an answer, or answer `status` (e.g. 503)."""
        with self._lock:
            self._down = (status,)

    def up(self) -> None:
        with self._lock:
            self._down = None

    def set_channel_error(self, channel: str, error: str | None) -> None:
        """Make posts to `channel` (name or id) fail with `error` (e.g. ``not_in_channel``); None clears it."""
        cid = self.channel_id(channel)
        with self._lock:
            if error is None:
                self._channel_errors.pop(cid, None)
            else:
                self._channel_errors[cid] = error

    # -- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, method: str) -> list[RecordedRequest]:
        """The recorded requests to `method` (``chat.postMessage``, ``webhook``...)."""
        with self._lock:
            return [r for r in self._requests if r.method == method]

    @property
    def messages(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every message as it is now, by (channel id, ts); thread replies carry ``thread_ts``."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._messages[(self.channel_id(channel), ts)])

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The replies in the thread of (channel, thread_ts), oldest first."""
        cid = self.channel_id(channel)
        with self._lock:
            found = [
                m
                for (c, ts), m in self._messages.items()
                if c == cid and m.get("thread_ts") == thread_ts and ts != thread_ts
            ]
            return copy.deepcopy(sorted(found, key=lambda m: _ts_key(m["ts"])))

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0, *, ok: bool = True) -> list[RecordedRequest]:
        """Wait until `count` calls to `method` were answered (successfully, if `ok`); returns them all.

        For code that talks to Slack from its own thread or task.
        """

        def done() -> bool:
            return len(self._matching(method, ok)) >= count

        with self._lock:
            if not self._lock.wait_for(done, timeout):
                raise TimeoutError(f"{len(self._matching(method, ok))} of {count} {method} calls after {timeout} s")
            return self._matching(method, ok)

    def _matching(self, method: str, ok: bool) -> list[RecordedRequest]:
        return [r for r in self._requests if r.method == method and (not ok or _succeeded(r))]

    def channel_id(self, channel: str) -> str:
        """The id a channel name (``#alerts`` or ``alerts``) or id stands for; stable across runs."""
        name = channel.lstrip("#")
        if name in self._channels:
            return self._channels[name]
        if _CHANNEL_ID.match(name):
            return name
        return "C" + hashlib.sha256(name.encode()).hexdigest()[:10].upper()

    # -- serving -----------------------------------------------------------------------------

    def _handle(self, target: str, headers: dict[str, str], raw: bytes) -> _Answer | None:
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/api/"):
            method = path.removeprefix("/api/")
        elif path.startswith("/services/"):
            method = "webhook"
        else:
            method = path
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        body, parse_error = _parse_body(content_type, raw, parts.query)
        with self._lock:
            answer = self._fault_answer(method)
            if answer is None and not (self._down is not None and self._down[0] is None):
                answer = self._answer(method, path, headers, body, parse_error)
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    body=body,
                    headers=headers,
                    time=time.time(),
                    status=None if answer is None else answer.status,
                    response=None if answer is None else copy.deepcopy(answer.body),
                )
            )
            self._lock.notify_all()
            return answer

    def _fault_answer(self, method: str) -> _Answer | None:
        """The answer an outage or a programmed fault gives, if any (None also when dropping)."""
        if self._down is not None:
            status = self._down[0]
            return None if status is None else _error_answer(method, status, None)
        for i, fault in enumerate(self._faults):
            if fault.method is None or fault.method == method:
                del self._faults[i]
                return _error_answer(method, fault.status, fault.retry_after)
        return None

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any], parse_error: str | None
    ) -> _Answer:
        if method == "webhook":
            return self._webhook(path, body, parse_error)
        if not path.startswith("/api/"):
            return _Answer(404, "not found")
        if parse_error is not None:
            return _Answer(200, {"ok": False, "error": parse_error})
        token = _bearer(headers) or body.get("token")
        if not token:
            return _Answer(200, {"ok": False, "error": "not_authed"})
        if token != self.token:
            return _Answer(200, {"ok": False, "error": "invalid_auth"})
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
        }.get(method)
        if handler is None:
            return _Answer(200, {"ok": False, "error": "unknown_method"})
        return _Answer(200, handler(body))

    def _auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://vigil-test.slack.com/",
            "team": self.team,
            "user": "vigil",
            "team_id": TEAM_ID,
            "user_id": USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        cid = self.channel_id(channel)
        error = self._channel_error(cid, channel)
        if error is None:
            error = _content_error(body, require_content=True)
        if error is not None:
            return error
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "text": str(body.get("text") or ""),
            "user": USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        }
        for name in ("blocks", "attachments", "metadata"):
            if name in body:
                message[name] = copy.deepcopy(body[name])
        thread_ts = body.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
            parent = self._messages.get((cid, str(thread_ts)))
            if parent is not None:
                # As Slack shows a thread's parent.
                parent["thread_ts"] = str(thread_ts)
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = ts
        self._messages[(cid, ts)] = message
        return {"ok": True, "channel": cid, "ts": ts, "message": copy.deepcopy(message)}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel") or "")
        ts = str(body.get("ts") or "")
        # chat.update takes the channel id that chat.postMessage answered, not a name.
        if not _CHANNEL_ID.match(channel) or (
            not self.accept_unknown_channels and channel not in self._channels.values()
        ):
            return {"ok": False, "error": "channel_not_found"}
        error = self._channel_error(channel, channel)
        if error is not None:
            return error
        message = self._messages.get((channel, ts))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        error = _content_error(body, require_content=False)
        if error is not None:
            return error
        if "text" in body:
            message["text"] = str(body["text"] or "")
        for name in ("blocks", "attachments", "metadata"):
            if name in body:
                if body[name]:
                    message[name] = copy.deepcopy(body[name])
                else:
                    message.pop(name, None)
        message["edited"] = {"user": USER_ID, "ts": self._next_ts()}
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"], "message": copy.deepcopy(message)}

    def _webhook(self, path: str, body: dict[str, Any], parse_error: str | None) -> _Answer:
        if path != WEBHOOK_PATH:
            return _Answer(404, "no_service")
        if "payload" in body and isinstance(body["payload"], str):
            # Webhooks also take a form field `payload` holding the JSON.
            try:
                body = json.loads(body["payload"])
            except ValueError:
                return _Answer(400, "invalid_payload")
        if parse_error is not None or not isinstance(body, dict):
            return _Answer(400, "invalid_payload")
        if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
            return _Answer(400, "no_text")
        error = _content_error(body, require_content=True)
        if error is not None:
            return _Answer(400, str(error["error"]))
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": str(body.get("text") or "")}
        message |= {k: copy.deepcopy(body[k]) for k in ("blocks", "attachments") if k in body}
        message |= {"bot_id": BOT_ID, "ts": ts}
        self._messages[(self.channel_id(self.webhook_channel), ts)] = message
        return _Answer(200, "ok")

    def _channel_error(self, cid: str, given: str) -> dict[str, Any] | None:
        if cid in self._channel_errors:
            return {"ok": False, "error": self._channel_errors[cid]}
        known = given.lstrip("#") in self._channels or cid in self._channels.values()
        if not self.accept_unknown_channels and not known:
            return {"ok": False, "error": "channel_not_found"}
        return None

    def _next_ts(self) -> str:
        self._ts_count += 1
        micros = self._ts_count * 100
        return f"{FIRST_TS_S + micros // 1_000_000}.{micros % 1_000_000:06d}"


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _succeeded(r: RecordedRequest) -> bool:
    if r.status != 200:
        return False
    return r.response == "ok" if isinstance(r.response, str) else bool(r.response and r.response.get("ok"))


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _error_answer(method: str, status: int, retry_after: int | None) -> _Answer:
    headers = () if retry_after is None else (("Retry-After", str(retry_after)),)
    name = _ERROR_NAMES.get(status, f"http_{status}")
    if method == "webhook":
        # Webhooks answer in text.
        return _Answer(status, "rate_limited" if status == 429 else name, headers)
    return _Answer(status, {"ok": False, "error": name}, headers)


def _parse_body(content_type: str, raw: bytes, query: str) -> tuple[dict[str, Any], str | None]:
    """The request's parameters, and Slack's error name when the body cannot be read."""
    body: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    kind = content_type.split(";")[0].strip().lower()
    if not raw:
        return body, None
    if kind == "application/json":
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {**body, "_raw": raw.decode("utf-8", "replace")}, "invalid_json"
        if not isinstance(parsed, dict):
            return {**body, "_raw": raw.decode("utf-8", "replace")}, "invalid_json"
        return {**body, **parsed}, None
    if kind == "application/x-www-form-urlencoded":
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        for name in _JSON_FIELDS:
            if isinstance(form.get(name), str):
                try:
                    form[name] = json.loads(form[name])
                except ValueError:
                    return {**body, **form}, f"invalid_{name}_format"
        return {**body, **form}, None
    return {**body, "_raw": raw.decode("utf-8", "replace")}, None


def _content_error(body: dict[str, Any], *, require_content: bool) -> dict[str, Any] | None:
    text = body.get("text")
    if text is not None and len(str(text)) > MAX_MESSAGE_TEXT_CHARS:
        return {"ok": False, "error": "msg_too_long"}
    if require_content and not text and not body.get("blocks") and not body.get("attachments"):
        return {"ok": False, "error": "no_text"}
    if "blocks" in body:
        errors = block_errors(body["blocks"])
        if errors:
            return {
                "ok": False,
                "error": "invalid_blocks",
                "errors": errors,
                "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
            }
    return None


def block_errors(blocks: Any) -> list[str]:
    """What Slack would refuse in `blocks` (its main rules), in Slack's wording."""
    if not isinstance(blocks, list):
        return ["must provide an array [json-pointer:/blocks]"]
    errors: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:{at}]")
            continue
        kind = block["type"]
        if kind == "header":
            errors += _text_errors(block.get("text"), f"{at}/text", MAX_HEADER_CHARS, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"must provide either text or fields [json-pointer:{at}]")
            if "text" in block:
                errors += _text_errors(block["text"], f"{at}/text", MAX_TEXT_OBJECT_CHARS)
            for j, field in enumerate(block.get("fields") or []):
                errors += _text_errors(field, f"{at}/fields/{j}", 2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                errors.append(f"must provide an array with at least 1 item [json-pointer:{at}/elements]")
                continue
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                errors.append(f"no more than {MAX_CONTEXT_ELEMENTS} items allowed [json-pointer:{at}/elements]")
            for j, element in enumerate(elements):
                if not (isinstance(element, dict) and element.get("type") == "image"):
                    errors += _text_errors(element, f"{at}/elements/{j}", MAX_TEXT_OBJECT_CHARS)
        elif kind not in _KNOWN_BLOCKS:
            errors.append(f"unsupported type: {kind} [json-pointer:{at}/type]")
    return errors


def _text_errors(obj: Any, at: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"must be an object [json-pointer:{at}]"]
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind not in allowed:
        return [f"must be one of {', '.join(allowed)} [json-pointer:{at}/type]"]
    errors: list[str] = []
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"must be more than 0 characters [json-pointer:{at}/text]")
    elif len(text) > limit:
        errors.append(f"must be less than {limit + 1} characters [json-pointer:{at}/text]")
    if "emoji" in obj and kind != "plain_text":
        errors.append(f"'emoji' is only allowed on plain_text [json-pointer:{at}/emoji]")
    if "verbatim" in obj and kind != "mrkdwn":
        errors.append(f"'verbatim' is only allowed on mrkdwn [json-pointer:{at}/verbatim]")
    extra = set(obj) - {"type", "text", "emoji", "verbatim"}
    if extra:
        errors.append(f"invalid additional property: {sorted(extra)[0]} [json-pointer:{at}]")
    return errors
