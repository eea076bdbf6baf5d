"""StatsD benchmark: Vigil's receiver and Etsy statsd 0.9.0 under the same UDP generator, on loopback.

    scripts/peers.sh   # once: installs Etsy statsd into build/peers (skipped here if absent)
    .venv/bin/python -m tests.bench.statsd [--seconds 10] [--search 4] [--modes multi,single] [--no-etsy]

Two workloads of the same mixed lines (60% counters, 20% timers, 10% gauges, 10% sets, most with
DogStatsD tags; Etsy's own types only, so Etsy takes every line): (a) ``multi``, ~1,400-byte
datagrams of ~43 lines; (b) ``single``, one line per datagram. The generator and each receiver run
in separate processes (multiprocessing spawn for the Python ones), so neither steals the other's GIL.

For each receiver and workload, a first trial sends as fast as the generator can for `--seconds`;
then up to `--search` trials look for the highest paced rate that loses nothing. Loss is checked on
totals: lines the receiver counted and the sum of every counter, against what was sent (Vigil: the
``metrics_sum`` rows its receiver flushed and its line count; Etsy: ``counters`` on its management
port, with a flush interval longer than the run). It prints a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from tests.statsd_streams import bench_lines, pack

ROOT = Path(__file__).resolve().parents[2]
ETSY = ROOT / "build" / "peers" / "node_modules" / "statsd" / "stats.js"
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Workload:
    packets: list[bytes]
    lines: list[int]  # per packet
    counter_sums: list[int]  # per packet

    def totals(self, sent_packets: int) -> tuple[int, int]:
        """Lines and counter total of the first `sent_packets` packets, cycling through the list."""
        cycles, rest = divmod(sent_packets, len(self.packets))
        lines = cycles * sum(self.lines) + sum(self.lines[:rest])
        counters = cycles * sum(self.counter_sums) + sum(self.counter_sums[:rest])
        return lines, counters


def build_workload(mode: str, seed: int = 7) -> Workload:
    lines = bench_lines(random.Random(seed), 60_000)
    groups = pack([bl.line for bl in lines]) if mode == "multi" else [[bl.line] for bl in lines]
    values = {bl.line: bl.counter_value for bl in lines}
    return Workload(
        packets=[b"\n".join(group) for group in groups],
        lines=[len(group) for group in groups],
        counter_sums=[sum(values[line] for line in group) for group in groups],
    )


def generate(conn: Connection, port: int, packets: list[bytes], rate: float, seconds: float) -> None:
    """Send `packets` round-robin at `rate` packets/s (0: as fast as possible); report how many."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, port))
    send = sock.send
    n = len(packets)
    sent = 0
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = sent + 256 if rate <= 0 else int(elapsed * rate) + 1
        if due <= sent:
            time.sleep(0.0002)
            continue
        while sent < due:
            send(packets[sent % n])
            sent += 1
    conn.send((sent, time.perf_counter() - start))
    sock.close()


class _CountingConsumer:
    """Keeps what the benchmark checks: the total of every counter the receiver flushed."""

    def __init__(self) -> None:
        self.counter_total = 0.0

    def submit_all(self, batches: Sequence[object]) -> list[Future[None]]:
        from vigil.types import RowBatch

        futures: list[Future[None]] = []
        for batch in batches:
            assert isinstance(batch, RowBatch)
            if batch.table == "metrics_sum":
                self.counter_total += sum(batch.rows.column("Value").to_pylist())
            future: Future[None] = Future()
            future.set_result(None)
            futures.append(future)
        return futures


def run_vigil(conn: Connection) -> None:
    """A Vigil StatsD receiver (default 10 s flushes) in this process; answers 'lines' and 'stop'."""
    from vigil.collector.statsd_aggregate import StatsdConfig
    from vigil.collector.statsd_receiver import StatsdReceiver

    async def main() -> None:
        consumer = _CountingConsumer()
        receiver = StatsdReceiver(HOST, 0, StatsdConfig(), consumer)
        await receiver.start()
        conn.send((receiver.udp_port, receiver.udp_receive_buffer))

        def commands() -> None:
            while (command := conn.recv()) != "stop":
                conn.send(receiver.aggregator.stats().lines if command == "lines" else None)

        await asyncio.to_thread(commands)
        await receiver.stop()
        stats = receiver.aggregator.stats()
        conn.send((stats.lines, stats.bad_lines, consumer.counter_total))

    asyncio.run(main())


class VigilReceiver:
    name = "Vigil"

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=run_vigil, args=(child,), daemon=True)
        self._proc.start()
        self.port, self.rcvbuf = self._conn.recv()

    def lines(self) -> int:
        self._conn.send("lines")
        return int(self._conn.recv())

    def finish(self) -> tuple[int, int, float]:
        self._conn.send("stop")
        lines, bad, counters = self._conn.recv()
        self._proc.join(30)
        return lines, bad, counters


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def mgmt(port: int, command: str, until: bytes = b"END") -> str:
    """One management-port command; the answer ends with `until` (the connection stays open)."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        data = b""
        while until not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode()


_INSPECT_ENTRY = re.compile(r"(?:'((?:[^'\\]|\\.)*)'|([A-Za-z_$][\w$]*)): (-?[\d.e+-]+)")


def etsy_counters(port: int) -> dict[str, float]:
    """Etsy's `counters` answer (a util.inspect of an object) as a dict."""
    text = mgmt(port, "counters")
    return {(quoted or bare): float(value) for quoted, bare, value in _INSPECT_ENTRY.findall(text)}


