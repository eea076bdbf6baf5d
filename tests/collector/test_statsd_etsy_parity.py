"""Parity with the reference daemon: Etsy statsd 0.9.0 and Vigil aggregate the same recorded stream.

The daemon (installed by ``scripts/peers.sh`` into build/peers) runs on loopback with a 1 s flush,
the console backend, its management port, and a 15-line backend written here that appends each
flush's aggregates as one JSON line. Those are Etsy's own numbers (``process_metrics``); the backend
only serialises them, which is sturdier than reading the console backend's ``util.inspect`` text.

Each window's packets go to Etsy right after one of its flushes and into a `StatsdAggregator`; the
two aggregates are then compared stat by stat where both define it the same way: counter values
(sample rates applied), gauges (deltas, persistence), set sizes, and for timers count, lower,
upper, mean (equal rates within a series), sum (rate 1 only), upper_<p> against our p/100 quantile
(omitted by both when the rank rounds to 0), and Etsy's median against our 0.5 for odd counts.
Where we deliberately differ, the test pins both behaviours (h as a summary, not a counter; events
and service checks as logs, not bad lines; idle series are not rewritten).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from vigil.collector.statsd_aggregate import StatsdAggregator, StatsdConfig

ROOT = Path(__file__).resolve().parents[2]
ETSY = ROOT / "build" / "peers" / "node_modules" / "statsd" / "stats.js"
PERCENTILES = (10, 50, 90, 95)
FLUSH_MS = 1000

JSON_BACKEND = """
// One JSON line per flush with Etsy's own aggregates; runs before Etsy clears them (listeners in order).
const fs = require('fs');
exports.init = function (startupTime, config, events) {
  events.on('flush', function (timestamp, metrics) {
    const sets = {};
    for (const key in metrics.sets) { sets[key] = metrics.sets[key].values(); }
    fs.appendFileSync(config.jsonOut, JSON.stringify({
      timestamp: timestamp, counters: metrics.counters, gauges: metrics.gauges,
      timer_data: metrics.timer_data, sets: sets
    }) + '\\n');
  });
  return true;
};
"""

# The recorded stream, as datagrams (several lines in most, as buffering clients send them).
WINDOW_1: list[bytes] = [
    b"py.hits:1|c\npy.hits:4|c|@0.5\nraw.count:1|c|@0.1",
    b"py.temp:20|g\npy.temp:-3|g\nraw.gauge:+5|g\nneg.gauge:0|g\nneg.gauge:-5|g",
    b"py.lat:12.5|ms\npy.lat:3|ms\npy.lat:7.25|ms\npy.lat:100|ms\npy.lat:42|ms\npy.lat:42|ms\npy.lat:0.5|ms",
    b"lat.even:5|ms\nlat.even:1|ms\nlat.even:8|ms\nlat.even:3|ms\nlat.even:2|ms\nlat.even:7|ms\nlat.even:4|ms\nlat.even:6|ms",
    b"lat.rated:10|ms|@0.5\nlat.rated:30|ms|@0.5\nlat.rated:20|ms|@0.5\nlat.rated:40|ms|@0.5",
    b"lat.one:42|ms",
    b"lat.two:20|ms\nlat.two:10|ms",
    b"py.users:alice|s\npy.users:bob|s\npy.users:alice|s\npy.users:carol|s",
    b"dd.req:1|c|#env:dev,route:x\ndd.req:2|c|#env:dev,route:x\ndd.req:5|c|#env:prod,route:x",
    b"dd.lat:5|ms|#env:dev\ndd.lat:15|ms|#env:dev\ndd.lat:10|ms|#env:dev",
    b"dd.g:3|g|#env:dev",
]
WINDOW_2: list[bytes] = [
    b"py.hits:2|c|@0.25",
    b"py.temp:+4|g\nraw.gauge:-2|g\nabs.gauge:7|g",
    b"py.lat:1|ms\npy.lat:3|ms\npy.lat:2|ms",
    b"py.users:dave|s",
    b"dd.req:1|c|#env:dev,route:x",
]
# Lines where Vigil follows DogStatsD instead of Etsy; sent in window 1, checked separately.
DEVIATIONS: list[bytes] = [b"dd.size:512|h|#env:dev\n_e{6,10}:Deploy|v1 shipped|t:info\n_sc|app.ok|0|m:fine"]


def etsy_key(name: str, attributes: list[tuple[str, str]]) -> str:
    """The key Etsy makes of a name and its tags (as sent, which the stream sends sorted), sanitised like Etsy."""
    key = name + "".join(f";{k}={v}" for k, v in attributes)
    key = re.sub(r"\s+", "_", key).replace("/", "-")
    return re.sub(r"[^a-zA-Z_\-0-9.;=]", "", key)


def line_count(packets: list[bytes]) -> int:
    return sum(1 for packet in packets for line in packet.split(b"\n") if line)


class EtsyDaemon:
    def __init__(self, workdir: Path) -> None:
        self.out = workdir / "flushes.jsonl"
        backend = workdir / "json_backend.js"
        backend.write_text(JSON_BACKEND)
        self.port = free_port()
        self.mgmt_port = free_port()
        config = workdir / "etsy.js"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "address": "127.0.0.1",
                    "mgmt_address": "127.0.0.1",
                    "mgmt_port": self.mgmt_port,
                    "flushInterval": FLUSH_MS,
                    "percentThreshold": list(PERCENTILES),
                    "backends": ["./backends/console", str(backend)],
                    "console": {"prettyprint": False},
                    "jsonOut": str(self.out),
                }
            )
        )
        self.log = workdir / "etsy.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["node", str(ETSY), str(config)], cwd=ETSY.parent, stdout=log, stderr=log, start_new_session=True
            )

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.mgmt_port), timeout=1) as sock:
                    sock.sendall(b"health\n")
                    if b"health: up" in sock.recv(100):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"Etsy statsd did not come up:\n{self.log.read_text()}")

    def flushes(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.endswith("}")]

    def next_flush(self, seen: int, timeout: float = 4 * FLUSH_MS / 1000) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            flushes = self.flushes()
            if len(flushes) > seen:
                return flushes[seen]
            time.sleep(0.01)
        raise AssertionError(f"no flush from Etsy statsd within {timeout} s:\n{self.log.read_text()[-2000:]}")

    def send(self, packets: list[bytes]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for packet in packets:
                sock.sendto(packet, ("127.0.0.1", self.port))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def etsy(tmp_path: Path) -> Iterator[EtsyDaemon]:
    if shutil.which("node") is None or not ETSY.exists():
        pytest.skip("Etsy statsd 0.9.0 is not installed: run scripts/peers.sh (needs node and npm)")
    daemon = EtsyDaemon(tmp_path)
    try:
        daemon.wait_healthy()
        yield daemon
    finally:
        daemon.stop()


def run_windows(daemon: EtsyDaemon, windows: list[list[bytes]]) -> list[dict[str, Any]]:
    """Send each window right after one of Etsy's flushes; return the flush that follows each."""
    results = []
    seen = len(daemon.flushes())
    for packets in windows:
        daemon.next_flush(seen)  # a flush just happened: the whole next interval is ahead
        seen += 1
        daemon.send(packets)
        flushed = daemon.next_flush(seen)
        seen += 1
        # Every line of the window arrived within this one flush interval.
        assert flushed["counters"]["statsd.metrics_received"] == line_count(packets)
        results.append(flushed)
    return results


