"""The collector stage that stores each log row with its template, and keeps the miner across restarts."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest

from vigil.collector.log_templates import template_id_of
from vigil.collector.log_templating import LogTemplater
from vigil.store.schema import LOGS_ARROW_SCHEMA
from vigil.types import RowBatch


class Sink:
    """The next stage: keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[RowBatch] = []
        self.started = self.stopped = False

    def consume(self, batch: RowBatch) -> None:
        self.batches.append(batch)

    def start(self) -> None:
        self.started = True

    def shutdown(self) -> None:
        self.stopped = True


def logs(*bodies: str | None) -> RowBatch:
    columns = {name: [None] * len(bodies) for name in LOGS_ARROW_SCHEMA.names}
    columns["Body"] = list(bodies)
    columns["ServiceName"] = ["api"] * len(bodies)
    return RowBatch("logs", pa.Table.from_pydict(columns, schema=LOGS_ARROW_SCHEMA))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_rows_get_template_id_and_template_and_other_tables_pass_unchanged(tmp_path: Path) -> None:
    sink = Sink()
    templater = LogTemplater(sink, tmp_path / "c.templates")
    templater.start()
    templater.consume(logs("Disk /dev/sda1 is full", "Disk /dev/sdb2 is full", "", None))
    spans = RowBatch("spans", pa.table({"x": [1]}))
    templater.consume(spans)

    rows = sink.batches[0].rows
    disk = template_id_of("Disk <PATH> is full")
    assert rows.column("TemplateId").to_pylist() == [disk, disk, 0, 0]
    assert rows.column("Template").to_pylist() == ["Disk <PATH> is full", "Disk <PATH> is full", "", ""]
    assert rows.schema.field("TemplateId").type == pa.uint64()
    assert rows.column("Body").to_pylist() == ["Disk /dev/sda1 is full", "Disk /dev/sdb2 is full", "", None]
    assert sink.batches[1] is spans
    assert sink.started


def test_the_miner_is_saved_at_shutdown_and_every_interval_and_restored_at_start(tmp_path: Path) -> None:
    path = tmp_path / "c.templates"
    clock = Clock()
    first = LogTemplater(Sink(), path, snapshot_interval=60, clock=clock)
    first.start()
    first.consume(logs("Started worker alpha in pool main for tenant acme"))
    assert not path.exists()  # not yet due
    clock.now = 61
    first.consume(logs("Started worker beta in pool main for tenant acme"))
    assert path.exists()
    first.consume(logs("Started worker beta in pool spare for tenant acme"))
    first.shutdown()

    sink = Sink()
    second = LogTemplater(sink, path)
    second.start()
    second.consume(logs("Started worker gamma in pool north for tenant acme"))
    # The restored miner knows the generalised template learned before the restart.
    assert sink.batches[0].rows.column("Template").to_pylist() == ["Started worker <*> in pool <*> for tenant acme"]
    assert sink.batches[0].rows.column("TemplateId").to_pylist() == [
        template_id_of("Started worker alpha in pool main for tenant acme")
    ]


def test_an_unreadable_snapshot_starts_mining_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.templates"
    path.write_bytes(b"not a snapshot")
    sink = Sink()
    templater = LogTemplater(sink, path)
    with caplog.at_level(logging.WARNING):
        templater.start()
    assert "cannot restore log templates" in caplog.text
    templater.consume(logs("hello 42"))
    assert sink.batches[0].rows.column("Template").to_pylist() == ["hello <NUM>"]


def test_rows_are_stored_without_templates_when_mining_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    templater = LogTemplater(sink, tmp_path / "c.templates")
    templater.start()

    def broken(body: str, count: int = 1) -> object:
        raise RecursionError("pathological body")

    monkeypatch.setattr(templater.miner, "mine", broken)
    templater.consume(logs("a", "b"))
    rows = sink.batches[0].rows
    assert rows.column("Body").to_pylist() == ["a", "b"]
    assert rows.column("TemplateId").to_pylist() == [0, 0]
    assert "log template mining failed for 2 rows" in caplog.text


def test_a_batch_mines_each_shape_once_and_counts_every_line() -> None:
    sink = Sink()
    templater = LogTemplater(sink, None)
    bodies = [f"order {i} took {i * 7} ms" for i in range(1, 400)] + ["cache cleared", "order 5 took 35 ms"]
    templater.consume(logs(*bodies))
    rows = sink.batches[0].rows
    order = template_id_of("order <NUM> took <NUM> ms")
    assert rows.column("TemplateId").to_pylist() == [order] * 399 + [template_id_of("cache cleared"), order]
    assert set(rows.column("Template").to_pylist()) == {"order <NUM> took <NUM> ms", "cache cleared"}
    # Every line counts towards its template, though each shape was masked once.
    sizes = {c.get_template(): c.size for c in templater.miner._drain.id_to_cluster.values()}
    assert sizes == {"order <NUM> took <NUM> ms": 400, "cache cleared": 1}
