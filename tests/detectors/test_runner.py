"""The runner: closed buckets only, once each, across restarts and replays, into findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from vigil.detectors.base import Anomaly, Observation
from vigil.detectors.runner import Buckets, DetectorRunner, SeriesInfo
from vigil.store.client import Client
from vigil.store.findings import DetectorState, Finding, FindingQuery, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

T0 = 1_700_000_040.0  # a minute boundary
GRACE = 30.0


class OverLimit:
    """Anomalous while values exceed `limit`; onset is the first bucket over it. Records what it saw."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.onset: float | None = None
        self.last = 0.0
        self.seen: list[Observation] = []

    def score_one(self, x: Observation) -> float:
        return 1.0 if x.get("y", 0.0) > self.limit else 0.0

    def learn_one(self, x: Observation) -> None:
        self.seen.append(dict(x))
        if "y" not in x:
            return
        self.last = x["y"]
        if x["y"] > self.limit:
            self.onset = x["t"] if self.onset is None else self.onset
        else:
            self.onset = None

    def anomaly(self) -> Anomaly | None:
        if self.onset is None:
            return None
        severity = "critical" if self.last > 10 * self.limit else "warning"
        return Anomaly(self.onset, self.limit, self.last, 1.0, severity, f"over {self.limit}")


class TableFamily:
    """Buckets from a dict of minute index -> {series: value}, as a rollup would return them."""

    name = "table"
    kind = "test_kind"
    step = 60.0

    def __init__(self, table: Mapping[int, Mapping[str, float]], *, zero_when_absent: bool = False) -> None:
        self.table = table
        self.zero_when_absent = zero_when_absent
        self.reads: list[tuple[float, float]] = []

    def buckets(self, start: float, end: float) -> Buckets:
        self.reads.append((start, end))
        out = []
        for index, values in sorted(self.table.items()):
            t = T0 + 60 * index
            if start <= t < end:
                out.append((t, values))
        return out

    def new_detector(self, series: str) -> OverLimit:
        return OverLimit(100.0)

    def absent_value(self, series: str) -> float | None:
        return 0.0 if self.zero_when_absent else None

    def describe(self, series: str) -> SeriesInfo:
        return SeriesInfo(service=series, operation="op", signal="latency_p95", unit="ms")

    def enrich(self, finding: Finding, now: float) -> Finding:
        return dataclasses.replace(finding, deploy_id="d-1", exemplar_trace_ids=(f"trace-at-{int(now)}",))


def clock_at(minute: int) -> float:
    """A clock at which the bucket of minute index `minute - 1` has just closed."""
    return T0 + 60 * minute + GRACE


@pytest.fixture
def store(chdb_client: Client, database: str) -> FindingStore:
    migrate(chdb_client, DdlContext(database=database))
    return FindingStore(chdb_client, database)


def runner_for(family: TableFamily, store: FindingStore, now: float) -> DetectorRunner:
    runner = DetectorRunner(family, store, grace=GRACE, clock=lambda: now)
    return runner


# A latency step from minute 10 to 14 on "checkout"; "search" stays quiet.
STEP = {m: {"checkout": 200.0 if 10 <= m < 15 else 10.0, "search": 5.0} for m in range(20)}


def replay_from_start(family: TableFamily, store: FindingStore, until_minute: int) -> DetectorRunner:
    runner = runner_for(family, store, clock_at(until_minute))
    runner.reset(T0)
    runner.run()
    return runner


def test_a_step_is_one_finding_from_onset_to_recovery(store: FindingStore) -> None:
    replay_from_start(TableFamily(STEP), store, 20)

    [finding] = store.query(FindingQuery(since=0))
    assert (finding.service, finding.status, finding.severity) == ("checkout", "closed", "warning")
    assert finding.started_at == T0 + 600
    assert finding.ended_at == T0 + 900
    assert (finding.baseline, finding.observed, finding.deploy_id) == (100.0, 200.0, "d-1")
    # Evidence is gathered once, when the finding opens (after the bucket of minute 10 closed).
    assert finding.exemplar_trace_ids == (f"trace-at-{int(T0 + 660)}",)


def test_an_excursion_in_progress_is_open(store: FindingStore) -> None:
    replay_from_start(TableFamily(STEP), store, 12)

    [finding] = store.query(FindingQuery(since=0, status="open"))
    assert (finding.started_at, finding.ended_at) == (T0 + 600, None)


def test_only_closed_buckets_are_consumed(store: FindingStore) -> None:
    family = TableFamily(STEP)
    runner = runner_for(family, store, clock_at(11) - 1)  # minute 10 ends but its grace has not passed
    runner.reset(T0)
    assert runner.run() == 10
    assert runner.watermark == T0 + 600
    assert store.query(FindingQuery(since=0)) == []
    assert store.load_state("table") == DetectorState(T0 + 600, store.load_state("table").state)  # type: ignore[union-attr]


