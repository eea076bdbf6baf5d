"""The demo's other signals: OTLP metrics and logs, StatsD lines and NetFlow v5 flows, sent like real peers do.

`vigil demo` runs these beside the traced shop (`vigil.demo`), so every API has data to show: the
OpenTelemetry SDK exports metrics and logs over OTLP/gRPC, StatsD lines go over UDP as a StatsD
client sends them, and NetFlow v5 datagrams describe traffic between two customers' subnets and the
internet. `DEMO_PREFIXES` is the prefix file that names those customers.

The logs tell a small story for the log pattern detectors: after `incident_after_s` (70 minutes by
default, once the services have an hour of history) the payments service cannot reach its ledger
database for five minutes and logs a new ERROR message many times a minute.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass

from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

__all__ = ["DEMO_PREFIXES", "DEMO_SLOS", "DemoFeeds", "DemoTargets"]

DEMO_PREFIXES = """cidr,customer,site
10.1.0.0/16,acme,paris
10.2.0.0/16,globex,berlin
"""
# SLOs over the demo's services, so the SLO page has budgets to show. Payments fails about 2% of
# charges against a 99.5% objective: its budget burns visibly within the first hour.
DEMO_SLOS = """slos:
  frontend-availability:
    service: frontend
    objective: 99
    window: 30d
  payments-availability:
    service: payments
    objective: 99.5
    window: 7d
  checkout-latency:
    service: checkout
    operation: POST /checkout
    kind: latency
    threshold_ms: 500
    objective: 99
    window: 30d
"""
_TICK_S = 1.0
_INCIDENT_AFTER_S = 70 * 60.0
_INCIDENT_S = 5 * 60.0
_JOIN_TIMEOUT_S = 5.0
_V5_HEADER = struct.Struct("!HHIIIIBBH")
_V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")


@dataclass(frozen=True, slots=True)
class DemoTargets:
    """Where the feeds send: Vigil's host, OTLP/gRPC port, StatsD port and NetFlow port (0: not sent)."""

    host: str
    otlp_grpc: int
    statsd: int
    netflow: int


def _v5_packet(flows: list[tuple[str, str, int, int, int, int, int, int]], uptime_ms: int, sequence: int) -> bytes:
    """A NetFlow v5 datagram of (src, dst, sport, dport, proto, tcp_flags, packets, bytes) flows."""
    now = time.time()
    header = _V5_HEADER.pack(5, len(flows), uptime_ms, int(now), int(now % 1 * 1e9), sequence, 0, 0, 0)
    records = b"".join(
        _V5_RECORD.pack(
            *(ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed, bytes(4), 1, 2),
            *(packets, nbytes, uptime_ms - 900, uptime_ms - 100, sport, dport),
            *(0, flags, proto, 0, 0, 0, 24, 24, 0),  # pad, flags, protocol, tos, ASes, masks, pad
        )
        for src, dst, sport, dport, proto, flags, packets, nbytes in flows
    )
    return header + records


