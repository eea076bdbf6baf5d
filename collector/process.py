"""Collectors in child processes, sharing the OTLP ports with SO_REUSEPORT.

Decoding OTLP is Python CPU work, so one process gives one core's worth. Each child runs a
whole `Collector` (receivers, decoding, batching, its own write-ahead log) on its own event
loop; the process that owns the store only inserts what the logs hold and serves the API.
Children are spawned, never forked from a process that has chDB open and threads running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

from vigil.collector.collector import Collector, CollectorConfig, UdpReceiverSockets
from vigil.collector.self_monitoring import leave_snapshots, snapshot_path
from vigil.self_metrics import write_snapshot

__all__ = ["CollectorProcesses"]

logger = logging.getLogger(__name__)

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
    """End this process once the Vigil process that owns it is gone, even after its SIGKILL."""

    def watch() -> None:
        while _alive(owner_pid):
            time.sleep(_OWNER_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="vigil-owner-watch", daemon=True).start()


def _collector_main(
    config: CollectorConfig,
    sockets: UdpReceiverSockets | None,
    owner_pid: int,
    ready: Event,
    drain: Event,
    log_level: str,
    nice: int,
) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    _exit_with(owner_pid)
    os.nice(nice)
    # Ctrl-C in a terminal reaches the whole process group, and so does a SIGTERM from `timeout`,
    # `kill -- -PGID` or systemd (KillMode=control-group, its default). The parent decides the
    # order of shutdown, stopping what sends to the collectors first, and sets `drain` when this
    # collector's turn comes; should the parent die instead, `_exit_with` ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=lambda: (drain.wait(), loop.call_soon_threadsafe(stop.set)), name="vigil-drain-wait", daemon=True
        ).start()
        collector = Collector(config, sockets=sockets)
        # The parent serves /metrics: it reads this collector's counts from a file beside its log.
        snapshots = snapshot_path(config.wal_root, config.wal_name)
        try:
            await collector.start()
            snapshots.parent.mkdir(parents=True, exist_ok=True)
            write_snapshot(snapshots, collector.snapshot())  # before ready: never an earlier run's file
            ready.set()
            await leave_snapshots(collector.snapshot, snapshots, stop)
        finally:
            await collector.shutdown()
            with contextlib.suppress(OSError):
                write_snapshot(snapshots, collector.snapshot())  # what the drain added

    asyncio.run(run())


@dataclass(frozen=True, slots=True)
class _Child:
    process: BaseProcess
    drain: Event  # set by the parent when this collector's turn to stop comes


class CollectorProcesses:
    """Starts, watches and stops one child process per `CollectorConfig`.

    `udp_sockets` go to the first collector, the one that runs StatsD and NetFlow; this object
    owns them, and closes the parent's copies once the children have theirs. Children run `nice`
    steps nicer than this process (`os.nice`): decoding can wait while a page or an insert runs.
    """

    def __init__(
        self,
        configs: list[CollectorConfig],
        log_level: str = "INFO",
        udp_sockets: UdpReceiverSockets | None = None,
        nice: int = 0,
    ) -> None:
        self.configs = configs
        self.log_level = log_level
        self.udp_sockets = udp_sockets
        self.nice = nice
        self._children: list[_Child] = []

    def start(self, timeout_s: float = 120.0) -> None:
        context = multiprocessing.get_context("spawn")
        readies = []
        try:
            for index, config in enumerate(self.configs):
                ready, drain = context.Event(), context.Event()
                child = context.Process(
                    target=_collector_main,
                    args=(
                        config,
                        self.udp_sockets if index == 0 else None,
                        os.getpid(),
                        ready,
                        drain,
                        self.log_level,
                        self.nice,
                    ),
                    name=f"vigil-{config.wal_name}",
                )
                child.start()  # the child's copies of the sockets are made here
                self._children.append(_Child(child, drain))
                readies.append(ready)
        finally:
            if self.udp_sockets is not None:
                self.udp_sockets.close()
        deadline = time.monotonic() + timeout_s
        for process, ready in zip((c.process for c in self._children), readies, strict=True):
            while not ready.wait(0.1):
                if not process.is_alive():
                    raise RuntimeError(f"{process.name} exited with code {process.exitcode} while starting")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{process.name} did not start within {timeout_s:.0f} s")

    def exited(self) -> list[str]:
        """Children that are no longer running, with their exit codes."""
        gone = [child.process for child in self._children if not child.process.is_alive()]
        return [f"{process.name} (exit code {process.exitcode})" for process in gone]

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Ask every child to drain into its log and exit; kill any that does not in time."""
        for child in self._children:
            child.drain.set()
        deadline = time.monotonic() + timeout_s
        for child in self._children:
            process = child.process
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                logger.error("%s did not stop in time; killing it (its log keeps what it acknowledged)", process.name)
                process.kill()
                process.join(5)
        self._children = []
