"""The collector stage that gives each log row its template, between the batcher and the log.

Mining here, once per merged batch and before the write-ahead log, means the log holds final
rows: a replay after a crash inserts them as they were acknowledged, without mining again, and
the inserter keeps reading segments in place. Each collector process has its own miner; template
ids derive from content (`vigil.collector.log_templates`), so collectors agree on them.

The miner's state is saved next to the write-ahead log every `snapshot_interval` seconds and at
shutdown, and restored at start. A crash loses at most the generalisations learned since the last
snapshot: ids stay the same, because a cluster's id is a hash of the shape that started it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vigil.collector._component import RowsConsumer
from vigil.collector.log_templates import DIGIT_SHAPE, MAX_BODY_CHARS, LogTemplateMiner
from vigil.store.schema import LOG_TEMPLATE_FIELDS
from vigil.types import RowBatch

__all__ = ["LogTemplater"]

logger = logging.getLogger(__name__)

_SNAPSHOT_INTERVAL_S = 60.0


class LogTemplater:
    """A `RowsConsumer`: adds TemplateId and Template to `logs` batches, then passes every batch on.

    Not thread-safe, like the miner: the batcher's single flusher thread calls `consume`.
    """

    def __init__(
        self,
        next_consumer: RowsConsumer,
        snapshot_path: Path | None,
        *,
        snapshot_interval: float = _SNAPSHOT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.next_consumer = next_consumer
        self.snapshot_path = snapshot_path
        self.snapshot_interval = snapshot_interval
        self._clock = clock
        self.miner = LogTemplateMiner()
        self._last_snapshot = clock()
        self._dirty = False

    def start(self) -> None:
        self.miner = self._restore()
        self._last_snapshot = self._clock()
        start = getattr(self.next_consumer, "start", None)
        if start is not None:
            start()

    def shutdown(self) -> None:
        self.save_snapshot()
        shutdown = getattr(self.next_consumer, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def consume(self, batch: RowBatch) -> None:
        if batch.table == "logs" and "TemplateId" not in batch.rows.column_names:
            batch = RowBatch("logs", self._with_templates(batch.rows))
            if self._clock() - self._last_snapshot >= self.snapshot_interval:
                self.save_snapshot()
        self.next_consumer.consume(batch)

    def _with_templates(self, rows: pa.Table) -> pa.Table:
        n = rows.num_rows
        try:
            ids, templates = self._mine(rows.column("Body"))
            self._dirty = True
        except Exception:
            # A template is an aid to reading logs; the logs themselves must still be stored.
            logger.exception("log template mining failed for %d rows; they are stored without templates", n)
            ids, templates = pa.array(np.zeros(n, dtype=np.uint64)), pa.array([""] * n, pa.string())
        (id_name, id_type), (template_name, template_type) = LOG_TEMPLATE_FIELDS
        rows = rows.append_column(pa.field(id_name, id_type), ids)
        return rows.append_column(pa.field(template_name, template_type), templates)

    def _mine(self, bodies: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
        """Template ids and templates of `bodies`, mining each distinct shape once.

        Bodies that differ only in their digits' values are one shape (`DIGIT_SHAPE`), and a
        batch holds few shapes: computing shapes and mapping results back is vectorised, so the
        Python work per batch follows its shapes, not its rows.
        """
        text = pc.utf8_slice_codeunits(pc.fill_null(bodies, ""), 0, MAX_BODY_CHARS)
        shapes = pc.replace_substring_regex(text, pattern=DIGIT_SHAPE, replacement="1")
        encoded = shapes.combine_chunks().dictionary_encode()
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        _, first, counts = np.unique(indices, return_index=True, return_counts=True)
        representatives = pc.take(text, pa.array(first)).to_pylist()
        mined = [self.miner.mine(body, int(count)) for body, count in zip(representatives, counts, strict=True)]
        # np.unique sorted the dictionary indices: position k of `mined` is dictionary entry k.
        ids = np.fromiter((m.template_id for m in mined), dtype=np.uint64, count=len(mined))
        templates = pa.array([m.template for m in mined], pa.string())
        return pa.array(ids[indices]), pc.take(templates, pa.array(indices))

    def save_snapshot(self) -> None:
        """Write the miner's state (atomically: a crash mid-write leaves the previous snapshot)."""
        self._last_snapshot = self._clock()
        if self.snapshot_path is None or not self._dirty:
            return
        tmp = self.snapshot_path.with_name(self.snapshot_path.name + ".tmp")
        try:
            tmp.write_bytes(self.miner.snapshot())
            os.replace(tmp, self.snapshot_path)
        except OSError:
            # Losing a snapshot costs some template generalisations, never rows: carry on.
            logger.exception("cannot save log templates to %s", self.snapshot_path)
            return
        self._dirty = False

    def _restore(self) -> LogTemplateMiner:
        path = self.snapshot_path
        if path is None or not path.exists():
            return LogTemplateMiner()
        try:
            miner = LogTemplateMiner.restore(path.read_bytes())
        except (OSError, ValueError) as exc:
            logger.warning("cannot restore log templates from %s (%s); mining starts afresh", path, exc)
            return LogTemplateMiner()
        logger.info("restored %d log templates from %s", miner.template_count, path)
        return miner