def vigil_windows(windows: list[list[bytes]]) -> list[dict[str, dict[str, Any]]]:
    """Vigil's rows per window, keyed by table then by Etsy's key for the series."""
    agg = StatsdAggregator(StatsdConfig(percentiles=PERCENTILES), start=0.0)
    results = []
    for i, packets in enumerate(windows):
        for packet in packets:
            agg.ingest(packet)
        tables: dict[str, dict[str, Any]] = {}
        for batch in agg.flush(float(i + 1)):
            rows = tables.setdefault(batch.table, {})
            for row in batch.rows.to_pylist():
                key = row["EventName"] if batch.table == "logs" else etsy_key(row["MetricName"], row["Attributes"])
                assert key not in rows
                rows[key] = row
        results.append(tables)
    return results


def quantiles(row: dict[str, Any]) -> dict[float, float]:
    return dict(zip(row["ValueAtQuantiles.Quantile"], row["ValueAtQuantiles.Value"], strict=True))


def sent_series(packets: list[bytes]) -> dict[str, tuple[set[float], int]]:
    """Per Etsy key: the sample rates its lines carried and how many values were sent."""
    sent: dict[str, tuple[set[float], int]] = {}
    for packet in packets:
        for line in packet.decode().split("\n"):
            name, _, rest = line.partition(":")
            tags = rest.partition("|#")[2]
            key = etsy_key(name, [(t.partition(":")[0], t.partition(":")[2]) for t in tags.split(",")] if tags else [])
            rate = re.search(r"\|@([\d.]+)", rest)
            rates, values = sent.get(key, (set(), 0))
            rates.add(float(rate.group(1)) if rate else 1.0)
            sent[key] = (rates, values + 1)
    return sent


