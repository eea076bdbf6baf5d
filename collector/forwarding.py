"""What receivers without acknowledgements share: batched UDP reads, and handing rows on without losing them.

StatsD and flow exporters send over UDP and expect no answer, so nobody retries for them. When the
batcher refuses rows (`Backpressure`), a `Forwarder` keeps them, up to a bound, and offers them again
with the next batch; a receiver's last call, `drain`, keeps offering for a few seconds at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from vigil.errors import RetryableError
from vigil.types import RowBatch

__all__ = [
    "UDP_RECEIVE_BUFFER_BYTES",
    "BatchSubmitter",
    "DatagramReader",
    "ForwardStats",
    "Forwarder",
    "merge_batches",
    "udp_socket",
]

logger = logging.getLogger(__name__)

# The kernel caps SO_RCVBUF at net.core.rmem_max (and doubles what it grants); a large buffer
# absorbs bursts while the loop is busy decoding or flushing.
UDP_RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
_MAX_DATAGRAM_BYTES = 65_536
_MAX_DATAGRAMS_PER_WAKEUP = 512
_DRAIN_RETRY_S = 0.05
_FAILED_WRITE_LOG_INTERVAL_S = 10.0


class BatchSubmitter(Protocol):
    """Where rows go: all of `batches` or none (raising `Backpressure`), like `Batcher.submit_all`."""

    def submit_all(self, batches: Sequence[RowBatch]) -> list[Future[None]]: ...


@dataclass(slots=True)
class ForwardStats:
    """Rows handed on, rows waiting after a refusal, rows lost to the bound, rows whose write failed."""

    rows_submitted: int = 0
    rows_retained: int = 0
    rows_dropped: int = 0
    rows_failed: int = 0


def merge_batches(batches: Sequence[RowBatch]) -> list[RowBatch]:
    """One batch per table, oldest rows first."""
    by_table: dict[str, list[pa.Table]] = {}
    for batch in batches:
        if batch.num_rows:
            by_table.setdefault(batch.table, []).append(batch.rows)
    return [
        RowBatch(table, tables[0] if len(tables) == 1 else pa.concat_tables(tables))
        for table, tables in by_table.items()
    ]


class Forwarder:
    """Hands row batches to `consumer`, keeping refused ones (up to `max_retained_rows`) for the next call."""

    def __init__(self, consumer: BatchSubmitter, name: str, max_retained_rows: int) -> None:
        self.consumer = consumer
        self.name = name
        self.max_retained_rows = max_retained_rows
        self._retained: list[RowBatch] = []
        self._stats = ForwardStats()
        self._lock = threading.Lock()
        self._next_failure_log = 0.0

    def stats(self) -> ForwardStats:
        with self._lock:
            s = self._stats
            return ForwardStats(s.rows_submitted, s.rows_retained, s.rows_dropped, s.rows_failed)

    @property
    def retained_rows(self) -> int:
        return sum(batch.num_rows for batch in self._retained)

    def submit(self, batches: Sequence[RowBatch]) -> None:
        """Offer `batches` and whatever was refused before; never raises."""
        pending = merge_batches([*self._retained, *batches])
        if not pending:
            return
        rows = sum(batch.num_rows for batch in pending)
        try:
            futures = self.consumer.submit_all(pending)
        except RetryableError as exc:
            self._retained = self._bounded(pending)
            logger.warning("%s: %d rows kept for the next flush: %s", self.name, rows, exc)
            with self._lock:
                self._stats.rows_retained = self.retained_rows
            return
        except Exception:
            self._retained = []
            logger.exception("%s: handing %d rows on failed; they are lost", self.name, rows)
            with self._lock:
                self._stats.rows_dropped += rows
                self._stats.rows_retained = 0
            return
        self._retained = []
        with self._lock:
            self._stats.rows_submitted += rows
            self._stats.rows_retained = 0
        for batch, future in zip(pending, futures, strict=True):
            future.add_done_callback(functools.partial(self._written, rows=batch.num_rows))

    async def drain(self, timeout_s: float) -> None:
        """Keep offering retained rows until they are taken or `timeout_s` passes; then count them lost."""
        deadline = time.monotonic() + timeout_s
        while self._retained and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_RETRY_S)
            self.submit(())
        if self._retained:
            lost = self.retained_rows
            with self._lock:
                self._stats.rows_dropped += lost
                self._stats.rows_retained = 0
            self._retained = []
            logger.error("%s: %d rows were lost at shutdown: the pipeline kept refusing them", self.name, lost)

    def _bounded(self, pending: list[RowBatch]) -> list[RowBatch]:
        """`pending` without its oldest rows beyond `max_retained_rows`, largest tables cut first."""
        excess = sum(batch.num_rows for batch in pending) - self.max_retained_rows
        if excess <= 0:
            return pending
        with self._lock:
            self._stats.rows_dropped += excess
        logger.error(
            "%s: dropping the %d oldest rows: over %d rows wait for a pipeline that keeps refusing",
            self.name,
            excess,
            self.max_retained_rows,
        )
        kept: list[RowBatch] = []
        for batch in sorted(pending, key=lambda b: b.num_rows, reverse=True):
            cut = min(excess, batch.num_rows)
            excess -= cut
            if cut < batch.num_rows:
                kept.append(RowBatch(batch.table, batch.rows.slice(cut)))
        return kept

    def _written(self, future: Future[None], rows: int) -> None:
        error = future.exception()
        if error is None:
            return
        with self._lock:
            self._stats.rows_failed += rows
            log = time.monotonic() >= self._next_failure_log
            if log:
                self._next_failure_log = time.monotonic() + _FAILED_WRITE_LOG_INTERVAL_S
        if log:
            logger.error("%s: writing %d rows failed: %s", self.name, rows, error)


def udp_socket(host: str, *, reuse_port: bool = False) -> socket.socket:
    """An unbound, non-blocking UDP socket for `host`'s family, with a large receive buffer."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):  # the kernel grants what it allows; less is still fine
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setblocking(False)
    return sock


class DatagramReader:
    """Reads every waiting datagram when a UDP socket is readable (up to a cap, so other work gets turns).

    Not asyncio's datagram transport: it reads one datagram per loop iteration, each into a fresh
    256 KiB buffer, and on one core that lost 90% of 1-line StatsD datagrams that this loop takes
    (measured: ~12k vs. ~120k datagrams/s, the generator's limit). `handle` gets each datagram and,
    `with_sender`, the sender's address (flow exporters are told apart by it), else None.
    """

    def __init__(
        self,
        sock: socket.socket,
        handle: Callable[[bytes, tuple[str, int] | None], object],
        name: str,
        *,
        with_sender: bool = False,
    ) -> None:
        self._sock = sock
        self._handle = handle
        self._name = name
        self._with_sender = with_sender

    def __call__(self) -> None:
        sock, handle, with_sender = self._sock, self._handle, self._with_sender
        sender: tuple[str, int] | None = None
        for _ in range(_MAX_DATAGRAMS_PER_WAKEUP):
            try:
                if with_sender:
                    data, sender = sock.recvfrom(_MAX_DATAGRAM_BYTES)
                else:
                    data = sock.recv(_MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP errors on an unconnected UDP socket say nothing about the packets we receive.
                logger.debug("%s UDP socket error: %s", self._name, exc)
                return
            try:
                handle(data, sender)
            except Exception:  # handlers never raise by design; if one did, the next datagram must still be read
                logger.exception("%s datagram could not be handled", self._name)
