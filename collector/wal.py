"""The write-ahead log: where rows become durable before they are acknowledged.

ClickHouse wants few, large inserts; OTLP clients want a quick answer, and we may answer
only once their data cannot be lost. The log reconciles the two. The batcher appends each
group of requests as one segment (an Arrow IPC stream, fsynced, renamed into place) and
acknowledges them; the inserter later puts many segments into ClickHouse in one insert and
then deletes them. After a crash, segments still on disk are inserted again at start.

A group of segments is inserted under a deduplication token recorded beforehand in a small
manifest file, so a group that reached ClickHouse just before a crash is recognised and not
counted twice when replayed (ClickHouse insert deduplication, materialized views included).

The log is bounded in bytes; when full, receivers answer "retry later". The same bound
makes it the spill queue while ClickHouse is unreachable.

Layout: one directory per collector (each appended to by one process) under a root::

    collector-0/00000000000000000042.spans.arrow      a segment: sequence number, table, rows
    collector-0/insert-00000000000000000040-00000000000000000042.json   a group being inserted, with its token
    STORE_UNAVAILABLE                                  present while ClickHouse refuses inserts
    quarantine/collector-0/...                         segments that could not be read or inserted
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from vigil.errors import Backpressure, RetryableError, StoreUnavailable
from vigil.types import RowBatch

__all__ = ["LOG_PREFIX", "QUARANTINE", "STORE_UNAVAILABLE_FLAG", "Segment", "WalCapacity", "WriteAheadLog"]

logger = logging.getLogger(__name__)

# Beside the collectors' logs under the root: segments that could not be inserted.
QUARANTINE = "quarantine"
LOG_PREFIX = "collector-"
_SEGMENT = re.compile(r"^(\d{20})\.([a-z_][a-z0-9_]*)\.arrow$")
_MANIFEST = re.compile(r"^insert-(\d{20})-(\d{20})\.json$")


@dataclass(frozen=True, slots=True)
class Segment:
    """One durable group of rows for one table."""

    seq: int
    table: str
    rows: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.seq:020d}.{self.table}.arrow"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Append-only segment files in `directory`; `fsync=False` trades crash safety for speed.

    One process appends to a directory (`open`, `append`); the inserter reads and deletes
    (`segments`, `pending_groups`, `begin_insert`, `commit_insert`), possibly from another process.
    """

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._next_seq = 0

    def open(self) -> None:
        """Prepare to append: numbering continues after the newest segment on disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.discard_unacknowledged()
        numbers = [int(m.group(1)) for p in self.directory.iterdir() if (m := _SEGMENT.match(p.name))]
        with self._lock:
            self._next_seq = max(numbers, default=-1) + 1

    def discard_unacknowledged(self) -> None:
        """Delete segments never renamed into place: they were never acknowledged.

        Only segments: an inserter (perhaps in another process, starting at the same moment) may be
        writing an ``insert-*.json.tmp`` manifest now, and one left by a crash is simply rewritten.
        """
        for leftover in self.directory.glob("*.arrow.tmp"):
            leftover.unlink(missing_ok=True)

    def segments(self, after: int = -1) -> list[Segment]:
        """Segments on disk with a sequence number above `after`, oldest first."""
        found = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        for entry in entries:
            match = _SEGMENT.match(entry.name)
            if match and int(match.group(1)) > after:
                try:
                    with ipc.open_stream(pa.memory_map(entry.path)) as reader:
                        rows = sum(batch.num_rows for batch in reader)
                    size = entry.stat().st_size
                except FileNotFoundError:  # inserted and deleted meanwhile
                    continue
                except (pa.ArrowInvalid, OSError) as exc:
                    # A segment is renamed into place only once complete, so this is damage on
                    # disk: keep the file for inspection, out of the way of the rest.
                    self.quarantine([entry.name], f"unreadable segment: {exc}")
                    continue
                found.append(Segment(int(match.group(1)), match.group(2), rows, size))
        found.sort(key=lambda s: s.seq)
        return found

    @property
    def quarantine_directory(self) -> Path:
        return self.directory.parent / QUARANTINE / self.directory.name

    def quarantine(self, names: list[str], reason: str) -> None:
        """Move files that cannot be inserted out of the log, keeping them for inspection."""
        self.quarantine_directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.directory / name, self.quarantine_directory / name)
        logger.error("moved %s from %s to %s: %s", ", ".join(names), self.directory, self.quarantine_directory, reason)

    def append(self, batch: RowBatch) -> Segment:
        """Write `batch` as a new segment; when this returns, the rows survive a crash."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
        segment_name = f"{seq:020d}.{batch.table}.arrow"
        tmp = self.directory / (segment_name + ".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, batch.rows.schema) as writer:
            writer.write_table(batch.rows)
        if self.fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        # Sized before the rename: once in place, the inserter may insert and delete it at any moment.
        size = tmp.stat().st_size
        os.replace(tmp, self.directory / segment_name)
        if self.fsync:
            _fsync_dir(self.directory)
        return Segment(seq, batch.table, batch.num_rows, size)

    def begin_insert(self, segments: list[Segment], token: str | None = None) -> str:
        """Record the group about to be inserted and return its deduplication token.

        Tokens are random, never derived from sequence numbers: those restart once the log is
        empty, and a reused token would make ClickHouse drop new rows as a duplicate. A replay
        passes the token its manifest recorded, so ClickHouse recognises the earlier insert.
        """
        token = token or uuid.uuid4().hex
        manifest = self._manifest_path(segments)
        tmp = manifest.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"token": token, "segments": [s.name for s in segments]}))
        if self.fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, manifest)
        return token

    def _manifest_path(self, segments: list[Segment]) -> Path:
        return self.directory / f"insert-{segments[0].seq:020d}-{segments[-1].seq:020d}.json"

    def commit_insert(self, segments: list[Segment], manifest: Path | None = None) -> None:
        """The group is in ClickHouse: delete its segments, then its manifest."""
        for segment in segments:
            (self.directory / segment.name).unlink(missing_ok=True)
        (manifest or self._manifest_path(segments)).unlink(missing_ok=True)

    def pending_groups(self, segments: list[Segment]) -> list[tuple[str, list[Segment]]]:
        """Groups whose insert began before a restart, so they are retried with the same token.

        A manifest whose segments are partly gone was committed (segments are deleted only
        after a successful insert); its remaining segments are deleted without inserting.
        """
        by_name = {s.name: s for s in segments}
        groups: list[tuple[str, list[Segment]]] = []
        for manifest in sorted(self.directory.glob("insert-*.json")):
            if not _MANIFEST.match(manifest.name):
                continue
            recorded = json.loads(manifest.read_text())
            names = recorded["segments"]
            present = [by_name[n] for n in names if n in by_name]
            if present and len(present) == len(names):
                groups.append((recorded["token"], present))
            else:
                logger.info("completing the deletion of %s, whose insert had succeeded", manifest.name)
                self.commit_insert(present, manifest)
        return groups