class DemoFeeds:
    """Sends metrics, StatsD lines and flows every second from a daemon thread until `shutdown`."""

    def __init__(
        self,
        targets: DemoTargets,
        *,
        seed: int | None = None,
        metric_export_interval_s: float = 5.0,
        incident_after_s: float = _INCIDENT_AFTER_S,
    ) -> None:
        self.targets = targets
        self.incident_after_s = incident_after_s
        self._ticks = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket = socket.socket(socket.AF_INET6 if ":" in targets.host else socket.AF_INET, socket.SOCK_DGRAM)
        self._started = time.monotonic()
        self._sequence = 0
        self._providers: list[MeterProvider] = []
        self._log_providers: list[LoggerProvider] = []
        self._loggers: dict[str, Logger] = {}
        self._export_interval_s = metric_export_interval_s
        if targets.otlp_grpc:
            self._metrics()
            self._logs()

    def _metrics(self) -> None:
        endpoint = f"http://{self.targets.host}:{self.targets.otlp_grpc}"
        for service in ("checkout", "inventory"):
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=endpoint, insecure=True),
                export_interval_millis=int(self._export_interval_s * 1000),
            )
            resource = Resource.create({"service.name": service, "deployment.environment": "demo"})
            provider = MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
            self._providers.append(provider)
            meter = provider.get_meter("vigil.demo")
            meter.create_observable_gauge("process.cpu.utilization", callbacks=[self._cpu], unit="1")
            if service == "checkout":
                self._orders = meter.create_counter("orders.placed", unit="{order}")
                self._order_value = meter.create_histogram("order.value", unit="EUR")
            else:
                self._stock = meter.create_up_down_counter("stock.reserved", unit="{item}")

    def _logs(self) -> None:
        endpoint = f"http://{self.targets.host}:{self.targets.otlp_grpc}"
        for service in ("checkout", "inventory", "payments"):
            resource = Resource.create({"service.name": service, "deployment.environment": "demo"})
            provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            provider.add_log_record_processor(
                BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=1000)
            )
            self._log_providers.append(provider)
            self._loggers[service] = provider.get_logger("vigil.demo")

    def _log(self, service: str, severity: SeverityNumber, body: str) -> None:
        self._loggers[service].emit(severity_number=severity, severity_text=severity.name, body=body)

    def _cpu(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(self._rng.uniform(0.1, 0.6), {"cpu": "0"})]

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="vigil-demo-feeds", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        """Stop sending and flush the metrics. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_TIMEOUT_S)
            self._thread = None
        for provider in self._providers:
            provider.shutdown()
        self._providers = []
        for log_provider in self._log_providers:
            log_provider.shutdown()
        self._log_providers = []
        self._socket.close()

    def tick(self) -> None:
        """One second's worth of every feed."""
        rng = self._rng
        if self._providers:
            for _ in range(rng.randrange(5, 15)):
                self._orders.add(1, {"payment.method": rng.choice(["card", "card", "paypal"])})
                self._order_value.record(round(rng.lognormvariate(3.5, 0.6), 2))
            self._stock.add(rng.randrange(-3, 5), {"warehouse": rng.choice(["par-1", "ber-1"])})
        if self._loggers:
            self._tick_logs()
        self._ticks += 1
        if self.targets.statsd:
            lines = [
                f"shop.cart.views:{rng.randrange(20, 60)}|c|#service:frontend",
                f"shop.queue.depth:{rng.randrange(0, 40)}|g|#service:inventory",
                *(f"payments.card.latency:{rng.lognormvariate(4.5, 0.4):.1f}|ms|#service:payments,provider:visa"
                  for _ in range(10)),
            ]  # fmt: skip
            self._send("\n".join(lines).encode(), self.targets.statsd)
        if self.targets.netflow:
            self._send(self._flows(), self.targets.netflow)

    def _tick_logs(self) -> None:
        rng, info = self._rng, SeverityNumber.INFO
        for _ in range(rng.randrange(5, 15)):
            order = rng.randrange(10**6)
            self._log(
                "checkout",
                info,
                f"order {order} placed with {rng.randrange(1, 6)} items by customer C{rng.randrange(9999)}",
            )
            self._log("payments", info, f"payment for order {order} authorised in {rng.randrange(40, 400)} ms")
        for _ in range(rng.randrange(2, 6)):
            warehouse = rng.choice(["par-1", "ber-1"])
            self._log("inventory", info, f"reserved {rng.randrange(1, 9)} of sku-{rng.randrange(500)} in {warehouse}")
        if rng.random() < 0.05:
            self._log("payments", SeverityNumber.WARN, f"provider visa slow: {rng.randrange(900, 3000)} ms")
        if rng.random() < 0.02:
            self._log("checkout", SeverityNumber.ERROR, f"card declined for order {rng.randrange(10**6)}")
        elapsed = self._ticks * _TICK_S
        if self.incident_after_s <= elapsed < self.incident_after_s + _INCIDENT_S:
            for _ in range(rng.randrange(3, 8)):
                db, retries = rng.randrange(3), rng.randrange(1, 4)
                body = f"ledger write failed: connection to ledger-db-{db} refused after {retries} retries"
                self._log("payments", SeverityNumber.ERROR, body)

    def _flows(self) -> bytes:
        rng = self._rng
        flows = []
        for _ in range(15):  # both directions: 30 records, v5's most per datagram
            client = f"10.{rng.choice([1, 1, 2])}.{rng.randrange(4)}.{rng.randrange(1, 250)}"
            server = f"203.0.113.{rng.randrange(1, 30)}"
            port = rng.choice([443, 443, 443, 80, 53, 22])
            proto = 17 if port == 53 else 6
            packets = rng.randrange(2, 200)
            # A few handshakes that never complete: SYN only, one packet.
            flags = 0x02 if proto == 6 and rng.random() < 0.03 else (0x1B if proto == 6 else 0)
            if flags == 0x02:
                packets = 1
            flows.append((client, server, rng.randrange(32768, 61000), port, proto, flags, packets, packets * 700))
            flows.append((server, client, port, flows[-1][2], proto, 0x1B if proto == 6 else 0, packets, packets * 90))
        uptime_ms = int((time.monotonic() - self._started) * 1000) + 60_000
        self._sequence += len(flows)
        return _v5_packet(flows, uptime_ms, self._sequence)

    def _send(self, data: bytes, port: int) -> None:
        with contextlib.suppress(OSError):  # a demo feed must not stop the demo; Vigil counts what arrives
            self._socket.sendto(data, (self.targets.host, port))

    def _loop(self) -> None:
        while not self._stop.wait(_TICK_S):
            self.tick()
