"""Every detector family, run together: in a thread of `vigil serve`, or as `vigil detect`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from opentelemetry import trace

from vigil.detectors.canary import CanaryFinalizer
from vigil.detectors.log_patterns import LogPatterns
from vigil.detectors.monitors import Monitors
from vigil.detectors.network import NetworkAnomalies
from vigil.detectors.replication import ReplicationLag
from vigil.detectors.runner import DetectorRunner, Family
from vigil.detectors.self_monitoring import SelfMonitoring
from vigil.detectors.service_regressions import ServiceRegressions
from vigil.detectors.slo import SloBurn, SloCounter
from vigil.self_metrics import DetectorMetrics
from vigil.settings import Settings
from vigil.store.clickhouse_replicas import REPLICA_DELAY_METRIC, ReplicaDelaySampler
from vigil.store.findings import FindingStore
from vigil.store.service_edges import ServiceEdgeRollup

__all__ = ["DetectorEngine", "build_families"]

logger = logging.getLogger(__name__)


def build_families(settings: Settings, client: Client, database: str) -> list[Family]:
    """The detector families that `settings` turn on."""
    counter = SloCounter(client, database, lookback_s=settings.traces_retention_days * 86400.0)
    families: list[Family] = [
        ServiceRegressions(client, database),
        LogPatterns(client, database),
        SloBurn(client, database, counter),
        Monitors(client, database),
    ]
    # On a cluster, ClickHouse's own replicas are watched too (sampled by the engine each round).
    lag_metrics = settings.replication_lag_metric_names + (
        (REPLICA_DELAY_METRIC,) if settings.clickhouse_cluster else ()
    )
    if lag_metrics:
        families.append(
            ReplicationLag(
                client,
                database,
                lag_metrics,
                threshold_seconds=settings.replication_lag_threshold,
            )
        )
    # Always on: with no flows it costs two small queries a minute.
    families.append(NetworkAnomalies(client, database))
    # Vigil's own ingest lag and drops, as its collector role samples them (VIGIL_SELF_METRICS_INTERVAL).
    families.append(SelfMonitoring(client, database, lag_threshold=settings.self_ingest_lag_threshold))
    return families


class DetectorEngine:
    """Runs each family's `DetectorRunner` every `interval` seconds until stopped."""

    def __init__(
        self,
        families: list[Family],
        store: FindingStore,
        *,
        grace: float,
        interval: float,
        clock: Callable[[], float] | None = None,
        canary: CanaryFinalizer | None = None,
        replicas: ReplicaDelaySampler | None = None,
        edges: ServiceEdgeRollup | None = None,
        metrics: DetectorMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.runners = [DetectorRunner(family, store, grace=grace, clock=clock or time.time) for family in families]
        # Vigil's /metrics (lag, round duration, failures) and its own traces (a span per round).
        self.metrics = metrics or DetectorMetrics()
        self.tracer = tracer or trace.NoOpTracer()
        self.canary = canary
        self.replicas = replicas
        self.edges = edges
        self._clock = clock or time.time
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        client: Client,
        database: str,
        *,
        metrics: DetectorMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> DetectorEngine:
        """The families `settings` turn on, with their grace and interval: `vigil serve` and `vigil detect` alike."""
        return cls(
            build_families(settings, client, database),
            FindingStore(client, database),
            grace=settings.detector_grace,
            interval=settings.detector_interval,
            canary=CanaryFinalizer(
                client, database, grace=settings.detector_grace, min_requests=settings.canary_min_requests
            ),
            replicas=(
                ReplicaDelaySampler(client, database, cluster=settings.clickhouse_cluster)
                if settings.clickhouse_cluster
                else None
            ),
            edges=ServiceEdgeRollup(client, database),
            metrics=metrics,
            tracer=tracer,
        )

    def run_once(self, until: float | None = None) -> int:
        """Consume every closed bucket of every family; returns buckets consumed in all."""
        started = time.perf_counter()
        with self.tracer.start_as_current_span("detector round") as span:
            total = self._round(until)
            span.set_attribute("vigil.buckets", total)
        self.metrics.round_duration.observe(time.perf_counter() - started)
        return total

    def _round(self, until: float | None) -> int:
        total = 0
        if self.replicas is not None:
            try:
                self.replicas.sample()
            except Exception:
                logger.exception("sampling ClickHouse replica delays failed; retrying next round")
        for runner in self.runners:
            if self._stop.is_set():
                break  # a family not reached keeps its watermark, so the next leader judges its buckets
            name = runner.family.name
            try:
                with self.tracer.start_as_current_span(f"detect {name}", attributes={"vigil.detector": name}):
                    total += runner.run(until)
            except Exception:
                # One family failing (the store away, a bad model) must not stop the others;
                # its watermark did not move, so the next round retries the same buckets.
                self.metrics.failures.labels(name).inc()
                logger.exception("detector %s failed; retrying next round", name)
            if runner.watermark is not None:
                self.metrics.judged(name, runner.watermark)
        if self.canary is not None and not self._stop.is_set():
            try:
                self.canary.run()
            except Exception:
                logger.exception("judging closed canary analyses failed; retrying next round")
        if self.edges is not None and not self._stop.is_set():
            try:
                self.edges.run(self._clock())
            except Exception:
                # Its watermark did not move: the next round fills the same minutes.
                logger.exception("rolling up calls between services failed; retrying next round")
        return total

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="vigil-detectors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.metrics.forget()  # no lag to report from an engine that stopped
