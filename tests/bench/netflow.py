"""Flow-ingest benchmark: Vigil and nfcapd side by side, fed the same softflowd-shaped stream over UDP.

    .venv/bin/python -m tests.bench.netflow [--seconds 10] [--version 9] [--records 30] [--prefixes 10000]
        [--quick | --paired RATE,RATE,...]

The stream is built once: a template packet (none for v5), then 64 distinct data packets of
`--records` flows each (softflowd puts ~30 in a datagram), cycled, with the template re-sent every
16 data packets as softflowd does. Sequence numbers are not rewritten, so both receivers count
sequence errors; neither drops flows for them.

Each trial starts a fresh receiver on 127.0.0.1 (so its counts are clean), sends from a separate
process (multiprocessing spawn) at a paced rate for `--seconds`, waits until the receiver's socket
is empty, stops it with SIGTERM (both drain what they decoded) and counts what was stored:

* Vigil: a real ``vigil serve`` (embedded chDB store, default collector processes) enriching every
  flow from a prefix file of `--prefixes` networks (10.0.0.0/8, /24s inside it and 192.0.2.0/24, so
  every flow of the stream has a customer at both ends; 0: no file), counted with ``SELECT count(),
  sum(Bytes)`` on ``vigil.flows`` after it exits, and checked to have no flow left untagged;
* nfcapd: ``nfcapd -b 127.0.0.1 -p PORT -w DIR -t 600``, counted from the summary of
  ``nfdump -R DIR -N`` (every record read back), cross-checked with the stats nfcapd prints on exit.

Receive buffers differ: Vigil asks for 16 MiB (the kernel caps it at net.core.rmem_max and doubles
it), nfcapd keeps the kernel default unless ``--nfcapd-buffer`` passes its ``-B``; the table shows
what each got. A trial is lossless when the flows and the byte total stored equal exactly what was
sent (known from the packets). Per receiver: one flat-out trial, then from `--start` flows/s the
rate doubles (x4 with ``--quick``) until a trial loses, and `--bisect` trials narrow the gap; with
``--paired 100000,200000`` each receiver instead runs once at each rate, in turn, so that load from
other work on a shared machine falls on both alike. Each trial also reports the CPU the receiver's
processes used from the first datagram until their socket was empty, per flow stored: on a shared
machine that says more than a rate. Vigil keeps inserting after that (its log holds what it
received); "stop" is how long it then took to store everything. It prints each trial and a table;
it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

HOST = "127.0.0.1"
TEMPLATE_EVERY = 16  # softflowd's NF9/IPFIX_DEFAULT_TEMPLATE_INTERVAL
DISTINCT_PACKETS = 64
# Generous wall-clock bound for any receiver process; `timeout` kills it even if this script dies.
PROCESS_BUDGET_S = 900
_SUMMARY = re.compile(r"total flows: (\d+), total bytes: (\d+)")
_NFCAPD_STATS = re.compile(r"Flows: (\d+), Packets: \d+, Bytes: (\d+)")


# ---- the stream ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stream:
    packets: list[bytes]  # one cycle, template first
    flows: list[int]  # per packet
    octets: list[int]  # per packet: the sum of the flows' byte counters

    def totals(self, sent_packets: int) -> tuple[int, int]:
        """Flows and bytes in the first `sent_packets` packets, cycling through the list."""
        cycles, rest = divmod(sent_packets, len(self.packets))
        return (
            cycles * sum(self.flows) + sum(self.flows[:rest]),
            cycles * sum(self.octets) + sum(self.octets[:rest]),
        )

    @property
    def flows_per_packet(self) -> float:
        return sum(self.flows) / len(self.packets)


def packet_flows(version: int, packet: bytes) -> tuple[int, int]:
    """Flows and their byte total in a softflowd-shaped packet, read back with `struct` (not the
    generator's random numbers), so the expected totals do not depend on how packets were built."""
    from tests.netflow_packets import SOFTFLOWD_V4

    if version == 5:
        count = struct.unpack_from("!H", packet, 2)[0]
        return count, sum(struct.unpack_from("!I", packet, 24 + 48 * i + 20)[0] for i in range(count))
    record = sum(f[1] for f in SOFTFLOWD_V4)
    octets_at = sum(f[1] for f in SOFTFLOWD_V4[: [f[0] for f in SOFTFLOWD_V4].index(1)])  # element 1: octets
    offset = 20 if version == 9 else 16
    flows = octets = 0
    while offset + 4 <= len(packet):
        set_id, length = struct.unpack_from("!HH", packet, offset)
        if set_id >= 256:  # a data set; 0-3 are templates and options templates
            for i in range((length - 4) // record):
                flows += 1
                octets += struct.unpack_from("!I", packet, offset + 4 + i * record + octets_at)[0]
        offset += length
    return flows, octets


def build_stream(version: int, records: int, template_every: int) -> Stream:
    from tests.netflow_packets import softflowd_like  # here: the generator process need not import scapy

    template = softflowd_like(version, records, 1)[0]
    packets: list[bytes] = []
    for seed in range(1, DISTINCT_PACKETS + 1):
        if version != 5 and (seed - 1) % template_every == 0:
            packets.append(template)
        packets.append(softflowd_like(version, records, seed)[1])
    counted = [packet_flows(version, p) for p in packets]
    return Stream(packets, [c[0] for c in counted], [c[1] for c in counted])


def generate(conn: Connection, port: int, packets: list[bytes], packet_rate: float, seconds: float) -> None:
    """Send `packets` round-robin at `packet_rate` packets/s (0: flat out); report how many and how long."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, port))
    send = sock.send
    n = len(packets)
    sent = errors = 0
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = sent + 256 if packet_rate <= 0 else int(elapsed * packet_rate) + 1
        if due <= sent:
            # Sleep between bursts (a busy loop would take a core from the receiver).
            time.sleep(0.0005)
            continue
        while sent < due:
            try:
                send(packets[sent % n])
            except OSError:  # e.g. ECONNREFUSED from an earlier ICMP: the datagram was not sent
                errors += 1
                time.sleep(0.001)
                continue
            sent += 1
    conn.send((sent, time.perf_counter() - start, errors))
    sock.close()


def write_prefix_file(path: Path, prefixes: int) -> Path:
    """A CSV prefix file of `prefixes` networks holding both ends of every flow of the stream: 10.0.0.0/8
    (the stream's sources), /24s inside it (the most specific wins for some sources), 192.0.2.0/24."""
    lines = ["cidr,customer,site", "10.0.0.0/8,customer-0,site-0", "192.0.2.0/24,destinations,lab"]
    lines += [f"10.{i // 256}.{i % 256}.0/24,customer-{i % 500},site-{i % 20}" for i in range(max(prefixes - 2, 0))]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- sockets and processes -----------------------------------------------------------------------


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def udp_socket_state(port: int) -> tuple[int, int] | None:
    """(bytes queued, datagrams dropped) of the UDP socket bound to HOST:`port`, from /proc/net/udp;
    None when nothing listens there. Works the same for both receivers."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == local:
            return int(parts[4].split(":")[1], 16), int(parts[-1])
    return None


def receive_buffer(port: int) -> int:
    """The receive buffer the kernel granted the socket on `port` (`ss` skmem rb), 0 if unknown."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ss", "-uanmH", "sport", "=", f":{port}"], capture_output=True, text=True, timeout=5
        ).stdout
        match = re.search(r"rb(\d+)", out)
        if match:
            return int(match.group(1))
    return 0


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user and system) used so far by `pid` and its live descendants."""
    from tests.bench.ingest_otlp import child_pids

    total, pending, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    for _ in range(64):  # a bound: Vigil's tree is two levels deep
        if not pending:
            break
        p = pending.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            pending += child_pids(p)
    return total


def tree_peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of `pid` plus its live children, in MiB."""
    from tests.bench.ingest_otlp import tree_peak_rss_mb as peak

    return peak(pid)


