"""End to end: replication lag gauges over OTLP/HTTP become replication-lag findings."""

from __future__ import annotations

import time

import httpx
import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tests.collector.otlp_values import kvs
from tests.conftest import RunningVigil
from vigil.detectors.replication import ReplicationLag
from vigil.detectors.runner import DetectorRunner
from vigil.store.clickhouse_replicas import REPLICA_DELAY_METRIC, ReplicaDelaySampler
from vigil.store.client import Client, open_client
from vigil.store.findings import FindingQuery, FindingStore
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

REPORT_S = 10


def lag_request(service: str, replica: str, points: list[tuple[float, float]]) -> bytes:
    gauge = Gauge(
        data_points=[
            NumberDataPoint(time_unix_nano=int(t * 1e9), as_double=lag, attributes=kvs({"replica": replica}))
            for t, lag in points
        ]
    )
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(attributes=kvs({"service.name": service})),
                scope_metrics=[
                    ScopeMetrics(metrics=[Metric(name="db.replication.lag_seconds", unit="s", gauge=gauge)])
                ],
            )
        ]
    )
    return request.SerializeToString()


def test_a_stalled_replica_is_flagged_within_a_minute_and_a_noisy_one_never(quiet_vigil: RunningVigil) -> None:
    rng = np.random.default_rng(3)
    start = int(time.time()) // 60 * 60 - 3600
    stall = start + 1800 + 5  # db-2 stops applying; its lag grows 1 s per second
    times = [start + REPORT_S * i for i in range(360)]
    noisy = [(t, float(rng.uniform(0, 3))) for t in times]
    stalled = [(t, float(rng.uniform(0, 3)) + max(0.0, t - stall)) for t in times]
    for replica, points in (("db-1", noisy), ("db-2", stalled)):
        response = httpx.post(
            f"{quiet_vigil.otlp_http}/v1/metrics",
            content=lag_request("orders-db", replica, points),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    quiet_vigil.flush()

    client = open_client(quiet_vigil.settings.clickhouse_url)
    database = quiet_vigil.settings.clickhouse_database
    store = FindingStore(client, database)
    family = ReplicationLag(client, database, ("db.replication.lag_seconds",), threshold_seconds=30.0)
    runner = DetectorRunner(family, store, grace=0.0, clock=lambda: stall + 60)
    runner.reset(start)
    runner.run()

    [finding] = store.query(FindingQuery(since=0))
    assert (finding.kind, finding.service, finding.operation) == ("replication_lag", "orders-db", "replica=db-2")
    assert finding.status == "open"
    assert stall - 20 <= finding.started_at <= stall + 20
    assert finding.unit == "s"


def test_clickhouse_replica_delays_are_sampled_and_a_stalled_replica_is_flagged(
    chdb_client: Client, database: str
) -> None:
    """On a cluster the sampler reads clusterAllReplicas(...system.replicas); here a table of the
    same columns stands in for it (no ClickHouse cluster runs in the tests)."""
    migrate(chdb_client, DdlContext(database=database))
    chdb_client.command(
        f"CREATE TABLE {database}.replicas_now (replica_name String, database String, table String, "
        "absolute_delay UInt32) ENGINE = Memory"
    )
    sampler = ReplicaDelaySampler(chdb_client, database, source=f"{database}.replicas_now")
    start = int(time.time()) // 60 * 60 - 3600
    stall = start + 1800 + 5
    for i in range(186):
        t = start + REPORT_S * i
        chdb_client.command(f"TRUNCATE TABLE {database}.replicas_now")
        delay = max(0, t - stall)
        chdb_client.command(
            f"INSERT INTO {database}.replicas_now VALUES ('ch-1', 'vigil', 'spans_local', 0), "
            f"('ch-2', 'vigil', 'spans_local', {delay})"
        )
        sampler.sample(at=t)

    points = chdb_client.query(
        f"SELECT ServiceName, MetricUnit, Attributes['replica'], Attributes['table'], count(), max(Value) "
        f"FROM {database}.metrics_gauge WHERE MetricName = '{REPLICA_DELAY_METRIC}' GROUP BY 1, 2, 3, 4 ORDER BY 3"
    ).result_rows
    assert points == [
        ("clickhouse", "s", "ch-1", "vigil.spans_local", 186, 0.0),
        ("clickhouse", "s", "ch-2", "vigil.spans_local", 186, 45.0),  # 45 s behind at the last sample
    ]
    store = FindingStore(chdb_client, database)
    family = ReplicationLag(chdb_client, database, (REPLICA_DELAY_METRIC,), threshold_seconds=30.0)
    runner = DetectorRunner(family, store, grace=0.0, clock=lambda: stall + 60)
    runner.reset(start)
    runner.run()
    [finding] = store.query(FindingQuery(since=0))
    assert (finding.service, finding.operation, finding.signal) == (
        "clickhouse",
        "replica=ch-2,table=vigil.spans_local",
        REPLICA_DELAY_METRIC,
    )
    assert stall - 20 <= finding.started_at <= stall + 20


def test_on_a_cluster_every_replica_of_the_cluster_is_read(chdb_client: Client) -> None:
    sampler = ReplicaDelaySampler(chdb_client, "vigil", cluster="prod")
    assert sampler.source == "clusterAllReplicas('prod', system.replicas)"
