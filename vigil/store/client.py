"""Open ClickHouse: embedded chDB or a server, both through clickhouse-connect.

chDB allows one data path per process, and opening takes about a second and 300 MB, so
clients for a chDB path are shared: a second `open_client` for the same path returns the
same client, and one for a different path fails with a message saying why.

The shared embedded client runs each call on a chDB handle no other call is using
(`HandlePool`), so that a page's query need not wait for an insert to end. Every client's
queries carry ClickHouse's `priority` setting, `READ_PRIORITY`, above the inserter's
`INSERT_PRIORITY`, so that an insert pauses while a query runs, on chDB and on a server alike.

Within `query_threads(n)`, a thread's calls on the embedded store use at most `n` of ClickHouse's
query threads: a page that runs its reads side by side already keeps the cores busy (the engine
shares the machine with Vigil), and more threads per read only take turns on them.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from vigil.errors import ConfigError, StoreUnavailable

__all__ = [
    "INSERT_PRIORITY",
    "READ_PRIORITY",
    "Client",
    "HandlePool",
    "chdb_path",
    "open_client",
    "query_thread_limit",
    "query_threads",
]

# ClickHouse's query `priority` (smaller runs first; 0 means none): while a query of a smaller
# number runs, one of a larger number pauses between blocks (for at most a second at a time).
# Every query but the inserter's runs at READ_PRIORITY: inserts have their rows safe in the
# write-ahead log already, so they are the work that can wait.
READ_PRIORITY = 1
INSERT_PRIORITY = 10

_chdb_lock = threading.Lock()
_chdb_client: tuple[str, Client] | None = None
_query_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("vigil_query_threads", default=None)


@contextlib.contextmanager
def query_threads(count: int) -> Iterator[None]:
    """Within the block, this thread's calls on the embedded store run with ClickHouse's
    `max_threads` at `count`. A server's client is not affected: its cores are not Vigil's, and
    the server shares them out among its queries itself."""
    if count < 1:
        raise ValueError(f"query_threads needs at least one thread, not {count}")
    token = _query_threads.set(count)
    try:
        yield
    finally:
        _query_threads.reset(token)


def query_thread_limit() -> int | None:
    """The `query_threads` limit in force in this thread, or None (ClickHouse's default)."""
    return _query_threads.get()


# clickhouse-connect's calls that run a statement and take `settings` by keyword.
_QUERY_METHODS = frozenset({"query", "query_arrow", "query_df", "query_np", "raw_query", "command"})


class HandlePool:
    """An embedded ClickHouse client that runs each call on a chDB handle no other call is using.

    clickhouse-connect's chDB client holds one handle and runs one call at a time on it, so a
    single client shared by the inserter, the detectors and the API's request threads queued
    every page's query behind whatever insert was running (seconds under heavy ingest). Handles
    to one engine run in parallel and cost under 1 MiB each, but opening one takes 15-60 ms, so
    they are kept and reused: a call takes a free handle (opening one only when all are busy)
    and gives it back when it returns. Every attribute of clickhouse-connect's `Client` is
    available; a method call runs on a pooled handle. (Vigil's calls all finish within the call;
    a streaming result would keep using its handle after the handle went back to the pool.)
    """

    def __init__(self, path: str, settings: dict[str, Any]) -> None:
        self.path = path
        self._settings = settings
        self._lock = threading.Lock()
        # The first opens the engine, so a bad path fails here and not on a later call.
        self._first = self._open()
        self._free = [self._first]

    def _open(self) -> Client:
        return clickhouse_connect.get_client(dsn=f"chdb://{self.path}", settings=self._settings)

    def _take(self) -> Client:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._open()

    def _give_back(self, handle: Client) -> None:
        with self._lock:
            self._free.append(handle)

    def open_spares(self, count: int) -> None:
        """Open handles until `count` are free, so that the first calls made at once need not open
        theirs (under ingest an open took up to 0.9 s, most of it reading `system.settings`)."""
        while True:
            with self._lock:
                if len(self._free) >= count:
                    return
            self._give_back(self._open())

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._first, name)
        if not callable(attribute):
            return attribute

        def on_a_free_handle(*args: Any, **kwargs: Any) -> Any:
            threads = _query_threads.get()
            if threads is not None and name in _QUERY_METHODS:
                kwargs["settings"] = {**(kwargs.get("settings") or {}), "max_threads": threads}
            handle = self._take()
            try:
                return getattr(handle, name)(*args, **kwargs)
            finally:
                self._give_back(handle)

        return on_a_free_handle


