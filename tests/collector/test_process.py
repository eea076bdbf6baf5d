"""Collector processes: started by their owner, run nicer than it, stopped when it says."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from vigil.collector.collector import CollectorConfig
from vigil.collector.process import CollectorProcesses


def test_collector_processes_run_as_much_nicer_than_their_owner_as_asked(tmp_path: Path) -> None:
    config = CollectorConfig(
        host="127.0.0.1",
        otlp_grpc_port=0,
        otlp_http_port=0,
        wal_root=str(tmp_path),
        wal_name="collector-0",
        wal_fsync=False,
        max_wal_bytes=1 << 30,
        max_batch_rows=1000,
        max_batch_age=0.01,
        max_queue_rows=10_000,
        max_request_bytes=1 << 20,
        max_grpc_message_bytes=1 << 21,
    )
    processes = CollectorProcesses([config], nice=7)
    processes.start()
    try:
        (child,) = [p for p in multiprocessing.active_children() if p.name == "vigil-collector-0"]
        assert child.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + 7, 19)
    finally:
        processes.shutdown()
    assert not child.is_alive() and child.exitcode == 0
