"""A page's independent store reads, run at once while the cores are free.

A page reads several rollups and tables that do not depend on one another. One after another,
their times add up: about 110 ms for a service's page over an hour of two million spans, mostly
each query's fixed cost, not its scan. The store client runs calls from several threads side by
side (a chDB handle per call, a connection per call to a server), so a page hands its reads to
helper threads and runs the rest itself meanwhile: it waits about as long as its slowest read.

Helpers take part only while the cores are free: a page's thread takes one of `READ_SLOTS` slots
(one per core) while it reads, a helper another, and a read no helper is free for runs in the
page's own thread. When several pages load at once the cores are busy already, and more reads at
once only make each page wait for the others' reads (docs/BENCHMARKS.md, "A page's reads at
once": a shared queue of reads, and one slot more than cores, both made pages slower with four
clients at once than reading one query after another).

A read that starts while another page read is under way runs on one of ClickHouse's threads
(`vigil.store.client.query_threads`): the reads side by side keep the cores busy already, and a
read that splits its work across threads only makes it take turns with them. A read that starts
alone keeps ClickHouse's default and may use every core. On an embedded store under ingest, every
page was faster so (docs/BENCHMARKS.md, "One thread per read while a page's reads run together").
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from vigil.store.client import query_threads

__all__ = ["READ_SLOTS", "PageReads"]

P = ParamSpec("P")
T = TypeVar("T")

# Reads at once, pages' threads included; pages' threads take these slots first, so with as many
# pages loading as cores, each page reads alone, as it would without helpers. At least two, so
# that a page on a one-core machine still overlaps a read's wait for ClickHouse with another.
READ_SLOTS = max(2, os.cpu_count() or 1)
_POOL = ThreadPoolExecutor(max_workers=READ_SLOTS, thread_name_prefix="vigil-page-read")
_SLOTS = threading.BoundedSemaphore(READ_SLOTS)
# Page reads under way in this process, each page's and helper's; see `_read`.
_reads_under_way = 0
_reads_under_way_lock = threading.Lock()


class PageReads:
    """Start a page's reads with `start`; when the ``with`` block ends, each has run and the
    page's helpers have given their slots back.

    The page's thread, and helpers while slots are free, take the page's reads one at a time
    until none is left, so a read never waits behind other pages' reads in a queue.

    >>> with PageReads() as reads:
    ...     answer = reads.start(sum, [40, 2])
    >>> answer.result()
    42
    """

    def __init__(self) -> None:
        self._pending: collections.deque[tuple[Future[Any], Callable[[], Any]]] = collections.deque()
        self._started: list[Future[Any]] = []
        # Each helper's run; it gives its slot back as it ends, after the last read it took.
        self._helpers: list[Future[None]] = []
        self._holds_slot = False

    def start(self, read: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `read(*args, **kwargs)` for this page; its future's `result()` gives what it
        returned, or raises what it raised."""
        future: Future[T] = Future()
        self._pending.append((future, lambda: read(*args, **kwargs)))
        self._started.append(future)
        if _SLOTS.acquire(blocking=False):
            self._helpers.append(_POOL.submit(self._help))
        return future

    def __enter__(self) -> PageReads:
        # Without a slot the page still reads, in its own thread: only helpers wait for slots.
        self._holds_slot = _SLOTS.acquire(blocking=False)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if error is not None:
                for future, _ in self._pending:
                    future.cancel()
                return
            self._run_pending()
            # The helpers too: a page that follows at once finds their slots free again.
            concurrent.futures.wait([*self._started, *self._helpers])
        finally:
            if self._holds_slot:
                _SLOTS.release()
                self._holds_slot = False

    def _help(self) -> None:
        try:
            self._run_pending()
        finally:
            _SLOTS.release()

    def _run_pending(self) -> None:
        while True:
            try:
                future, read = self._pending.popleft()  # deque: safe between threads
            except IndexError:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(_read(read))
            except Exception as exc:  # given to whoever asks for this result
                future.set_exception(exc)


def _read(read: Callable[[], T]) -> T:
    """Run `read` on one query thread if another page read is under way, else as ClickHouse likes."""
    global _reads_under_way
    with _reads_under_way_lock:
        alone = _reads_under_way == 0
        _reads_under_way += 1
    try:
        if alone:
            return read()
        with query_threads(1):
            return read()
    finally:
        with _reads_under_way_lock:
            _reads_under_way -= 1