def compare(etsy_flush: dict[str, Any], ours: dict[str, dict[str, Any]], packets: list[bytes]) -> None:
    """Every series sent in `packets` has the same aggregates in Etsy's flush and in our rows."""
    sent = sent_series(packets)
    counters = {k: v for k, v in etsy_flush["counters"].items() if k in sent}
    assert {k: row["Value"] for k, row in ours.get("metrics_sum", {}).items() if k in sent} == counters

    gauges = {k: v for k, v in etsy_flush["gauges"].items() if k in sent}
    sets = {k: len(v) for k, v in etsy_flush["sets"].items() if k in sent}
    assert {k: row["Value"] for k, row in ours.get("metrics_gauge", {}).items() if k in sent} == {**gauges, **sets}

    timers = {k: v for k, v in etsy_flush["timer_data"].items() if k in sent}
    summaries = {k: row for k, row in ours.get("metrics_summary", {}).items() if k in sent}
    assert sorted(summaries) == sorted(timers)
    for key, etsy_timer in timers.items():
        row, (rates, values) = summaries[key], sent[key]
        ours_q = quantiles(row)
        assert row["Count"] == round(etsy_timer["count"]), key
        assert (ours_q[0.0], ours_q[1.0]) == (etsy_timer["lower"], etsy_timer["upper"]), key
        if len(rates) == 1:  # with one rate in a series, the weighted mean is the plain one
            assert row["Sum"] / row["Count"] == etsy_timer["mean"], key
        if rates == {1.0}:  # Etsy's sum ignores sample rates
            assert row["Sum"] == etsy_timer["sum"], key
        for pct in PERCENTILES:
            assert ours_q.get(pct / 100) == etsy_timer.get(f"upper_{pct}"), (key, pct)
        if values % 2:  # Etsy's median is the nearest-rank one only for odd counts
            assert ours_q[0.5] == etsy_timer["median"], key


def assert_idle(etsy_flush: dict[str, Any], ours: dict[str, dict[str, Any]], packets: list[bytes]) -> None:
    """Series not sent in this window: Etsy reports 0 / count 0 / no members and keeps gauges; we write nothing."""
    sent = sent_series(packets)
    assert all(v == 0 for k, v in etsy_flush["counters"].items() if k not in sent and not k.startswith("statsd."))
    assert all(v["count"] == 0 for k, v in etsy_flush["timer_data"].items() if k not in sent)
    assert all(not v for k, v in etsy_flush["sets"].items() if k not in sent)
    assert {k for table, rows in ours.items() if table != "logs" for k in rows} == set(sent)


def test_vigil_aggregates_the_recorded_stream_like_etsy_statsd(etsy: EtsyDaemon) -> None:
    windows = [WINDOW_1 + DEVIATIONS, WINDOW_2]
    etsy_flushes = run_windows(etsy, windows)
    ours = vigil_windows(windows)

    compare(etsy_flushes[0], ours[0], WINDOW_1)
    assert {k for table, rows in ours[0].items() if table != "logs" for k in rows} == {
        *sent_series(WINDOW_1),
        "dd.size;env=dev",
    }
    compare(etsy_flushes[1], ours[1], WINDOW_2)
    assert_idle(etsy_flushes[1], ours[1], WINDOW_2)
    assert sorted(ours[1]["metrics_gauge"]) == ["abs.gauge", "py.temp", "py.users", "raw.gauge"]

    # Spot checks of the known values (PEERS.md 2.3), so a shared mistake cannot pass unnoticed.
    first, second = etsy_flushes
    assert first["counters"]["py.hits"] == 9 and ours[0]["metrics_sum"]["py.hits"]["Value"] == 9
    assert first["counters"]["raw.count"] == 10
    assert first["gauges"]["py.temp"] == 17 and first["gauges"]["neg.gauge"] == -5 and first["gauges"]["raw.gauge"] == 5
    assert first["timer_data"]["lat.rated"]["count"] == 8
    assert "upper_10" not in first["timer_data"]["lat.two"] and 0.1 not in quantiles(
        ours[0]["metrics_summary"]["lat.two"]
    )
    assert second["gauges"]["py.temp"] == 21 and second["gauges"]["raw.gauge"] == 3
    # Even counts: Etsy's median averages the middle pair, our 0.5 quantile is the lower one.
    assert first["timer_data"]["lat.even"]["median"] == 4.5
    assert quantiles(ours[0]["metrics_summary"]["lat.even"])[0.5] == 4

    # Deliberate differences: Etsy counts |h as a counter and refuses events and service checks.
    assert first["counters"]["dd.size;env=dev"] == 512
    size = ours[0]["metrics_summary"]["dd.size;env=dev"]
    assert (size["Count"], size["Sum"]) == (1, 512.0)
    assert first["counters"]["statsd.bad_lines_seen"] == 3  # the event's two ':'-pieces and the check
    assert sorted(row["EventName"] for row in ours[0]["logs"].values()) == ["Deploy", "app.ok"]
