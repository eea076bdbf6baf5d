"""Where decoding runs: worker processes beside the process that owns the store.

Decoding OTLP is pure-Python CPU work, so in one process it and the receivers share one
core's worth of GIL. With workers, the receiving process only moves bytes in and Arrow
batches out (both pickle as buffers) while every core decodes. Workers are started from a
fork server, never forked from the receiving process, because that process has the
embedded ClickHouse (chDB) open and threads running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from vigil.collector.decode.otlp import Signal, decode_otlp_request
from vigil.types import DecodeResult

__all__ = ["DecodePool", "resolve_workers"]

_PRELOAD = ["vigil.collector.decode.otlp"]


_OWNER_POLL_S = 1.0


def _alive(pid: int) -> bool:
    # A killed process stays a zombie until its parent reaps it; that counts as gone.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _exit_with(owner_pid: int) -> None:
    """Worker initializer: end this worker once the Vigil process that owns it is gone.

    After a SIGKILL of Vigil nothing else would: each worker holds the write ends of its own
    task queue and of the fork server's liveness pipe, so neither ever reports EOF.
    """

    def watch() -> None:
        while _alive(owner_pid):
            time.sleep(_OWNER_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="vigil-owner-watch", daemon=True).start()


def resolve_workers(setting: int) -> int:
    """Worker processes for a `VIGIL_DECODE_WORKERS` value: -1 means one per core."""
    return (os.cpu_count() or 1) if setting < 0 else setting


class DecodePool:
    """Runs `decode_otlp_request` off the event loop: in `workers` processes, or a thread when 0."""

    def __init__(self, workers: int, max_request_bytes: int) -> None:
        self.workers = workers
        self.max_request_bytes = max_request_bytes
        self._executor: Executor | None = None

    def start(self) -> None:
        if self._executor is not None:
            return
        if self.workers > 0:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)
            )
            # Start the workers now, so the first request does not pay for it.
            concurrent.futures.wait([self._executor.submit(os.getpid) for _ in range(self.workers)])
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-decode")

    def shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def decode(
        self, signal: Signal, body: bytes, content_type: str, content_encoding: str | None = None
    ) -> DecodeResult:
        if self._executor is None:
            raise RuntimeError("DecodePool.decode() called before start()")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor,
            decode_otlp_request,
            signal,
            body,
            content_type,
            content_encoding,
            self.max_request_bytes,
        )
