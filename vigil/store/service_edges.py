"""Calls between services per minute (`service_edges_1m`), rolled up from spans.

A span whose parent span belongs to another service is one call from the parent's service
(the caller) to the span's own (the callee). Finding the parent takes a join of spans with
spans, too slow to run when a page is read on a big store, so `ServiceEdgeRollup` runs it once
per closed minute with the detectors and the service page reads the rollup.

A minute is closed `close_after_s` after its end, so spans that arrive a little late still
count. The rollup resumes after the last minute it filled (its watermark is kept with the
detectors' state), never reaches back further than `max_catch_up_s`, and rewrites a minute whole
when it fills it again, so re-running a minute never doubles its counts.
"""

from __future__ import annotations

import logging
import math

from clickhouse_connect.driver.client import Client

from vigil.store.findings import DetectorState, FindingStore

__all__ = ["PARENT_LOOKBACK_S", "ServiceEdgeRollup"]

logger = logging.getLogger(__name__)

_MINUTE = 60
# A parent span may start this long before its child (a slow request's late downstream call).
PARENT_LOOKBACK_S = 15 * 60
# Minutes filled by one query: bounds the join's memory during a catch-up.
_CHUNK_S = 10 * 60
_STATE_KEY = "service_edges_1m"


class ServiceEdgeRollup:
    """Fills `service_edges_1m` for every closed minute not yet done; see the module docstring."""

    def __init__(
        self, client: Client, database: str, *, close_after_s: float = 120.0, max_catch_up_s: float = 6 * 3600.0
    ) -> None:
        self.client = client
        self.database = database
        self.close_after_s = close_after_s
        self.max_catch_up_s = max_catch_up_s
        self._state = FindingStore(client, database)

    def closed_until(self, now: float) -> float:
        """The end of the newest closed minute at `now`."""
        return math.floor((now - self.close_after_s) / _MINUTE) * _MINUTE

    def run(self, now: float) -> int:
        """Fill every closed minute after the last one filled; returns how many minutes that was
        (minutes without calls included: they are done too)."""
        end = self.closed_until(now)
        saved = self._state.load_state(_STATE_KEY)
        start = end - self.max_catch_up_s
        if saved is not None:
            start = max(start, saved.watermark)
        if start >= end:
            return 0
        done = int((end - start) // _MINUTE)
        start = self._first_minute_with_calls(start, end)
        if start >= end:  # no calls to roll up: only the watermark moves
            self._state.save_state(_STATE_KEY, DetectorState(end, b""))
        while start < end:
            chunk_end = min(end, start + _CHUNK_S)
            self.fill(start, chunk_end)
            self._state.save_state(_STATE_KEY, DetectorState(chunk_end, b""))
            start = chunk_end
        return done

    def _first_minute_with_calls(self, start: float, end: float) -> float:
        """The first minute in [start, end) with a span that has a parent, else `end`: a catch-up over
        a quiet or new store skips its empty chunks (each a join) with this one query."""
        count, first = self.client.query(
            f"""SELECT count(), toUnixTimestamp(min(Timestamp)) FROM {self.database}.spans
                WHERE Timestamp >= toDateTime({{start:Int64}}) AND Timestamp < toDateTime({{end:Int64}})
                  AND ParentSpanId != ''""",
            parameters={"start": int(start), "end": int(end)},
        ).result_rows[0]
        if not count:
            return end
        return max(start, float(math.floor(first / _MINUTE) * _MINUTE))

    def fill(self, start: float, end: float) -> None:
        """(Re)write the calls of the whole minutes in [start, end), by the minute their callee span started."""
        if start % _MINUTE or end % _MINUTE:
            raise ValueError(f"fill({start}, {end}): start and end must be whole minutes (multiples of 60)")
        db = self.database
        # Children are spans with a parent that started in the window; their parents are looked up
        # only among those traces (the bloom filter on TraceId skips the rest) and a short while back.
        # On a cluster the parents' `TraceId IN` would be a subquery over a distributed table, which
        # ClickHouse refuses by default; spans are sharded by trace, so each shard may answer it from
        # its own spans (`distributed_product_mode = 'local'`).
        self.client.command(
            f"""INSERT INTO {db}.service_edges_1m (Minute, Caller, Callee, Calls, Errors, DurationSum, UpdatedAt)
                SELECT toStartOfMinute(child.Timestamp) AS minute, parent.ServiceName AS caller,
                       child.ServiceName AS callee, count(), countIf(child.StatusCode = 'Error'),
                       sum(child.Duration), now64(3)
                FROM (
                    SELECT TraceId, ParentSpanId, ServiceName, StatusCode, Duration, Timestamp
                    FROM {db}.spans
                    WHERE Timestamp >= toDateTime({{start:Int64}}) AND Timestamp < toDateTime({{end:Int64}})
                      AND ParentSpanId != ''
                ) AS child
                ANY INNER JOIN (
                    SELECT TraceId, SpanId, ServiceName
                    FROM {db}.spans
                    WHERE Timestamp >= toDateTime({{parents_start:Int64}}) AND Timestamp < toDateTime({{end:Int64}})
                      AND TraceId IN (
                          SELECT TraceId FROM {db}.spans
                          WHERE Timestamp >= toDateTime({{start:Int64}}) AND Timestamp < toDateTime({{end:Int64}})
                            AND ParentSpanId != '')
                ) AS parent
                ON child.TraceId = parent.TraceId AND child.ParentSpanId = parent.SpanId
                WHERE parent.ServiceName != child.ServiceName
                GROUP BY minute, caller, callee
                SETTINGS distributed_product_mode = 'local'""",
            parameters={"start": int(start), "end": int(end), "parents_start": int(start - PARENT_LOOKBACK_S)},
        )
        logger.debug("service edges filled for [%s, %s)", start, end)