STORE_UNAVAILABLE_FLAG = "STORE_UNAVAILABLE"


class WalCapacity:
    """Whether the logs under `root` may take more rows, shared by every collector process.

    The size is read from disk on each check (once per group the batcher writes, not per
    request), because segments are appended by collector processes and deleted by the
    inserter. The inserter raises a flag file while ClickHouse refuses inserts, so a full log
    is reported as "store unavailable" (503) rather than "slow down" (429).
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def size_bytes(self) -> int:
        total = 0
        for path in self.root.glob(f"{LOG_PREFIX}*/*.arrow"):
            with contextlib.suppress(FileNotFoundError):  # inserted and deleted meanwhile
                total += path.stat().st_size
        return total

    def store_unavailable(self) -> bool:
        """The inserter's last insert failed (ClickHouse unreachable or refusing) and none has succeeded since."""
        return (self.root / STORE_UNAVAILABLE_FLAG).exists()

    def refusal(self, size_bytes: int) -> RetryableError | None:
        """Why the logs, holding `size_bytes`, take no more rows; None while they have room."""
        if size_bytes < self.max_bytes:
            return None
        if self.store_unavailable():
            return StoreUnavailable(
                "ClickHouse has been unavailable and the write-ahead log is full "
                f"({self.max_bytes} bytes); retry later",
                5.0,
            )
        return Backpressure(
            f"the write-ahead log is full ({self.max_bytes} bytes) while inserts catch up; retry shortly", 1.0
        )

    def check(self) -> None:
        """Raise the refusal if the logs are full."""
        refusal = self.refusal(self.size_bytes())
        if refusal is not None:
            raise refusal