def child_pid(pid: int) -> int:
    """The one child of `pid` (the command `timeout` runs), or `pid` itself if it has none yet."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    return pid


def start_bounded(command: list[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    """`command` under `timeout --foreground` in its own session: SIGTERM to the returned process
    reaches the command once (a second one could mean "quit now" to some servers), the whole session
    can be killed at once, and the budget still holds if this script is killed."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["timeout", "--foreground", "-k", "10", str(PROCESS_BUDGET_S), *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_bounded(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL the whole session. True if it stopped by itself."""
    clean = True
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            clean = False
    # Also reaps what the command left behind (Vigil's collector processes, if it died badly).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    return clean and process.returncode == 0


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while udp_socket_state(port) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not listen on UDP {HOST}:{port}:\n{tail}")
        time.sleep(0.05)


# ---- receivers -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Stored:
    flows: int
    octets: int
    clean_stop: bool
    stop_s: float  # SIGTERM to exit: the time it took to store what it had decoded
    note: str = ""
    untagged: int = 0  # flows stored without a customer at either end, though the prefix file names them


class VigilReceiver:
    name = "Vigil"

    def __init__(self, workdir: Path, prefixes: int = 0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-", dir=workdir))
        self.prefixes = prefixes
        self.data = self.dir / "data"  # the write-ahead log goes beside it, in data-wal
        self.port = free_port(socket.SOCK_DGRAM)
        self.log = self.dir / "vigil.log"
        env = dict(os.environ)  # VIGIL_* settings pass through, so a run can tune the server
        env.update(
            VIGIL_BIND=HOST,
            VIGIL_CLICKHOUSE_URL=f"chdb://{self.data}",
            VIGIL_HTTP_PORT=str(free_port(socket.SOCK_STREAM)),
            VIGIL_OTLP_HTTP_PORT=str(free_port(socket.SOCK_STREAM)),
            VIGIL_OTLP_GRPC_PORT=str(free_port(socket.SOCK_STREAM)),
            VIGIL_STATSD_ENABLED="false",
            VIGIL_NETFLOW_ENABLED="true",
            VIGIL_NETFLOW_PORT=str(self.port),
            VIGIL_IPFIX_PORT=str(free_port(socket.SOCK_DGRAM)),
            VIGIL_LOG_LEVEL="WARNING",
        )
        if prefixes:
            env["VIGIL_PREFIX_FILE"] = str(write_prefix_file(self.dir / "prefixes.csv", prefixes))
        self.process = start_bounded([sys.executable, "-m", "vigil.cli", "serve"], env, self.log)
        try:
            wait_listening(self.port, self.process, self.log, "vigil serve", 120)
            # The flow port may open before the rest of the server; wait for /readyz too, so
            # startup work is not mixed into the trial.
            import httpx

            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://{HOST}:{env['VIGIL_HTTP_PORT']}/readyz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("vigil serve did not become ready:\n" + self.log.read_text()[-2000:])
                time.sleep(0.1)
        except BaseException:
            self.close()
            raise

    def peak_rss_mb(self) -> float:
        return tree_peak_rss_mb(child_pid(self.process.pid))

    def cpu_s(self) -> float:
        return tree_cpu_s(child_pid(self.process.pid))

    def finish(self) -> Stored:
        started = time.monotonic()
        clean = stop_bounded(self.process, 180)
        stop_s = time.monotonic() - started
        # A fresh interpreter per count: chDB keeps process-wide state, and each trial has its own path.
        script = (
            "import sys, clickhouse_connect\n"
            "client = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
            'flows, octets, untagged = client.query("SELECT count(), sum(Bytes), '
            "countIf(SrcCustomer = '' OR DstCustomer = '') FROM vigil.flows\").result_rows[0]\n"
            "print(int(flows), int(octets), int(untagged))\n"
        )
        result = subprocess.run(
            ["timeout", "-k", "5", "120", sys.executable, "-c", script, str(self.data)],
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"counting Vigil's flows failed: {result.stderr[-2000:]}")
        flows, octets, untagged = (int(x) for x in result.stdout.split())
        note = "" if clean else f"did not stop cleanly: {self.log.read_text(errors='replace')[-600:]}"
        return Stored(flows, octets, clean, stop_s, note, untagged if self.prefixes else 0)

    def close(self) -> None:
        stop_bounded(self.process, 30)
        shutil.rmtree(self.dir, ignore_errors=True)


class NfcapdReceiver:
    name = "nfcapd"

    def __init__(self, workdir: Path, buffer_bytes: int = 0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nfcapd-", dir=workdir))
        self.store = self.dir / "store"
        self.store.mkdir()
        self.port = free_port(socket.SOCK_DGRAM)
        self.log = self.dir / "nfcapd.log"
        # -t 600: at most one file rotation (on the clock's 10-minute marks) in a trial; -R reads all.
        command = ["nfcapd", "-b", HOST, "-p", str(self.port), "-w", str(self.store), "-t", "600"]
        if buffer_bytes:
            command += ["-B", str(buffer_bytes)]
        self.process = start_bounded(command, None, self.log)
        try:
            wait_listening(self.port, self.process, self.log, "nfcapd", 20)
        except BaseException:
            self.close()
            raise

    def peak_rss_mb(self) -> float:
        return tree_peak_rss_mb(child_pid(self.process.pid))

    def cpu_s(self) -> float:
        return tree_cpu_s(child_pid(self.process.pid))

    def finish(self) -> Stored:
        started = time.monotonic()
        clean = stop_bounded(self.process, 60)
        stop_s = time.monotonic() - started
        flows = octets = 0
        if any(self.store.iterdir()):
            # -N: plain numbers; the summary counts every record nfdump read back.
            result = subprocess.run(
                ["timeout", "-k", "5", "300", "nfdump", "-R", str(self.store), "-N", "-s", "proto", "-n", "0"],
                capture_output=True,
                text=True,
                check=False,
                start_new_session=True,
            )
            match = _SUMMARY.search(result.stdout)
            if match is None:
                raise RuntimeError(f"nfdump printed no summary: {result.stdout[-1000:]} {result.stderr[-1000:]}")
            flows, octets = int(match.group(1)), int(match.group(2))
        note = "" if clean else "did not stop cleanly"
        # nfcapd prints these stats for each file it closes; -t rotates on the clock's 10-minute
        # marks, so a trial can span two files.
        stats = _NFCAPD_STATS.findall(self.log.read_text(errors="replace"))
        said = (sum(int(f) for f, _ in stats), sum(int(b) for _, b in stats))
        if stats and said != (flows, octets):
            note += f" nfcapd said {said[0]:,} flows, {said[1]:,} bytes"
        return Stored(flows, octets, clean, stop_s, note.strip())

    def close(self) -> None:
        stop_bounded(self.process, 30)
        shutil.rmtree(self.dir, ignore_errors=True)


Receiver = VigilReceiver | NfcapdReceiver


# ---- trials and the search -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trial:
    asked: float  # flows/s; 0 = flat out
    sent_flows: int
    sent_per_s: float
    stored_flows: int
    stored_per_s: float  # stored flows per second of sending plus the time the socket took to empty
    octets_ok: bool
    kernel_drops: int  # datagrams the receiver's socket dropped (full buffer)
    peak_rss_mb: float
    rcvbuf: int
    stop_s: float
    cpu_us_per_flow: float  # the receiver's processes, first datagram to empty socket, per flow stored
    untagged: int

    @property
    def lost(self) -> int:
        return self.sent_flows - self.stored_flows

    @property
    def lossless(self) -> bool:
        return self.lost == 0 and self.octets_ok and self.untagged == 0


def trial(make: Callable[[], Receiver], stream: Stream, flow_rate: float, seconds: float) -> Trial:
    receiver = make()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    generator = ctx.Process(
        target=generate,
        args=(child, receiver.port, stream.packets, flow_rate / stream.flows_per_packet, seconds),
        daemon=True,
    )
    try:
        rcvbuf = receive_buffer(receiver.port)
        _, drops_before = udp_socket_state(receiver.port) or (0, 0)
        cpu_before = receiver.cpu_s()
        generator.start()
        if not parent.poll(seconds + 60):
            raise RuntimeError("the generator did not report")
        sent_packets, elapsed, _errors = parent.recv()
        sender_done = time.monotonic()
        generator.join(10)
        # Wait for the socket to empty; that time counts, so a backlog does not pass for throughput.
        drops = drops_before
        while time.monotonic() - sender_done < 120:
            state = udp_socket_state(receiver.port)
            if state is None:
                break
            queued, drops = state
            if queued == 0:
                break
            time.sleep(0.02)
        busy = elapsed + (time.monotonic() - sender_done)
        cpu = receiver.cpu_s() - cpu_before
        rss = receiver.peak_rss_mb()
        stored = receiver.finish()
    finally:
        if generator.is_alive():
            generator.kill()
            generator.join(5)
        receiver.close()
    sent_flows, sent_octets = stream.totals(sent_packets)
    result = Trial(
        asked=flow_rate,
        sent_flows=sent_flows,
        sent_per_s=sent_flows / elapsed,
        stored_flows=stored.flows,
        stored_per_s=stored.flows / busy,
        octets_ok=stored.octets == sent_octets,
        kernel_drops=drops - drops_before,
        peak_rss_mb=rss,
        rcvbuf=rcvbuf,
        stop_s=stored.stop_s,
        cpu_us_per_flow=cpu * 1e6 / stored.flows if stored.flows else 0.0,
        untagged=stored.untagged,
    )
    asked = "flat out" if flow_rate <= 0 else f"{flow_rate:,.0f}/s asked"
    loss = result.lost / sent_flows if sent_flows else 0.0
    print(
        f"    {receiver.name:<6} {asked:>16}: sent {result.sent_per_s:>10,.0f}/s,"
        f" stored {result.stored_per_s:>10,.0f}/s"
        f" ({stored.flows:,} of {sent_flows:,}, loss {loss:.2%}, bytes {'ok' if result.octets_ok else 'differ'},"
        f" socket drops {result.kernel_drops:,}{f', untagged {stored.untagged:,}' if stored.untagged else ''}),"
        f" CPU {result.cpu_us_per_flow:.2f} µs/flow, stop {stored.stop_s:.1f} s, peak RSS {rss:,.0f} MiB"
        + (f" [{stored.note}]" if stored.note else ""),
        flush=True,
    )
    return result


@dataclass(slots=True)
class Measured:
    flat_out: Trial
    best: Trial | None = None  # the highest lossless paced trial
    first_loss: float | None = None  # the lowest paced rate that lost
    trials: list[Trial] = field(default_factory=list)


def measure(
    make: Callable[[], Receiver], stream: Stream, seconds: float, start: float, factor: float, bisect: int
) -> Measured:
    flat_out = trial(make, stream, 0, seconds)
    result = Measured(flat_out, trials=[flat_out])
    if flat_out.lossless:  # the receiver keeps up with the generator: nothing to search
        result.best = flat_out
        return result
    # Paced rates the generator cannot reach would only measure the generator.
    ceiling = flat_out.sent_per_s
    rate = min(start, ceiling)
    for _ in range(10):  # bracket: up while lossless, down while lossy, until one of each
        t = trial(make, stream, rate, seconds)
        result.trials.append(t)
        if t.lossless:
            result.best = t
            if result.first_loss is not None or rate >= ceiling:
                break
            rate = min(rate * factor, ceiling)
        else:
            result.first_loss = rate
            if result.best is not None:
                break
            rate /= factor
    if result.best is None or result.first_loss is None:
        return result
    low, high = result.best.asked, result.first_loss
    for _ in range(bisect):
        rate = (low + high) / 2
        t = trial(make, stream, rate, seconds)
        result.trials.append(t)
        if t.lossless:
            result.best, low = t, rate
        else:
            result.first_loss = high = rate
    return result


def paired(
    makers: dict[str, Callable[[], Receiver]], names: list[str], stream: Stream, seconds: float, rates: list[float]
) -> None:
    """One trial per receiver at each rate, alternating, then a line per rate: stored/s, loss and CPU."""
    results: list[tuple[float, dict[str, Trial]]] = []
    for rate in rates:
        print(f"  {rate:,.0f} flows/s:", flush=True)
        results.append((rate, {name: trial(makers[name], stream, rate, seconds) for name in names}))
    print()
    header = " ".join(f"{name + ': stored/s (loss)':>28} {'CPU µs/flow':>11}" for name in names)
    print(f"{'asked flows/s':>14} {header}")
    for rate, by_name in results:
        cells = []
        for name in names:
            t = by_name[name]
            loss = t.lost / t.sent_flows if t.sent_flows else 0.0
            cells.append(f"{f'{t.stored_per_s:,.0f} ({loss:.2%})':>28} {t.cpu_us_per_flow:>11.2f}")
        print(f"{rate:>14,.0f} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="sending time of each trial")
    parser.add_argument("--version", type=int, choices=[5, 9, 10], default=9, help="NetFlow v5, v9 or IPFIX (10)")
    parser.add_argument("--records", type=int, default=30, help="flows per data packet (v5: at most 30)")
    parser.add_argument("--start", type=float, default=20_000, help="first paced rate, flows/s")
    parser.add_argument("--bisect", type=int, default=3, help="trials narrowing the lossless rate")
    parser.add_argument("--quick", action="store_true", help="rates x4 instead of x2, one bisect trial")
    parser.add_argument("--receivers", default="vigil,nfcapd")
    parser.add_argument("--nfcapd-buffer", type=int, default=0, help="nfcapd -B (bytes); 0: its default")
    parser.add_argument("--template-every", type=int, default=TEMPLATE_EVERY)
    parser.add_argument("--prefixes", type=int, default=10_000, help="networks in Vigil's prefix file; 0: none")
    parser.add_argument(
        "--paired",
        default="",
        help="comma-separated flows/s: instead of the search, one trial of each receiver in turn at each rate"
        " (back to back, so a machine shared with other work loads both alike)",
    )
    args = parser.parse_args()
    factor, bisect = (4.0, min(args.bisect, 1)) if args.quick else (2.0, args.bisect)

    stream = build_stream(args.version, args.records, args.template_every)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-netflow-bench-"))
    makers: dict[str, Callable[[], Receiver]] = {
        "vigil": lambda: VigilReceiver(workdir, args.prefixes),
        "nfcapd": lambda: NfcapdReceiver(workdir, args.nfcapd_buffer),
    }
    names = [n.strip() for n in args.receivers.split(",") if n.strip()]
    if "nfcapd" in names and (shutil.which("nfcapd") is None or shutil.which("nfdump") is None):
        print("nfcapd/nfdump are not installed (apt-get install nfdump); measuring Vigil only")
        names.remove("nfcapd")
    data_size = max(len(p) for p in stream.packets)
    print(
        f"{os.cpu_count()} CPUs; NetFlow v{args.version} ({'IPFIX' if args.version == 10 else 'softflowd-shaped'}),"
        f" {args.records} flows in a {data_size:,}-byte datagram, {len(stream.packets)} packets a cycle"
        f"{'' if args.version == 5 else f' (template every {args.template_every})'};"
        f" {args.seconds:g} s per trial; UDP {HOST};"
        f" Vigil enriches from {f'{args.prefixes:,} prefixes' if args.prefixes else 'no prefix file'}",
        flush=True,
    )
    started = time.monotonic()
    if args.paired:
        try:
            paired(makers, names, stream, args.seconds, [float(r) for r in args.paired.split(",")])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"{time.monotonic() - started:,.0f} s in all.")
        return
    rows: list[tuple[str, Measured]] = []
    try:
        for name in names:
            print(f"  {name}:", flush=True)
            rows.append((name, measure(makers[name], stream, args.seconds, args.start, factor, bisect)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"{'receiver':<8} {'lossless: flows/s':>18} {'lost at':>10} {'flat out: sent/s':>17} {'stored/s':>10}"
        f" {'loss':>7} {'peak RSS':>9} {'rcvbuf':>8} {'CPU µs/flow':>12}"
    )
    for name, m in rows:
        f = m.flat_out
        lossless = "none found" if m.best is None else f"{m.best.sent_per_s:,.0f}"
        if m.best is not None and m.first_loss is None:
            lossless += "+"  # no loss up to the generator's limit
        lost_at = "-" if m.first_loss is None else f"{m.first_loss:,.0f}"
        loss = f.lost / f.sent_flows if f.sent_flows else 0.0
        rss = max(t.peak_rss_mb for t in m.trials)
        print(
            f"{name:<8} {lossless:>18} {lost_at:>10} {f.sent_per_s:>17,.0f} {f.stored_per_s:>10,.0f}"
            f" {loss:>7.2%} {rss:>5,.0f} MiB {f.rcvbuf / 2**20:>4.1f} MiB"
            f" {'-' if m.best is None else f'{m.best.cpu_us_per_flow:.2f}':>12}"
        )
    print(
        f"\nlossless: the highest paced rate at which every flow and byte was stored (sent rate shown);"
        f" lost at: the lowest paced rate tried that lost; flat out: one sender process as fast as it goes,"
        f" stored/s over the sending time plus the time the socket took to empty. Peak RSS: the largest"
        f" over the trials (Vigil: main and collector processes). CPU: the receiver's processes in the highest"
        f" lossless trial, per flow stored. {time.monotonic() - started:,.0f} s in all."
    )


if __name__ == "__main__":
    main()
