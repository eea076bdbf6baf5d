"""Recognising a retried OTLP request, so that its rows are stored once.

OTLP has no request id. An exporter that lost our answer (its timeout fired, the connection
broke, this collector died between the durable write and the response) sends the same
request again: the same signal and, once decompressed, the same bytes. Identical bytes carry
identical span ids, timestamps and values, so a repeat of a request already written adds
nothing: it is answered with success and not written again. Gzip output is not compared
(its header holds a time, so a recompressed retry differs); the decompressed body is.

Each collector remembers the digest of every request it wrote in the last `window` seconds, at
most `max_requests` of them (the oldest are forgotten first), in memory and in a journal
beside its log (``collector-N.requests``), so a restart still recognises the retries of
requests acknowledged, or written but not yet answered, before it. A digest is journaled only
once its rows are durable, so a request is never wrongly taken for a repeat; a crash in the
instant between the write and the journal line lets one retry through, stored twice. The
journal is not fsynced: it survives a crash of Vigil; after a crash of the machine, a lost
line again only means a duplicate, never a loss.

A request's rows for several tables (a metrics request with gauges and histograms) are written
together, but may not all become durable: the log can fill between two tables. The tables that
were written are remembered on their own (`once_per_part`), so the client's retry of the refused
request writes only the rest, and no table gets its rows twice.

Collector processes on one host (sharing the OTLP ports, so a retry may reach another one) read
each other's journals. Collectors on other hosts behind a load balancer learn of each other's
requests through ClickHouse: `vigil.collector.request_exchange` journals theirs beside these
(``fleet.requests``), read here as a sibling's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vigil.errors import ConfigError

__all__ = [
    "JOURNAL_SUFFIX",
    "DedupConfig",
    "JournalTail",
    "RequestDedup",
    "journal_line",
    "part_digest",
    "read_journal",
    "request_digest",
    "rewrite_journal",
]

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".requests"
_DEFAULT_WINDOW_S = 600.0
# About 250 bytes of memory each (12 MB); 50,000 covers 10 minutes at 83 requests a second per collector.
_DEFAULT_MAX_REQUESTS = 50_000
_DIGEST_BYTES = 16
# How often other processes' journals are looked for (they appear as those processes start).
_SIBLING_SCAN_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """`window` seconds (0: off) and at most `max_requests` digests remembered."""

    window: float = _DEFAULT_WINDOW_S
    max_requests: int = _DEFAULT_MAX_REQUESTS

    def validate(self) -> None:
        if self.window < 0:
            raise ConfigError(f"dedup window must be 0 (off) or a positive duration, got {self.window}")
        if self.max_requests < 1:
            raise ConfigError(f"dedup max_requests must be at least 1, got {self.max_requests}")


def request_digest(signal: str, media_type: str, body: bytes) -> bytes:
    """What identifies a request: its signal, media type and decompressed body.

    >>> kind = "application/x-protobuf"
    >>> request_digest("traces", kind, b"x") == request_digest("logs", kind, b"x")
    False
    """
    digest = hashlib.sha256(f"{signal}\0{media_type}\0".encode())
    digest.update(body)
    return digest.digest()[:_DIGEST_BYTES]


def part_digest(digest: bytes, part: str) -> bytes:
    """What identifies one part of a request (its rows for one table), remembered like a request.

    >>> part_digest(b"r" * 16, "0:metrics_gauge") != part_digest(b"r" * 16, "1:metrics_histogram")
    True
    """
    return hashlib.sha256(digest + b"\0" + part.encode()).digest()[:_DIGEST_BYTES]


@dataclass(slots=True)
class _InFlight:
    """Requests with one digest being handled now: the first writes, the others wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass(slots=True)
class JournalTail:
    """How far another process's journal has been read."""

    inode: int = -1
    offset: int = 0


