"""The write-ahead log and the inserter: durable before acknowledged, inserted exactly once."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.spans import now_ns, raw_request
from tests.waiting import wait_until
from vigil.collector.decode.otlp_traces import decode_traces_protobuf
from vigil.collector.wal import STORE_UNAVAILABLE_FLAG, Segment, WalCapacity, WriteAheadLog
from vigil.collector.writer import Inserter, InserterConfig
from vigil.errors import Backpressure, StoreUnavailable
from vigil.self_metrics import InserterMetrics
from vigil.store.client import Client
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext
from vigil.store.write import StoreWriter
from vigil.types import RowBatch


def span_rows(n: int) -> RowBatch:
    start = now_ns() - 5_000_000_000
    spans = [
        {"trace_id": os.urandom(16), "span_id": os.urandom(8), "start": start, "end": start + 10} for _ in range(n)
    ]
    return decode_traces_protobuf(raw_request(spans).SerializeToString()).batches[0]


def counts(client: Client, database: str) -> tuple[int, int]:
    spans = client.query(f"SELECT count() FROM {database}.spans").result_rows[0][0]
    requests = client.query(f"SELECT sum(Requests) FROM {database}.spans_red_1m").result_rows[0][0]
    return int(spans), int(requests)


@pytest.fixture
def store(chdb_client: Client, database: str) -> StoreWriter:
    migrate(chdb_client, DdlContext(database=database))
    return StoreWriter(chdb_client, database, local_files=True)


def test_appended_segments_are_found_again_after_reopening(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "collector-0")
    wal.open()
    first = wal.append(span_rows(3))
    second = wal.append(span_rows(2))
    reopened = WriteAheadLog(tmp_path / "collector-0")
    reopened.open()
    assert reopened.segments() == [first, second]
    assert [(s.seq, s.table, s.rows) for s in (first, second)] == [(0, "spans", 3), (1, "spans", 2)]
    assert reopened.segments(after=0) == [second]
    assert reopened.append(span_rows(1)).seq == 2
    assert WalCapacity(tmp_path, 1 << 30).size_bytes() == sum(p.stat().st_size for p in tmp_path.glob("*/*.arrow"))


def test_a_segment_never_renamed_into_place_was_never_acknowledged_and_is_dropped(tmp_path: Path) -> None:
    log_dir = tmp_path / "collector-0"
    log_dir.mkdir()
    (log_dir / "00000000000000000007.spans.arrow.tmp").write_bytes(b"half written")
    wal = WriteAheadLog(log_dir)
    wal.open()
    assert wal.segments() == []
    assert list(log_dir.iterdir()) == []


def test_opening_a_log_leaves_an_insert_manifest_being_written_alone(tmp_path: Path) -> None:
    # A collector opens its log while the inserter, started a moment before, writes a manifest.
    log_dir = tmp_path / "collector-0"
    log_dir.mkdir()
    manifest = log_dir / "insert-00000000000000000000-00000000000000000000.json.tmp"
    manifest.write_text('{"token": "t", "segments": ["00000000000000000000.spans.arrow"]}')
    (log_dir / "00000000000000000001.spans.arrow.tmp").write_bytes(b"half written")
    WriteAheadLog(log_dir).open()
    assert [p.name for p in log_dir.iterdir()] == [manifest.name]


def test_a_group_whose_manifest_cannot_be_written_is_inserted_once_it_can(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str
) -> None:
    wal = WriteAheadLog(tmp_path / "collector-0")
    wal.open()
    segment = wal.append(span_rows(4))
    # A directory where the manifest's temporary file goes: writing it fails, as a full disk would.
    blocker = tmp_path / "collector-0" / f"insert-{segment.seq:020d}-{segment.seq:020d}.json.tmp"
    blocker.mkdir()
    registry = CollectorRegistry()
    inserter = Inserter(store, tmp_path, InserterConfig(insert_interval=0.01), metrics=InserterMetrics(registry))
    inserter.start()
    try:
        assert wait_until(
            lambda: registry.get_sample_value("vigil_inserter_failures_total", {"reason": "error"}) == 1.0
        )
        assert counts(chdb_client, database) == (0, 0)
        blocker.rmdir()
        assert inserter.wait_idle(30)
    finally:
        inserter.shutdown()
    assert counts(chdb_client, database) == (4, 4)
    assert list((tmp_path / "collector-0").iterdir()) == []


def test_segments_left_by_an_earlier_run_are_inserted_at_start_and_removed(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str
) -> None:
    for name, sizes in (("collector-0", (4, 6)), ("collector-1", (5,))):
        earlier = WriteAheadLog(tmp_path / name)
        earlier.open()
        for size in sizes:
            earlier.append(span_rows(size))

    inserter = Inserter(store, tmp_path, InserterConfig(insert_interval=0.01))
    inserter.start()
    assert inserter.wait_idle(30)
    inserter.shutdown()
    assert counts(chdb_client, database) == (15, 15)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [Path("collector-0"), Path("collector-1")]


def test_a_group_inserted_just_before_a_crash_is_not_counted_twice(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str
) -> None:
    log_dir = tmp_path / "collector-0"
    wal = WriteAheadLog(log_dir)
    wal.open()
    group = [wal.append(span_rows(5)), wal.append(span_rows(7))]
    later = wal.append(span_rows(2))  # acknowledged after the group was formed, not yet inserted
    token = wal.begin_insert(group)
    store.insert_files("spans", log_dir, [s.name for s in group], rows=12, dedup_token=token)
    # The process dies here: ClickHouse has the group, the log still has its segments and manifest.

    inserter = Inserter(store, tmp_path, InserterConfig(insert_interval=0.01))
    inserter.start()
    assert inserter.wait_idle(30)
    inserter.shutdown()
    assert counts(chdb_client, database) == (14, 14)
    assert later.seq == 2 and list(log_dir.iterdir()) == []


def test_a_group_whose_segments_were_partly_deleted_is_finished_without_inserting_again(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str
) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.open()
    group = [wal.append(span_rows(2)), wal.append(span_rows(3))]
    wal.begin_insert(group)
    # Deletion happens only after a successful insert; a segment gone means the insert succeeded.
    (tmp_path / group[0].name).unlink()
    assert wal.pending_groups(wal.segments()) == []
    assert list(tmp_path.iterdir()) == []
    assert counts(chdb_client, database) == (0, 0)


def test_a_full_log_refuses_new_rows_while_inserts_catch_up(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "collector-0")
    wal.open()
    capacity = WalCapacity(tmp_path, 1024)
    capacity.check()
    wal.append(span_rows(3))
    with pytest.raises(Backpressure) as info:
        capacity.check()
    assert str(info.value) == "the write-ahead log is full (1024 bytes) while inserts catch up; retry shortly"


def test_a_full_log_while_the_store_refuses_inserts_says_the_store_is_unavailable(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "collector-0")
    wal.open()
    wal.append(span_rows(3))
    (tmp_path / STORE_UNAVAILABLE_FLAG).touch()
    with pytest.raises(StoreUnavailable) as info:
        WalCapacity(tmp_path, 1024).check()
    assert (str(info.value), info.value.retry_after_s) == (
        "ClickHouse has been unavailable and the write-ahead log is full (1024 bytes); retry later",
        5.0,
    )


def test_tokens_are_unique_even_when_sequence_numbers_restart(tmp_path: Path) -> None:
    first_run = WriteAheadLog(tmp_path / "a")
    first_run.open()
    second_run = WriteAheadLog(tmp_path / "b")  # a fresh log numbers from 0 again
    second_run.open()
    first = first_run.begin_insert([first_run.append(span_rows(1))])
    second = second_run.begin_insert([second_run.append(span_rows(1))])
    assert first != second


def test_segment_names_sort_in_sequence_order() -> None:
    names = [Segment(seq, "spans", 1, 1).name for seq in (10, 9, 100)]
    assert sorted(names) == [Segment(s, "spans", 1, 1).name for s in (9, 10, 100)]
    assert names[0] == "00000000000000000010.spans.arrow"


def test_a_damaged_segment_is_set_aside_and_the_rest_is_inserted(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str
) -> None:
    log_dir = tmp_path / "collector-0"
    wal = WriteAheadLog(log_dir)
    wal.open()
    wal.append(span_rows(3))
    (log_dir / "00000000000000000001.spans.arrow").write_bytes(b"not arrow at all")
    wal.open()  # numbering continues after the damaged file's number
    wal.append(span_rows(4))

    inserter = Inserter(store, tmp_path, InserterConfig(insert_interval=0.01))
    inserter.start()
    assert inserter.wait_idle(30)
    inserter.shutdown()
    assert counts(chdb_client, database) == (7, 7)
    assert [p.name for p in (tmp_path / "quarantine" / "collector-0").iterdir()] == ["00000000000000000001.spans.arrow"]
    assert list(log_dir.iterdir()) == []


def test_rows_for_an_unknown_table_are_set_aside_without_stopping_the_inserter(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str
) -> None:
    wal = WriteAheadLog(tmp_path / "collector-0")
    wal.open()
    stray = wal.append(RowBatch("nonexistent", span_rows(2).rows))
    wal.append(span_rows(5))

    inserter = Inserter(store, tmp_path, InserterConfig(insert_interval=0.01))
    inserter.start()
    assert inserter.wait_idle(30)
    assert inserter.failing is False
    inserter.shutdown()
    assert counts(chdb_client, database) == (5, 5)
    assert [p.name for p in (tmp_path / "quarantine" / "collector-0").iterdir()] == [stray.name]


class FlakyScanInserter(Inserter):
    """An inserter whose first scan of the logs fails, as a transient filesystem error would."""

    scans = 0

    def _scan(self) -> None:
        self.scans += 1
        if self.scans == 1:
            raise PermissionError("transient: cannot list the log directory")
        super()._scan()


def test_an_unexpected_error_in_the_inserter_is_logged_and_the_loop_goes_on(
    tmp_path: Path, store: StoreWriter, chdb_client: Client, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    wal = WriteAheadLog(tmp_path / "collector-0")
    wal.open()
    wal.append(span_rows(6))
    inserter = FlakyScanInserter(store, tmp_path, InserterConfig(insert_interval=0.01))
    inserter.start()
    assert inserter.wait_idle(30)
    inserter.shutdown()
    assert counts(chdb_client, database) == (6, 6)
    assert "the inserter failed; retrying in 1 s" in caplog.text


def test_an_append_is_not_failed_by_the_inserter_deleting_its_segment_at_once(tmp_path: Path) -> None:
    # The inserter may insert and delete a segment as soon as it is renamed into place, before
    # `append` returns; the rows are durable by then, so the append must not report a failure.
    wal = WriteAheadLog(tmp_path / "collector-0", fsync=False)
    wal.open()
    rows = span_rows(1)
    stop = threading.Event()

    def delete_eagerly() -> None:
        while not stop.is_set():
            for segment in (tmp_path / "collector-0").glob("*.arrow"):
                segment.unlink(missing_ok=True)

    eager = threading.Thread(target=delete_eagerly)
    eager.start()
    try:
        segments = [wal.append(rows) for _ in range(200)]
    finally:
        stop.set()
        eager.join()
    assert [s.seq for s in segments] == list(range(200))
    assert {s.size for s in segments} == {segments[0].size}