class EtsyReceiver:
    name = "Etsy 0.9.0"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.mgmt_port = free_port(socket.SOCK_STREAM)
        self.rcvbuf = 0
        config = workdir / "etsy-bench.js"
        # No backends and a flush longer than any run: counters accumulate for the whole trial.
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "address": HOST,
                    "mgmt_address": HOST,
                    "mgmt_port": self.mgmt_port,
                    "backends": [],
                    "flushInterval": 3_600_000,
                }
            )
        )
        self._proc = subprocess.Popen(
            ["node", str(ETSY), str(config)],
            cwd=ETSY.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if "up" in mgmt(self.mgmt_port, "health", until=b"\n"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self._kill()
                raise RuntimeError("Etsy statsd did not start")
            time.sleep(0.1)

    def lines(self) -> int:
        return int(etsy_counters(self.mgmt_port).get("statsd.metrics_received", 0))

    def finish(self) -> tuple[int, int, float]:
        counters = etsy_counters(self.mgmt_port)
        self._kill()
        total = sum(v for k, v in counters.items() if not k.startswith("statsd."))
        return int(counters["statsd.metrics_received"]), int(counters["statsd.bad_lines_seen"]), total

    def _kill(self) -> None:
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(10)


@dataclass(frozen=True, slots=True)
class Trial:
    rate: float  # packets/s asked for; 0 = as fast as possible
    sent_lines: int
    lines_per_s: float  # lines received per second of sending
    lost_lines: int
    counters_ok: bool

    @property
    def lossless(self) -> bool:
        return self.lost_lines == 0 and self.counters_ok


def trial(make: Callable[[], VigilReceiver | EtsyReceiver], work: Workload, rate: float, seconds: float) -> Trial:
    receiver = make()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    generator = ctx.Process(target=generate, args=(child, receiver.port, work.packets, rate, seconds), daemon=True)
    generator.start()
    sent_packets, elapsed = parent.recv()
    sender_done = time.monotonic()
    generator.join(10)
    # Let the receiver drain its socket buffer: wait until its line count stops moving. The time it
    # took counts, so a backlog in the buffer does not pass for throughput.
    previous, last_change = -1, sender_done
    while time.monotonic() - last_change < 0.5:
        time.sleep(0.05)
        current = receiver.lines()
        if current != previous:
            previous, last_change = current, time.monotonic()
    lines, _bad, counter_total = receiver.finish()
    sent_lines, sent_counters = work.totals(sent_packets)
    busy = elapsed + max(0.0, last_change - sender_done - 0.05)
    result = Trial(rate, sent_lines, lines / busy, sent_lines - lines, counter_total == sent_counters)
    asked = "flat out" if rate <= 0 else f"{rate * sent_lines / max(sent_packets, 1):,.0f} lines/s asked"
    print(
        f"    {receiver.name} {asked}: sent {sent_lines / elapsed:,.0f} lines/s, took {result.lines_per_s:,.0f},"
        f" lost {result.lost_lines:,}, counter total {'ok' if result.counters_ok else 'WRONG'}",
        flush=True,
    )
    return result


def measure(
    make: Callable[[], VigilReceiver | EtsyReceiver], work: Workload, seconds: float, search: int
) -> tuple[Trial, Trial | None]:
    """A flat-out trial, then a search for the highest paced rate without loss."""
    flat_out = trial(make, work, 0, seconds)
    if flat_out.lossless:
        return flat_out, flat_out
    lines_per_packet = sum(work.lines) / len(work.lines)
    rate = 0.9 * flat_out.lines_per_s / lines_per_packet
    best: Trial | None = None
    low, high = 0.0, flat_out.lines_per_s / lines_per_packet
    for _ in range(search):
        result = trial(make, work, rate, seconds)
        if result.lossless:
            best = result if best is None or rate > best.rate else best
            low = rate
        else:
            high = rate
        rate = (low + high) / 2 if low else rate * 0.7
    return flat_out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--search", type=int, default=4, help="paced trials looking for the lossless rate")
    parser.add_argument("--modes", default="multi,single")
    parser.add_argument("--no-etsy", action="store_true")
    args = parser.parse_args()
    receivers: list[Callable[[], VigilReceiver | EtsyReceiver]] = [VigilReceiver]
    workdir = Path(tempfile.mkdtemp(prefix="vigil-statsd-bench-"))
    if not args.no_etsy:
        if shutil.which("node") and ETSY.exists():
            receivers.append(lambda: EtsyReceiver(workdir))
        else:
            print("Etsy statsd is not installed (run scripts/peers.sh); measuring Vigil only")
    print(f"{os.cpu_count()} CPUs; {args.seconds:g} s per trial; UDP loopback {HOST}")
    rows = []
    for mode in args.modes.split(","):
        work = build_workload(mode)
        per_packet = sum(work.lines) / len(work.lines)
        for make in receivers:
            flat_out, best = measure(make, work, args.seconds, args.search)
            name = "Vigil" if make is VigilReceiver else "Etsy 0.9.0"
            rows.append((name, mode, per_packet, flat_out, best))

    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"{'receiver':<11} {'workload':<16} {'flat out: lines/s':>18} {'loss':>7} {'lossless at: lines/s':>21}")
    for name, mode, per_packet, flat_out, best in rows:
        loss = flat_out.lost_lines / flat_out.sent_lines if flat_out.sent_lines else 0.0
        workload = f"{mode} ({per_packet:.0f}/pkt)"
        lossless = "none found" if best is None else f"{best.lines_per_s:,.0f}"
        if best is flat_out:
            lossless += " (generator-bound)"
        print(f"{name:<11} {workload:<16} {flat_out.lines_per_s:>18,.0f} {loss:>7.2%} {lossless:>21}")


if __name__ == "__main__":
    main()