class RequestDedup:
    """Runs each distinct request's write once per window; repeats are answered without writing.

    `journal` is this collector's file (None: remember in memory only). Other ``*.requests``
    files in its directory are other collector processes' journals, read but never written.
    """

    def __init__(
        self, config: DedupConfig, journal: Path | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        config.validate()
        self.config = config
        self.journal = journal
        self._clock = clock  # wall time: the journal outlives the process
        self._known: OrderedDict[bytes, float] = OrderedDict()
        self._own: deque[tuple[float, bytes]] = deque()  # what this process journaled, for compaction
        self._journal_lines = 0
        self._fd: int | None = None
        self._tails: dict[Path, JournalTail] = {}
        self._last_sibling_scan = float("-inf")
        self._in_flight: dict[bytes, _InFlight] = {}
        self.deduplicated = 0  # read by the collector's snapshot (Vigil's /metrics)

    def start(self) -> None:
        """Recall the digests journaled within the window, by this collector and its siblings."""
        if self.journal is None or self._fd is not None:
            return
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        now = self._clock()
        own = read_journal(self.journal, JournalTail())
        for stamp, digest in own:
            if stamp > now - self.config.window:
                self._own.append((stamp, digest))
        self._trim_own(now)
        self._remember(own)
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._journal_lines = len(own)
        self._scan_siblings(now)
        if self._known:
            logger.info("remembering %d request digests from before the start", len(self._known))

    def shutdown(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    async def once(self, digest: bytes, write: Callable[[], Awaitable[None]]) -> bool:
        """Run `write` unless a request with `digest` was written within the window; True if it was.

        A repeat arriving while the first is being written waits for it: if the first succeeds
        the repeat is answered as a duplicate; if it fails, the repeat is written itself.
        """

        async def write_whole(_: Sequence[int]) -> list[BaseException | None]:
            await write()
            return [None]

        return await self._once(digest, [digest], write_whole)

    async def once_per_part(
        self,
        digest: bytes,
        parts: Sequence[str],
        write: Callable[[Sequence[int]], Awaitable[Sequence[BaseException | None]]],
    ) -> bool:
        """Like `once`, for a request in `parts` (its tables): `write(indexes)` writes the parts at
        `indexes`, those not written within the window, and returns each one's outcome (None:
        durable). Parts that became durable are remembered even when others failed; then the
        first failure is raised. True if no part was left to write.
        """
        return await self._once(digest, [part_digest(digest, part) for part in parts], write)

    async def _once(
        self,
        digest: bytes,
        keys: Sequence[bytes],
        write: Callable[[Sequence[int]], Awaitable[Sequence[BaseException | None]]],
    ) -> bool:
        if all(self._seen(key) for key in keys):
            self._count()
            return True
        in_flight = self._in_flight.get(digest)
        if in_flight is None:
            in_flight = self._in_flight[digest] = _InFlight()
        in_flight.users += 1
        try:
            async with in_flight.lock:
                # Parts written by an earlier attempt, or by the first while this one waited, are skipped.
                todo = [i for i, key in enumerate(keys) if not self._seen(key, siblings=False)]
                if not todo:
                    self._count()
                    return True
                outcomes = await write(todo)
                for index, outcome in zip(todo, outcomes, strict=True):
                    if outcome is None:
                        self._record(keys[index])
                failure = next((outcome for outcome in outcomes if outcome is not None), None)
                if failure is not None:
                    raise failure
                return False
        finally:
            in_flight.users -= 1
            if not in_flight.users:
                del self._in_flight[digest]

    def _count(self) -> None:
        self.deduplicated += 1

    def _seen(self, digest: bytes, *, siblings: bool = True) -> bool:
        now = self._clock()
        if siblings and digest not in self._known:
            # Another collector process on this host may have written it (the retry came to us).
            self._scan_siblings(now)
        stamp = self._known.get(digest)
        return stamp is not None and stamp > now - self.config.window

    def _record(self, digest: bytes) -> None:
        now = self._clock()
        self._remember([(now, digest)])
        if self._fd is None:
            return
        self._own.append((now, digest))
        self._trim_own(now)
        try:
            os.write(self._fd, journal_line(now, digest))
        except OSError:
            # The rows are durable and will be acknowledged; only recognising a retry after a
            # restart is at stake, which is not worth failing the request for.
            logger.exception("cannot append to the request journal %s", self.journal)
            return
        self._journal_lines += 1
        if self._journal_lines >= 2 * self.config.max_requests:
            self._compact()

    def _remember(self, entries: list[tuple[float, bytes]]) -> None:
        known = self._known
        for stamp, digest in entries:
            known[digest] = max(stamp, known.get(digest, stamp))
        cutoff = self._clock() - self.config.window
        # Oldest first (entries arrive roughly in time order): forget the expired and the excess.
        while known and (len(known) > self.config.max_requests or next(iter(known.values())) <= cutoff):
            known.popitem(last=False)

    def _trim_own(self, now: float) -> None:
        while self._own and (len(self._own) > self.config.max_requests or self._own[0][0] <= now - self.config.window):
            self._own.popleft()

    def _compact(self) -> None:
        """Rewrite this collector's journal with only what is still remembered (atomically)."""
        assert self.journal is not None and self._fd is not None
        os.close(self._fd)
        self._fd = rewrite_journal(self.journal, self._own)
        self._journal_lines = len(self._own)

    def _scan_siblings(self, now: float) -> None:
        if self.journal is None:
            return
        if now - self._last_sibling_scan >= _SIBLING_SCAN_INTERVAL_S:
            self._last_sibling_scan = now
            for path in self.journal.parent.glob(f"*{JOURNAL_SUFFIX}"):
                if path != self.journal:
                    self._tails.setdefault(path, JournalTail())
        for path, tail in self._tails.items():
            self._remember(read_journal(path, tail))


def read_journal(path: Path, tail: JournalTail) -> list[tuple[float, bytes]]:
    """(stamp, digest) of the complete lines of `path` past `tail` (from the start again if the file was replaced)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return []
    if status.st_ino != tail.inode or status.st_size < tail.offset:
        tail.inode, tail.offset = status.st_ino, 0  # compacted by its owner: a new file
    if status.st_size == tail.offset:
        return []
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
        handle.seek(tail.offset)
        data = handle.read(status.st_size - tail.offset)
        complete = data.rfind(b"\n") + 1  # a line being appended now is read next time
        tail.offset += complete
        return [entry for raw in data[:complete].splitlines() if (entry := _parse(raw)) is not None]
    return []


def rewrite_journal(path: Path, entries: Iterable[tuple[float, bytes]]) -> int:
    """Replace `path` atomically by a journal of `entries`; returns a descriptor appending to it.

    Readers following the old file see a new one (another inode) and read it from the start.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(journal_line(stamp, digest) for stamp, digest in entries))
    os.replace(tmp, path)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def journal_line(stamp: float, digest: bytes) -> bytes:
    """One journal line: the wall time in milliseconds and the digest in hex.

    >>> journal_line(1.5, bytes(16))
    b'1500 00000000000000000000000000000000\\n'
    """
    return b"%d %s\n" % (int(stamp * 1000), digest.hex().encode())


def _parse(raw: bytes) -> tuple[float, bytes] | None:
    stamp, _, digest = raw.partition(b" ")
    try:
        parsed = (int(stamp) / 1000, bytes.fromhex(digest.decode()))
    except ValueError:
        return None  # a damaged line costs one digest, not the journal
    return parsed if len(parsed[1]) == _DIGEST_BYTES else None
