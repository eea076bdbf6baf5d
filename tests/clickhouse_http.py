"""A ClickHouse server for tests: ClickHouse's HTTP interface in front of embedded ClickHouse (chDB).

No ClickHouse server installs on the test machines (Debian's is 18.16, far older than Vigil's
schema needs; PyPI has none), yet Vigil's roles are meant to run as separate processes against
one. `ClickHouseHttp` is that server for them: a `ThreadingHTTPServer` on 127.0.0.1 whose every
query runs in the chDB engine of the test process, so the SQL, the data formats and the errors
are ClickHouse's own. Only the HTTP front is this module's, and it answers the way ClickHouse's
HTTP handler does for what clickhouse-connect's `HttpClient` sends:

* ``GET /ping``: ``Ok.``
* ``POST /?query=...``: the query from the URL and, when there is a body, the body is the data of
  an ``INSERT ... FORMAT F`` (ingested from a file, as clickhouse-local would); else the body is
  the query. ``param_NAME`` fields bind ``{NAME:Type}`` placeholders; every other field that is
  not a transport field (``session_id``, ``query_id``, ``compress``...) is a setting, applied
  to this query only (``SET`` on a connection of its own).
* Request bodies compressed with ``Content-Encoding`` (lz4, zstd, br, gzip, deflate) or sent
  chunked are taken; responses are not compressed (a server may always answer plainly).
* Users: HTTP basic auth or ``X-ClickHouse-User``/``X-ClickHouse-Key``; a wrong password is
  ClickHouse's error 516 (``AUTHENTICATION_FAILED``) with status 401.
* Errors: the ClickHouse exception text, ``X-ClickHouse-Exception-Code``, status 500 (404 for an
  unknown table or database, as the server answers).
* Each answer has ``X-ClickHouse-Summary`` (rows read and written), ``X-ClickHouse-Format``,
  ``X-ClickHouse-Timezone`` and ``X-ClickHouse-Query-Id``.

`stop` closes the port and every open connection (the server went away); `start` listens on the
same port again. `queries` records each statement with its settings, for tests that assert what
a client asked for.

>>> ClickHouseHttp("/var/lib/vigil", user="vigil", password="p@ss", port=8123).url("obs")
'http://vigil:p%40ss@127.0.0.1:8123/obs'
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import chdb
import lz4.frame
from clickhouse_connect.driver._backend.httpcommon import decompress_response

__all__ = ["ClickHouseHttp", "Statement"]

# Fields ClickHouse's HTTP handler consumes itself: not settings of the query.
_TRANSPORT_FIELDS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "quota_key",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "user",
        "password",
    }
)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# An INSERT whose data follows: what precedes its FORMAT clause (a SETTINGS clause, if any, is kept).
_INSERT_FORMAT = re.compile(
    r"\s*(?P<target>INSERT\s+INTO\s+[^\s(]+(?:\s*\([^)]*\))?)(?P<settings>\s+SETTINGS\s+[^\n]*?)?"
    r"\s+FORMAT\s+(?P<format>\w+)[ \t]*",
    re.IGNORECASE,
)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEXT = "text/plain; charset=UTF-8"
_AUTHENTICATION_FAILED = 516
# The codes the server answers with 404 rather than 500: unknown table, unknown database.
_NOT_FOUND_CODES = frozenset({60, 81})


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement the server ran, is running or refused: its text, settings and parameters."""

    sql: str
    settings: dict[str, str]
    params: dict[str, str]
    data_bytes: int
    user: str
    error_code: int | None