def test_a_restart_resumes_at_the_watermark_without_losing_or_repeating(store: FindingStore) -> None:
    family = TableFamily(STEP)
    replay_from_start(family, store, 12)
    restarted = runner_for(family, store, clock_at(20))
    assert restarted.watermark == T0 + 720
    assert restarted.run() == 8  # minutes 12..19, each once

    [finding] = store.query(FindingQuery(since=0))
    assert (finding.started_at, finding.ended_at, finding.status) == (T0 + 600, T0 + 900, "closed")
    # The checkout detector saw minutes 0..19 exactly once, across both processes.
    checkout = restarted._state.series["checkout"].detector
    assert [x["t"] for x in checkout.seen] == [T0 + 60 * m for m in range(20)]  # type: ignore[attr-defined]


def test_a_replay_after_a_crash_rewrites_the_same_finding(store: FindingStore) -> None:
    family = TableFamily(STEP)
    runner = replay_from_start(family, store, 12)
    saved = store.load_state("table")
    assert saved is not None
    runner.run(until=clock_at(20) - GRACE)
    # A crash after the findings were written but before the state was saved: the old state returns.
    store.save_state("table", saved)
    runner_for(family, store, clock_at(20)).run()

    findings = store.query(FindingQuery(since=0))
    assert [(f.started_at, f.ended_at, f.status) for f in findings] == [(T0 + 600, T0 + 900, "closed")]


def test_sparse_series_see_every_bucket_without_a_value(store: FindingStore) -> None:
    family = TableFamily({0: {"a": 1.0}, 3: {"a": 2.0}})
    runner = replay_from_start(family, store, 5)

    seen = runner._state.series["a"].detector.seen  # type: ignore[attr-defined]
    assert seen == [
        {"t": T0, "y": 1.0},
        {"t": T0 + 60},
        {"t": T0 + 120},
        {"t": T0 + 180, "y": 2.0},
        {"t": T0 + 240},
    ]


def test_counts_are_zero_in_a_bucket_without_rows(store: FindingStore) -> None:
    family = TableFamily({0: {"a": 1.0}, 2: {"a": 2.0}}, zero_when_absent=True)
    runner = replay_from_start(family, store, 3)

    seen = runner._state.series["a"].detector.seen  # type: ignore[attr-defined]
    assert [x.get("y") for x in seen] == [1.0, 0.0, 2.0]


def test_a_series_silent_for_its_ttl_is_forgotten(store: FindingStore) -> None:
    family = TableFamily({0: {"a": 1.0}, 0 + 1: {"b": 1.0}, 5: {"b": 1.0}})
    runner = DetectorRunner(family, store, grace=GRACE, series_ttl=180.0, clock=lambda: clock_at(6))
    runner.reset(T0)
    runner.run()
    assert sorted(runner._state.series) == ["b"]


def test_a_backfill_replaces_the_findings_of_the_replayed_range(store: FindingStore) -> None:
    family = TableFamily(STEP)
    replay_from_start(family, store, 20)
    calmer = TableFamily({m: {"checkout": 10.0} for m in range(20)})
    replay_from_start(calmer, store, 20)
    assert store.query(FindingQuery(since=0)) == []


def test_a_first_start_looks_back_one_bucket(store: FindingStore) -> None:
    family = TableFamily(STEP)
    runner = runner_for(family, store, clock_at(20))
    assert runner.run() == 1
    assert family.reads == [(T0 + 19 * 60, T0 + 20 * 60)]


def test_severity_changes_rewrite_the_open_finding(store: FindingStore) -> None:
    table = {m: {"x": 10.0} for m in range(10)} | {10: {"x": 150.0}, 11: {"x": 5000.0}}
    replay_from_start(TableFamily(table), store, 12)

    [finding] = store.query(FindingQuery(since=0))
    assert (finding.severity, finding.observed, finding.started_at) == ("critical", 5000.0, T0 + 600)


class WrappingFamily(TableFamily):
    """A family whose evidence wraps the detector's sentence, as the log pattern family names its template."""

    def enrich(self, finding: Finding, now: float) -> Finding:
        return dataclasses.replace(finding, summary=f"In {{x}}: {finding.summary}; version 2 began at 12:00.")


def test_a_rewritten_finding_keeps_the_wording_its_evidence_added(store: FindingStore) -> None:
    table = {m: {"x": 10.0} for m in range(10)} | {10: {"x": 150.0}, 11: {"x": 5000.0}}
    replay_from_start(WrappingFamily(table), store, 12)

    [finding] = store.query(FindingQuery(since=0))
    assert finding.observed == 5000.0
    assert finding.summary == "In {x}: over 100.0; version 2 began at 12:00."
