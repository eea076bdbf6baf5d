"""ClickHouse's own replication delay, sampled into a gauge the replication-lag detector watches.

On a cluster, each replicated table's replicas report how far behind they are
(``system.replicas.absolute_delay``, seconds). Every detector round samples all of them across
the cluster (``clusterAllReplicas``) into `metrics_gauge` as ``clickhouse.replica.absolute_delay``
of service ``clickhouse``, one series per replica and table, so a stalled replica is flagged by
the same rules as any database's replication lag (over the threshold, growing, stopped reporting)
and its history can be charted like any metric.
"""

from __future__ import annotations

import logging

from clickhouse_connect.driver.client import Client

__all__ = ["REPLICA_DELAY_METRIC", "ReplicaDelaySampler"]

logger = logging.getLogger(__name__)

REPLICA_DELAY_METRIC = "clickhouse.replica.absolute_delay"


class ReplicaDelaySampler:
    """Copies every replica's current delay into `metrics_gauge` (one INSERT ... SELECT on the server).

    `source` is what is read: ``clusterAllReplicas(<cluster>, system.replicas)`` by default; any
    table with the columns ``replica_name``, ``database``, ``table`` and ``absolute_delay`` will do.
    """

    def __init__(self, client: Client, database: str, *, cluster: str = "", source: str = "") -> None:
        if not source and not cluster:
            raise ValueError("a cluster name or a source table is needed")
        self.client = client
        self.database = database
        self.source = source or f"clusterAllReplicas('{cluster}', system.replicas)"

    def sample(self, at: float | None = None) -> None:
        """Record every replica's delay now (or as of `at`, unix seconds: replays and tests)."""
        when = "now64(9)" if at is None else "fromUnixTimestamp64Milli(toInt64({at:Float64} * 1000))"
        self.client.command(
            f"""INSERT INTO {self.database}.metrics_gauge
                    (ServiceName, MetricName, MetricDescription, MetricUnit, Attributes, AttributeTypes,
                     StartTimeUnix, TimeUnix, Value)
                SELECT 'clickhouse', {{metric:String}}, 'seconds this replica is behind', 's',
                       map('replica', replica_name, 'table', concat(database, '.', table)),
                       map('replica', 'string', 'table', 'string'),
                       {when}, {when}, toFloat64(absolute_delay)
                FROM {self.source}""",
            parameters={"metric": REPLICA_DELAY_METRIC, "at": at or 0.0},
        )