def chdb_path(url: str) -> str:
    """The absolute data directory of a ``chdb://PATH`` URL (PATH may be relative).

    >>> chdb_path("chdb:///var/lib/vigil")
    '/var/lib/vigil'
    """
    path = url.removeprefix("chdb://")
    if not path:
        raise ConfigError(f"VIGIL_CLICKHOUSE_URL={url!r} names no directory; expected chdb://PATH")
    return os.path.abspath(path)


def _open_chdb(url: str) -> Client:
    global _chdb_client
    path = chdb_path(url)
    with _chdb_lock:
        if _chdb_client is not None:
            open_path, client = _chdb_client
            if open_path != path:
                raise ConfigError(
                    f"embedded ClickHouse is already open at {open_path}; one process can open only one "
                    f"chDB data directory, not also {path}. Use one VIGIL_CLICKHOUSE_URL per process."
                )
            return client
        os.makedirs(path, exist_ok=True)
        try:
            client = cast(Client, HandlePool(path, {"priority": READ_PRIORITY}))
        except Exception as exc:
            raise ConfigError(
                f"cannot open the embedded ClickHouse at {path}: {exc}. Only one process may open a data "
                "directory: stop the other Vigil using it, or point VIGIL_CLICKHOUSE_URL elsewhere."
            ) from None
        _chdb_client = (path, client)
        return client


# ClickHouse's answers to a wrong user or password: AUTHENTICATION_FAILED (and, from older servers,
# UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD).
_CREDENTIAL_ERRORS = frozenset({516, 192, 193, 194})


def _open_http(url: str, **kwargs: Any) -> Client:
    parts = urlsplit(url)
    try:
        return clickhouse_connect.get_client(
            host=parts.hostname or "localhost",
            port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            secure=parts.scheme == "https",
            settings={"priority": READ_PRIORITY},
            # Threads share this client, and ClickHouse runs one query at a time per session:
            # with a session id on every query, all but one of simultaneous queries would be
            # refused. Vigil keeps no session state (every setting travels with its query).
            autogenerate_session_id=False,
            **kwargs,
        )
    except Exception as exc:  # the driver raises several types for "cannot connect"
        if getattr(exc, "code", None) in _CREDENTIAL_ERRORS:
            # Not an outage to wait out: no retry will ever get in.
            raise ConfigError(
                f"ClickHouse at {parts.hostname}:{parts.port} refused user {unquote(parts.username or 'default')!r}: "
                f"{_server_message(exc)}. Check the user and password in VIGIL_CLICKHOUSE_URL "
                "(percent-encode any of : / @ ? # in them)"
            ) from None
        raise StoreUnavailable(f"cannot reach ClickHouse at {parts.hostname}:{parts.port}: {exc}") from exc


def _server_message(exc: Exception) -> str:
    """ClickHouse's own words in a driver exception: "Authentication failed: ..."."""
    text = str(exc)
    start = text.find("DB::Exception: ")
    if start < 0:
        return text
    return text[start + len("DB::Exception: ") :].split(" (for url ")[0].rstrip(". ")


def open_client(url: str) -> Client:
    """A clickhouse-connect client for `url`: ``chdb://PATH`` or ``http(s)://user:pass@host:port/db``."""
    scheme = urlsplit(url).scheme
    if scheme == "chdb":
        return _open_chdb(url)
    if scheme in ("http", "https"):
        return _open_http(url)
    raise ConfigError(
        f"VIGIL_CLICKHOUSE_URL={url!r}: expected chdb://PATH (embedded) or http(s)://user:pass@host:8123/db"
    )


def database_from_url(url: str, default: str) -> str:
    """The database a server URL names in its path, else `default`."""
    if url.startswith("chdb://"):
        return default
    name = urlsplit(url).path.strip("/")
    return name or default
