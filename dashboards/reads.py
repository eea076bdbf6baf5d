"""A page's independent store reads, run at once while readers are free.

A page reads several rollups and tables that do not depend on one another. One after another,
their times add up: about 110 ms for a service's page over an hour of two million spans, mostly
each query's fixed cost, not its scan. The store client runs calls from several threads side by
side (a chDB handle per call, a connection per call to a server), so a page hands its reads to a
small pool of readers and runs the rest itself meanwhile: it waits about as long as its slowest
read.

Only free readers take reads; a read that would queue runs in the page's own thread instead.
When several pages load at once the cores are already busy, and a shared queue would make every
page wait for the others' reads: with four clients at once, a queue put the services page's
p50 at 152 ms against 115 ms reading one query after another (docs/BENCHMARKS.md, "A page's
reads at once").
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

__all__ = ["READERS", "PageReads"]

P = ParamSpec("P")
T = TypeVar("T")

# One per core (with the page's own thread, one read more than cores at a time). Two per core
# read no faster alone and made pages slower when four loaded at once.
READERS = os.cpu_count() or 1
_POOL = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="vigil-page-read")
_FREE = threading.BoundedSemaphore(READERS)


class PageReads:
    """Start a page's reads with `start`; when the ``with`` block ends, each has run.

    The page's thread and any free readers take the page's reads one at a time until none is
    left, so a read never waits behind other pages' reads in a queue.

    >>> with PageReads() as reads:
    ...     answer = reads.start(sum, [40, 2])
    >>> answer.result()
    42
    """

    def __init__(self) -> None:
        self._pending: collections.deque[tuple[Future[Any], Callable[[], Any]]] = collections.deque()
        self._started: list[Future[Any]] = []

    def start(self, read: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `read(*args, **kwargs)` for this page; its future's `result()` gives what it
        returned, or raises what it raised."""
        future: Future[T] = Future()
        self._pending.append((future, lambda: read(*args, **kwargs)))
        self._started.append(future)
        if _FREE.acquire(blocking=False):
            _POOL.submit(self._help)
        return future

    def __enter__(self) -> PageReads:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is not None:
            for future, _ in self._pending:
                future.cancel()
            return
        self._run_pending()
        concurrent.futures.wait(self._started)

    def _help(self) -> None:
        try:
            self._run_pending()
        finally:
            _FREE.release()

    def _run_pending(self) -> None:
        while True:
            try:
                future, read = self._pending.popleft()  # deque: safe between threads
            except IndexError:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(read())
            except Exception as exc:  # given to whoever asks for this result
                future.set_exception(exc)