class ClickHouseHttp:
    """ClickHouse's HTTP interface on 127.0.0.1, over the chDB engine at `data_path` (this process's)."""

    def __init__(
        self, data_path: str, *, user: str = "default", password: str = "", port: int = 0, display_name: str = "test"
    ) -> None:
        self.data_path = data_path
        self.user = user
        self.password = password
        self.display_name = display_name
        self.queries: list[Statement] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, database: str) -> str:
        """A ``VIGIL_CLICKHOUSE_URL`` for `database` on this server, with its user and password."""
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        return f"http://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> ClickHouseHttp:
        peer = self

        class Handler(_Handler):
            server_peer = peer

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="clickhouse-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a server that went away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ClickHouseHttp:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def statements(self, pattern: str) -> list[Statement]:
        """The statements run so far whose SQL matches the regular expression `pattern`."""
        with self._lock:
            return [s for s in self.queries if re.search(pattern, s.sql)]

    def _record(self, statement: Statement) -> int:
        """Append `statement`; its index, for `_failed`."""
        with self._lock:
            self.queries.append(statement)
            return len(self.queries) - 1

    def _failed(self, index: int, code: int) -> None:
        with self._lock:
            self.queries[index] = dataclasses.replace(self.queries[index], error_code=code)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
    server_peer: ClickHouseHttp

    def setup(self) -> None:
        super().setup()
        self.server_peer._track(self.connection, True)

    def finish(self) -> None:
        self.server_peer._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read `queries`, not an access log

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/ping":
            self._answer(200, b"Ok.\n", {"Content-Type": _TEXT})
            return
        self._query(b"")

    def do_POST(self) -> None:
        self._query(self._body())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding")
        if not body or not encoding:
            return body
        # clickhouse-connect's own helper caps lz4 output at the input's length: fine for its reads, not here.
        return lz4.frame.decompress(body) if encoding == "lz4" else decompress_response(body, encoding)

    def _credentials(self, fields: dict[str, str]) -> tuple[str, str]:
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            return user, password
        user = self.headers.get("X-ClickHouse-User") or fields.get("user", "default")
        return user, self.headers.get("X-ClickHouse-Key") or fields.get("password", "")

    def _query(self, body: bytes) -> None:
        peer = self.server_peer
        fields = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        query_id = fields.get("query_id") or str(uuid.uuid4())
        user, password = self._credentials(fields)
        if (user, password) != (peer.user, peer.password):
            message = (
                f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, or there is no "
                "user with such name. (AUTHENTICATION_FAILED)"
            )
            peer._record(Statement(fields.get("query", ""), {}, {}, 0, user, _AUTHENTICATION_FAILED))
            self._error(401, _AUTHENTICATION_FAILED, message, query_id)
            return
        # As ClickHouse does: the query field, then the body; an INSERT's data follows its FORMAT clause.
        text = fields.get("query", "").encode()
        if text and body:
            text += b"\n"
        sql, data = _split_insert_data(text + body)
        params = {k.removeprefix("param_"): v for k, v in fields.items() if k.startswith("param_")}
        settings = {k: v for k, v in fields.items() if k not in _TRANSPORT_FIELDS and not k.startswith("param_")}
        # Recorded before it runs: another connection may read an insert's rows the moment they are
        # stored, and a test that then looks for the insert must find it.
        index = peer._record(Statement(sql, settings, params, len(data), user, None))
        try:
            output, output_format, summary = _run(peer.data_path, fields, sql, data, params, settings)
        except Exception as exc:  # chDB raises ChdbError (and RuntimeError in older releases)
            message = str(exc)
            start = message.find("Code: ")
            message = message[start:] if start >= 0 else message
            code_match = _ERROR_CODE.search(message)
            code = int(code_match.group(1)) if code_match else 1000
            peer._failed(index, code)
            self._error(404 if code in _NOT_FOUND_CODES else 500, code, message, query_id)
            return
        self._answer(
            200,
            output,
            {
                "Content-Type": "application/octet-stream" if output_format == "Native" else _TEXT,
                "X-ClickHouse-Format": output_format,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Server-Display-Name": peer.display_name,
                "X-ClickHouse-Summary": json.dumps(summary),
            },
        )

    def _error(self, status: int, code: int, message: str, query_id: str) -> None:
        self._answer(
            status,
            (message.rstrip() + "\n").encode(),
            {
                "Content-Type": _TEXT,
                "X-ClickHouse-Exception-Code": str(code),
                "X-ClickHouse-Query-Id": query_id,
            },
        )

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client went away; nothing to tell it


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _split_insert_data(text: bytes) -> tuple[str, bytes]:
    """The statement, and the data of an ``INSERT ... FORMAT F`` that follows it (after one line break)."""
    head = text[: 64 * 1024].decode("utf-8", errors="replace")
    match = _INSERT_FORMAT.match(head)
    if match is None:
        return text.decode(), b""
    data_start = len(head[: match.end()].encode())
    data = text[data_start:]
    data = data.removeprefix(b"\r\n") if data.startswith(b"\r\n") else data.removeprefix(b"\n")
    return head[: match.end()], data


def _run(
    data_path: str, fields: dict[str, str], sql: str, data: bytes, params: dict[str, str], settings: dict[str, str]
) -> tuple[bytes, str, dict[str, str]]:
    """Run one statement on a connection of its own (settings must not outlive it)."""
    connection = chdb.connect(data_path)
    data_file = None
    try:
        database = fields.get("database")
        if database:
            connection.query(f"USE {database}")
        for name, value in settings.items():
            if not _SETTING_NAME.match(name):
                raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
            connection.query(f"SET {name} = {_quoted(value)}")
        if data:
            # The INSERT's data: clickhouse-local reads it from a file.
            match = _INSERT_FORMAT.match(sql)
            assert match is not None  # _split_insert_data found it
            with tempfile.NamedTemporaryFile(prefix="clickhouse-http-", delete=False) as file:
                file.write(data)
                data_file = file.name
            sql = (
                f"{match.group('target')} FROM INFILE {_quoted(data_file)}{match.group('settings') or ''} "
                f"FORMAT {match.group('format')}"
            )
            output_format = "TabSeparated"
        else:
            match = _TRAILING_FORMAT.search(sql)
            output_format = match.group(1) if match else fields.get("default_format", "TabSeparated")
            if match is not None:
                sql = sql[: match.start()]
        started = time.monotonic_ns()
        result = connection.query(sql, output_format, params=params) if params else connection.query(sql, output_format)
        summary = {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": str(result.rows_written() if hasattr(result, "rows_written") else 0),
            "written_bytes": str(result.bytes_written() if hasattr(result, "bytes_written") else 0),
            "total_rows_to_read": str(result.rows_read()),
            "result_rows": "0",
            "result_bytes": str(result.size()),
            "elapsed_ns": str(time.monotonic_ns() - started),
        }
        return result.bytes() or b"", output_format, summary
    finally:
        connection.close()
        if data_file is not None:
            os.unlink(data_file)
