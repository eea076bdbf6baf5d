"""Vigil's tables: their Arrow row shape, their DDL, and versioned migrations.

Signal tables follow the OpenTelemetry Collector's ClickHouse exporter (``otel_traces``):
DateTime64(9) timestamps, LowCardinality service and span names, Map attributes, Nested
events and links, a bloom filter on the trace id, daily partitions and a TTL. Two
additions: ``ServiceVersion`` is lifted out of the resource (rollups and deploy detection
group by it), and ``*AttributeTypes`` maps remember the OTLP type of every attribute that is
not a string, so the API gives back ``200`` for an int and ``"200"`` for a string.

Two deliberate departures from the exporter, measured on chDB (docs/BENCHMARKS.md): no
bloom-filter indexes on attribute map keys and values, and ClickHouse's default LZ4 rather
than ZSTD(1). Together they made inserts about 1.3-1.4x faster; attribute filters scan within
the (service, span name, time) order key instead of skipping granules by bloom filter.

The same definitions produce single-node DDL (MergeTree) and cluster DDL
(ReplicatedMergeTree local tables plus Distributed tables, ``ON CLUSTER``).

>>> ddl = DdlContext(database="vigil", cluster="", traces_retention_days=7)
>>> print(create_table_statements(SPANS_TRACE_ID_TS, ddl)[0].splitlines()[0])
CREATE TABLE IF NOT EXISTS vigil.spans_trace_id_ts
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

__all__ = [
    "CANARY_ANALYSES",
    "DEPLOYS",
    "DETECTOR_STATE",
    "ERROR_SPANS",
    "FINDINGS",
    "FLOWS",
    "FLOWS_1M",
    "FLOWS_ARROW_SCHEMA",
    "FLOW_EXPORTERS",
    "FLOW_EXPORTERS_ARROW_SCHEMA",
    "FLOW_PORTS_TOPK",
    "LEASES",
    "LOGS",
    "LOGS_ARROW_SCHEMA",
    "LOG_PATTERNS_1M",
    "LOG_TEMPLATE_FIELDS",
    "METRICS_CATALOG",
    "METRIC_ARROW_SCHEMAS",
    "METRIC_TABLES",
    "MIGRATIONS",
    "SERVICE_EDGES_1M",
    "SERVICE_VERSIONS",
    "SLOS",
    "SLO_MINUTES",
    "SPANS",
    "SPANS_ARROW_SCHEMA",
    "SPANS_RED_1M",
    "SPANS_RED_BY_SERVICE",
    "SPANS_STATUS_INDEX",
    "SPANS_TRACE_ID_TS",
    "AddColumns",
    "AddProjection",
    "Backfill",
    "DdlContext",
    "Migration",
    "Table",
    "create_table_statements",
]

_STRING_MAP = "Map(LowCardinality(String), String)"
_TYPE_MAP = "Map(LowCardinality(String), LowCardinality(String))"

_attr_map = pa.map_(pa.string(), pa.string())

# The row shape every span decoder produces and StoreWriter inserts; names are ClickHouse columns.
SPANS_ARROW_SCHEMA = pa.schema(
    [
        ("Timestamp", pa.timestamp("ns", tz="UTC")),
        ("TraceId", pa.string()),
        ("SpanId", pa.string()),
        ("ParentSpanId", pa.string()),
        ("TraceState", pa.string()),
        ("SpanName", pa.string()),
        ("SpanKind", pa.string()),
        ("ServiceName", pa.string()),
        ("ServiceVersion", pa.string()),
        ("ResourceAttributes", _attr_map),
        ("ResourceAttributeTypes", _attr_map),
        ("ScopeName", pa.string()),
        ("ScopeVersion", pa.string()),
        ("SpanAttributes", _attr_map),
        ("SpanAttributeTypes", _attr_map),
        ("Duration", pa.uint64()),
        ("StatusCode", pa.string()),
        ("StatusMessage", pa.string()),
        ("Events.Timestamp", pa.list_(pa.timestamp("ns", tz="UTC"))),
        ("Events.Name", pa.list_(pa.string())),
        ("Events.Attributes", pa.list_(_attr_map)),
        ("Events.AttributeTypes", pa.list_(_attr_map)),
        ("Links.TraceId", pa.list_(pa.string())),
        ("Links.SpanId", pa.list_(pa.string())),
        ("Links.TraceState", pa.list_(pa.string())),
        ("Links.Attributes", pa.list_(_attr_map)),
        ("Links.AttributeTypes", pa.list_(_attr_map)),
    ]
)

# The row shape every log decoder produces; names are ClickHouse columns of `logs`.
LOGS_ARROW_SCHEMA = pa.schema(
    [
        ("Timestamp", pa.timestamp("ns", tz="UTC")),
        ("ObservedTimestamp", pa.timestamp("ns", tz="UTC")),
        ("TraceId", pa.string()),
        ("SpanId", pa.string()),
        ("TraceFlags", pa.uint8()),
        ("SeverityText", pa.string()),
        ("SeverityNumber", pa.uint8()),
        ("ServiceName", pa.string()),
        ("ServiceVersion", pa.string()),
        ("Body", pa.string()),
        ("BodyType", pa.string()),
        ("EventName", pa.string()),
        ("ResourceAttributes", _attr_map),
        ("ResourceAttributeTypes", _attr_map),
        ("ScopeName", pa.string()),
        ("ScopeVersion", pa.string()),
        ("LogAttributes", _attr_map),
        ("LogAttributeTypes", _attr_map),
    ]
)

# What the collector adds to each log row before its write-ahead log: the body's template
# (`vigil.collector.log_templates`). Decoders produce `LOGS_ARROW_SCHEMA`; the log holds this.
LOG_TEMPLATE_FIELDS = [("TemplateId", pa.uint64()), ("Template", pa.string())]

# Metrics: one table per OTLP point type, as the exporter has (``otel_metrics_gauge`` ...).
# Every point type shares the identity columns; the point's own columns follow. Histogram
# `Sum`, `Min` and `Max` are optional in OTLP and stay null when absent. `AggregationTemporality`
# is OTLP's enum (1 delta, 2 cumulative); summaries carry it too, because StatsD timer
# aggregates are per-flush (delta) while OTLP summaries are cumulative.
_METRIC_IDENTITY = [
    ("ServiceName", pa.string()),
    ("ServiceVersion", pa.string()),
    ("ResourceAttributes", _attr_map),
    ("ResourceAttributeTypes", _attr_map),
    ("ScopeName", pa.string()),
    ("ScopeVersion", pa.string()),
    ("MetricName", pa.string()),
    ("MetricDescription", pa.string()),
    ("MetricUnit", pa.string()),
    ("Attributes", _attr_map),
    ("AttributeTypes", _attr_map),
    ("StartTimeUnix", pa.timestamp("ns", tz="UTC")),
    ("TimeUnix", pa.timestamp("ns", tz="UTC")),
    ("Flags", pa.uint32()),
]
_EXEMPLARS = [
    ("Exemplars.FilteredAttributes", pa.list_(_attr_map)),
    ("Exemplars.FilteredAttributeTypes", pa.list_(_attr_map)),
    ("Exemplars.TimeUnix", pa.list_(pa.timestamp("ns", tz="UTC"))),
    ("Exemplars.Value", pa.list_(pa.float64())),
    ("Exemplars.SpanId", pa.list_(pa.string())),
    ("Exemplars.TraceId", pa.list_(pa.string())),
]
_TEMPORALITY = ("AggregationTemporality", pa.int32())

METRIC_ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "metrics_gauge": pa.schema([*_METRIC_IDENTITY, ("Value", pa.float64()), *_EXEMPLARS]),
    "metrics_sum": pa.schema(
        [*_METRIC_IDENTITY, ("Value", pa.float64()), _TEMPORALITY, ("IsMonotonic", pa.bool_()), *_EXEMPLARS]
    ),
    "metrics_histogram": pa.schema(
        [
            *_METRIC_IDENTITY,
            ("Count", pa.uint64()),
            ("Sum", pa.float64()),
            ("BucketCounts", pa.list_(pa.uint64())),
            ("ExplicitBounds", pa.list_(pa.float64())),
            ("Min", pa.float64()),
            ("Max", pa.float64()),
            _TEMPORALITY,
            *_EXEMPLARS,
        ]
    ),
    "metrics_exp_histogram": pa.schema(
        [
            *_METRIC_IDENTITY,
            ("Count", pa.uint64()),
            ("Sum", pa.float64()),
            ("Scale", pa.int32()),
            ("ZeroCount", pa.uint64()),
            ("ZeroThreshold", pa.float64()),
            ("PositiveOffset", pa.int32()),
            ("PositiveBucketCounts", pa.list_(pa.uint64())),
            ("NegativeOffset", pa.int32()),
            ("NegativeBucketCounts", pa.list_(pa.uint64())),
            ("Min", pa.float64()),
            ("Max", pa.float64()),
            _TEMPORALITY,
            *_EXEMPLARS,
        ]
    ),
    "metrics_summary": pa.schema(
        [
            *_METRIC_IDENTITY,
            ("Count", pa.uint64()),
            ("Sum", pa.float64()),
            ("ValueAtQuantiles.Quantile", pa.list_(pa.float64())),
            ("ValueAtQuantiles.Value", pa.list_(pa.float64())),
            _TEMPORALITY,
        ]
    ),
}

# The metric type each table holds, as the API names it.
METRIC_TABLES: dict[str, str] = {
    "gauge": "metrics_gauge",
    "sum": "metrics_sum",
    "histogram": "metrics_histogram",
    "exponential_histogram": "metrics_exp_histogram",
    "summary": "metrics_summary",
}

# One row per flow record (NetFlow v5/v9, IPFIX). Addresses are 16 bytes, IPv4 mapped into IPv6
# (::ffff:a.b.c.d), so one column holds both. Bytes and packets are as exported; `SamplingRate`
# (1 when unsampled) scales them in rollups. Customer/site/prefix come from enrichment ("" unknown).
FLOWS_ARROW_SCHEMA = pa.schema(
    [
        ("TimeReceived", pa.timestamp("ns", tz="UTC")),
        ("FlowStart", pa.timestamp("ns", tz="UTC")),
        ("FlowEnd", pa.timestamp("ns", tz="UTC")),
        ("Exporter", pa.binary(16)),
        ("FlowVersion", pa.uint8()),
        ("ObservationDomain", pa.uint32()),
        ("SrcAddr", pa.binary(16)),
        ("DstAddr", pa.binary(16)),
        ("SrcPort", pa.uint16()),
        ("DstPort", pa.uint16()),
        ("Protocol", pa.uint8()),
        ("TcpFlags", pa.uint8()),
        ("Tos", pa.uint8()),
        ("InputInterface", pa.uint32()),
        ("OutputInterface", pa.uint32()),
        ("Bytes", pa.uint64()),
        ("Packets", pa.uint64()),
        ("SamplingRate", pa.uint32()),
        ("SrcAs", pa.uint32()),
        ("DstAs", pa.uint32()),
        ("SrcPrefix", pa.string()),
        ("SrcCustomer", pa.string()),
        ("SrcSite", pa.string()),
        ("DstPrefix", pa.string()),
        ("DstCustomer", pa.string()),
        ("DstSite", pa.string()),
    ]
)

# What a flow receiver knows of each exporter (per version and observation domain), reported
# periodically; counts are since the receiver started.
FLOW_EXPORTERS_ARROW_SCHEMA = pa.schema(
    [
        ("Time", pa.timestamp("ns", tz="UTC")),
        ("Exporter", pa.binary(16)),
        ("FlowVersion", pa.uint8()),
        ("ObservationDomain", pa.uint32()),
        ("FirstSeen", pa.timestamp("ns", tz="UTC")),
        ("LastSeen", pa.timestamp("ns", tz="UTC")),
        ("Packets", pa.uint64()),
        ("Flows", pa.uint64()),
        ("Malformed", pa.map_(pa.string(), pa.uint64())),
        ("Templates", pa.list_(pa.uint16())),
        ("SamplingRate", pa.uint32()),
        ("GivenUp", pa.uint64()),
    ]
)


@dataclass(frozen=True, slots=True)
class DdlContext:
    """What DDL depends on: where the tables live, whether on a cluster, and retention."""

    database: str
    cluster: str = ""
    traces_retention_days: int = 7
    logs_retention_days: int = 7
    metrics_retention_days: int = 30
    flows_retention_days: int = 7

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""


@dataclass(frozen=True, slots=True)
class Table:
    """A table definition that renders to single-node or cluster DDL.

    `engine` is the MergeTree family member without its parameters ("MergeTree",
    "AggregatingMergeTree"); on a cluster it becomes the Replicated variant.
    """

    name: str
    columns: str
    engine: str
    order_by: str
    partition_by: str = ""
    ttl: Callable[[DdlContext], str] | None = None
    # Deduplication of retried inserts (the write-ahead log's replay) needs a window on
    # non-replicated tables; replicated tables keep their own by default.
    settings: str = "index_granularity = 8192, non_replicated_deduplication_window = 1000"
    # Distributed sharding key; spans shard by trace so one trace is on one shard.
    shard_key: str = "rand()"
    # ReplacingMergeTree's version column: of rows with one key, the highest version is kept.
    version_column: str = ""


@dataclass(frozen=True, slots=True)
class MaterializedView:
    """A materialized view feeding `target` from `source` (both logical names)."""

    name: str
    source: str
    target: str
    select: str


@dataclass(frozen=True, slots=True)
class AddColumns:
    """Columns (and data-skipping indexes) added to an existing table, each IF NOT EXISTS.

    Rows written before keep the columns' defaults; indexes cover parts written from then on.
    """

    table: str
    columns: tuple[str, ...]
    indexes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddProjection:
    """An aggregate projection added to an existing table, and built for the parts it holds.

    ClickHouse keeps a projection in every part it writes or merges from then on, and answers a
    query from it where the query's grouping and aggregates can be: from each part that has it,
    and from the table's own rows in parts that do not (yet). So readers need not know whether it
    is there, and the rows already stored are built in the background (a mutation), not before
    the migration ends. On an aggregating table, merges rebuild it from the merged rows.
    """

    table: str
    name: str
    select: str  # SELECT ... GROUP BY ..., over the table's columns


@dataclass(frozen=True, slots=True)
class Backfill:
    """Fills a view's target from what its source already holds: a view created on a table with
    rows sees only the inserts after it. Listed after the view, so no row falls between the two;
    rows inserted meanwhile reach the target twice, as does everything when a half-applied
    migration is re-run. So the target must make a second copy harmless: aggregate it away (min,
    max), or replace it by key and be read so that a copy not yet merged counts once."""

    view: MaterializedView


SchemaObject = Table | MaterializedView | AddColumns | AddProjection | Backfill


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: statements that are each idempotent (IF NOT EXISTS, or a backfill)."""

    version: int
    name: str
    objects: tuple[SchemaObject, ...] = field(default_factory=tuple)


def _traces_ttl(ctx: DdlContext) -> str:
    return f"toDateTime(Timestamp) + toIntervalDay({ctx.traces_retention_days})"


def _minute_ttl(ctx: DdlContext) -> str:
    return f"Minute + toIntervalDay({ctx.traces_retention_days})"


def _trace_ts_ttl(ctx: DdlContext) -> str:
    return f"toDateTime(Start) + toIntervalDay({ctx.traces_retention_days})"


SPANS = Table(
    name="spans",
    columns=f"""
    Timestamp DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    TraceId String,
    SpanId String,
    ParentSpanId String,
    TraceState String,
    SpanName LowCardinality(String),
    SpanKind LowCardinality(String),
    ServiceName LowCardinality(String),
    ServiceVersion LowCardinality(String),
    ResourceAttributes {_STRING_MAP},
    ResourceAttributeTypes {_TYPE_MAP},
    ScopeName String,
    ScopeVersion String,
    SpanAttributes {_STRING_MAP},
    SpanAttributeTypes {_TYPE_MAP},
    Duration UInt64,
    StatusCode LowCardinality(String),
    StatusMessage String,
    Events Nested (
        Timestamp DateTime64(9, 'UTC'),
        Name LowCardinality(String),
        Attributes {_STRING_MAP},
        AttributeTypes {_TYPE_MAP}
    ),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes {_STRING_MAP},
        AttributeTypes {_TYPE_MAP}
    ),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1""",
    engine="MergeTree",
    partition_by="toDate(Timestamp)",
    order_by="(ServiceName, SpanName, toDateTime(Timestamp))",
    ttl=_traces_ttl,
    settings="index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000",
    shard_key="cityHash64(TraceId)",
)

# Where a trace lives in time, so a trace lookup reads one day's partitions, not all.
SPANS_TRACE_ID_TS = Table(
    name="spans_trace_id_ts",
    columns="""
    TraceId String,
    Start DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    End DateTime64(9, 'UTC') CODEC(Delta, LZ4)""",
    engine="MergeTree",
    partition_by="toDate(Start)",
    order_by="(TraceId, Start)",
    ttl=_trace_ts_ttl,
    shard_key="cityHash64(TraceId)",
)

SPANS_TRACE_ID_TS_MV = MaterializedView(
    name="spans_trace_id_ts_mv",
    source="spans",
    target="spans_trace_id_ts",
    select="""
    SELECT TraceId,
           min(Timestamp) AS Start,
           max(Timestamp + toIntervalNanosecond(Duration)) AS End
    FROM {source}
    WHERE TraceId != ''
    GROUP BY TraceId""",
)

# Per-minute RED (rate, errors, duration) of entry spans: the kind SERVER or CONSUMER, or a
# span without a parent. Client and internal spans would double-count a request.
SPANS_RED_1M = Table(
    name="spans_red_1m",
    columns="""
    Minute DateTime('UTC') CODEC(Delta, LZ4),
    ServiceName LowCardinality(String),
    SpanName LowCardinality(String),
    ServiceVersion LowCardinality(String),
    Requests SimpleAggregateFunction(sum, UInt64),
    Errors SimpleAggregateFunction(sum, UInt64),
    DurationSum SimpleAggregateFunction(sum, UInt64),
    DurationMax SimpleAggregateFunction(max, UInt64),
    DurationQuantiles AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)""",
    engine="AggregatingMergeTree",
    partition_by="toDate(Minute)",
    order_by="(ServiceName, SpanName, ServiceVersion, Minute)",
    ttl=_minute_ttl,
)

SPANS_RED_1M_MV = MaterializedView(
    name="spans_red_1m_mv",
    source="spans",
    target="spans_red_1m",
    select="""
    SELECT toStartOfMinute(Timestamp) AS Minute,
           ServiceName, SpanName, ServiceVersion,
           count() AS Requests,
           countIf(StatusCode = 'Error') AS Errors,
           sum(Duration) AS DurationSum,
           max(Duration) AS DurationMax,
           quantilesTDigestState(0.5, 0.95, 0.99)(Duration) AS DurationQuantiles
    FROM {source}
    WHERE SpanKind IN ('Server', 'Consumer') OR ParentSpanId = ''
    GROUP BY Minute, ServiceName, SpanName, ServiceVersion""",
)


# The RED rollup per service, version and minute, whatever the operation: a service's charts and
# versions, the overview's sparklines and its table read a row per minute here where the rollup
# has one per operation, and merge that many fewer t-digests. Its quantile states are states of
# the rollup's merge, so a reader merges them further with the same -MergeState (and only a
# query with exactly these aggregates, grouped by these columns or fewer, is answered from it;
# min and max of Minute are there for a version's first and last minute per bucket).
SPANS_RED_BY_SERVICE = AddProjection(
    table="spans_red_1m",
    name="by_service",
    select="""
    SELECT ServiceName, ServiceVersion, Minute, sum(Requests), sum(Errors),
           quantilesTDigestMergeState(0.5, 0.95, 0.99)(DurationQuantiles), min(Minute), max(Minute)
    GROUP BY ServiceName, ServiceVersion, Minute""",
)


# Every error span, ordered by service and time: a service's newest errors are the last rows of
# its range here, where `spans` (ordered by service, span name, time) must be read across every
# operation to find them. A span repeated by a backfill re-run is collapsed by merges and read
# once (`vigil.store.service_read.recent_errors`).
ERROR_SPANS = Table(
    name="error_spans",
    columns="""
    Timestamp DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    ServiceName LowCardinality(String),
    TraceId String,
    SpanId String,
    SpanName LowCardinality(String),
    ServiceVersion LowCardinality(String),
    Duration UInt64,
    StatusMessage String""",
    engine="ReplacingMergeTree",
    partition_by="toDate(Timestamp)",
    order_by="(ServiceName, Timestamp, TraceId, SpanId)",
    ttl=_traces_ttl,
    # No deduplication window: a view's inserts are not deduplicated anyway (a retried insert
    # into `spans` is, and then does not reach the view).
    settings="index_granularity = 8192, ttl_only_drop_parts = 1",
    shard_key="cityHash64(TraceId)",
)

ERROR_SPANS_MV = MaterializedView(
    name="error_spans_mv",
    source="spans",
    target="error_spans",
    select="""
    SELECT Timestamp, ServiceName, TraceId, SpanId, SpanName, ServiceVersion, Duration, StatusMessage
    FROM {source}
    WHERE StatusCode = 'Error'""",
)


# The first and last minute each version of a service served requests, fed by the RED rollup's
# inserts: detected deploys (`vigil.store.deploys`) read a row per version here, where the
# rollup holds a row per minute and operation for the whole retention. Kept while the version
# serves, and for the traces' retention after its last request.
SERVICE_VERSIONS = Table(
    name="service_versions",
    columns="""
    ServiceName LowCardinality(String),
    ServiceVersion LowCardinality(String),
    FirstMinute SimpleAggregateFunction(min, DateTime('UTC')),
    LastMinute SimpleAggregateFunction(max, DateTime('UTC'))""",
    engine="AggregatingMergeTree",
    order_by="(ServiceName, ServiceVersion)",
    ttl=lambda ctx: f"LastMinute + toIntervalDay({ctx.traces_retention_days})",
    # No deduplication window: a view's inserts are not deduplicated anyway, and min and max make
    # a repeated backfill harmless.
    settings="index_granularity = 8192",
)

SERVICE_VERSIONS_MV = MaterializedView(
    name="service_versions_mv",
    source="spans_red_1m",
    target="service_versions",
    select="""
    SELECT ServiceName, ServiceVersion, min(Minute) AS FirstMinute, max(Minute) AS LastMinute
    FROM {source}
    WHERE ServiceVersion != ''
    GROUP BY ServiceName, ServiceVersion""",
)


def _logs_ttl(ctx: DdlContext) -> str:
    return f"toDateTime(Timestamp) + toIntervalDay({ctx.logs_retention_days})"


LOGS = Table(
    name="logs",
    columns=f"""
    Timestamp DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    ObservedTimestamp DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    TraceId String,
    SpanId String,
    TraceFlags UInt8,
    SeverityText LowCardinality(String),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String),
    ServiceVersion LowCardinality(String),
    Body String,
    BodyType LowCardinality(String),
    EventName LowCardinality(String),
    ResourceAttributes {_STRING_MAP},
    ResourceAttributeTypes {_TYPE_MAP},
    ScopeName String,
    ScopeVersion String,
    LogAttributes {_STRING_MAP},
    LogAttributeTypes {_TYPE_MAP},
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    -- Case-insensitive substring search (lower(Body) LIKE '%...%') skips granules by trigram.
    INDEX idx_body lower(Body) TYPE ngrambf_v1(3, 65536, 2, 0) GRANULARITY 1,
    INDEX idx_severity SeverityNumber TYPE minmax GRANULARITY 1""",
    engine="MergeTree",
    partition_by="toDate(Timestamp)",
    order_by="(ServiceName, toDateTime(Timestamp))",
    ttl=_logs_ttl,
    settings="index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000",
)


def _metrics_ttl(ctx: DdlContext) -> str:
    return f"toDateTime(TimeUnix) + toIntervalDay({ctx.metrics_retention_days})"


_METRIC_IDENTITY_COLUMNS = f"""
    ServiceName LowCardinality(String),
    ServiceVersion LowCardinality(String),
    ResourceAttributes {_STRING_MAP},
    ResourceAttributeTypes {_TYPE_MAP},
    ScopeName String,
    ScopeVersion String,
    MetricName LowCardinality(String),
    MetricDescription String,
    MetricUnit LowCardinality(String),
    Attributes {_STRING_MAP},
    AttributeTypes {_TYPE_MAP},
    StartTimeUnix DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    TimeUnix DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    Flags UInt32,"""
_EXEMPLAR_COLUMNS = f"""
    Exemplars Nested (
        FilteredAttributes {_STRING_MAP},
        FilteredAttributeTypes {_TYPE_MAP},
        TimeUnix DateTime64(9, 'UTC'),
        Value Float64,
        SpanId String,
        TraceId String
    )"""
_METRIC_POINT_COLUMNS = {
    "metrics_gauge": f"""
    Value Float64,{_EXEMPLAR_COLUMNS}""",
    "metrics_sum": f"""
    Value Float64,
    AggregationTemporality Int32,
    IsMonotonic Bool,{_EXEMPLAR_COLUMNS}""",
    "metrics_histogram": f"""
    Count UInt64,
    Sum Nullable(Float64),
    BucketCounts Array(UInt64),
    ExplicitBounds Array(Float64),
    Min Nullable(Float64),
    Max Nullable(Float64),
    AggregationTemporality Int32,{_EXEMPLAR_COLUMNS}""",
    "metrics_exp_histogram": f"""
    Count UInt64,
    Sum Nullable(Float64),
    Scale Int32,
    ZeroCount UInt64,
    ZeroThreshold Float64,
    PositiveOffset Int32,
    PositiveBucketCounts Array(UInt64),
    NegativeOffset Int32,
    NegativeBucketCounts Array(UInt64),
    Min Nullable(Float64),
    Max Nullable(Float64),
    AggregationTemporality Int32,{_EXEMPLAR_COLUMNS}""",
    "metrics_summary": """
    Count UInt64,
    Sum Float64,
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ),
    AggregationTemporality Int32""",
}


def _metric_table(name: str) -> Table:
    return Table(
        name=name,
        columns=_METRIC_IDENTITY_COLUMNS + _METRIC_POINT_COLUMNS[name],
        engine="MergeTree",
        partition_by="toDate(TimeUnix)",
        order_by="(ServiceName, MetricName, toDateTime(TimeUnix))",
        ttl=_metrics_ttl,
        settings="index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000",
    )


def _catalog_ttl(ctx: DdlContext) -> str:
    return f"Day + toIntervalDay({ctx.metrics_retention_days})"


# What `GET /api/v1/metrics` lists: each metric's type, unit and label keys, per service and
# day, kept up to date by one view per point table so listing never scans points.
METRICS_CATALOG = Table(
    name="metrics_catalog",
    columns="""
    Day Date,
    MetricName LowCardinality(String),
    MetricType LowCardinality(String),
    ServiceName LowCardinality(String),
    MetricUnit SimpleAggregateFunction(anyLast, String),
    MetricDescription SimpleAggregateFunction(anyLast, String),
    AttributeKeys SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    Points SimpleAggregateFunction(sum, UInt64),
    LastSeen SimpleAggregateFunction(max, DateTime64(9, 'UTC'))""",
    engine="AggregatingMergeTree",
    partition_by="toYYYYMM(Day)",
    order_by="(MetricName, MetricType, ServiceName, Day)",
    ttl=_catalog_ttl,
)


def _catalog_view(metric_type: str, table: str) -> MaterializedView:
    return MaterializedView(
        name=f"{table}_catalog_mv",
        source=table,
        target="metrics_catalog",
        select=f"""
    SELECT toDate(TimeUnix) AS Day, MetricName, '{metric_type}' AS MetricType, ServiceName,
           anyLast(MetricUnit) AS MetricUnit,
           anyLast(MetricDescription) AS MetricDescription,
           groupUniqArrayArray(mapKeys(Attributes)) AS AttributeKeys,
           count() AS Points,
           max(TimeUnix) AS LastSeen
    FROM {{source}}
    GROUP BY Day, MetricName, ServiceName""",
    )


_METRIC_OBJECTS: tuple[Table | MaterializedView, ...] = (
    *(_metric_table(table) for table in METRIC_TABLES.values()),
    METRICS_CATALOG,
    *(_catalog_view(metric_type, table) for metric_type, table in METRIC_TABLES.items()),
)


def _flows_ttl(ctx: DdlContext) -> str:
    return f"toDateTime(TimeReceived) + toIntervalDay({ctx.flows_retention_days})"


def _flows_minute_ttl(ctx: DdlContext) -> str:
    return f"Minute + toIntervalDay({ctx.flows_retention_days})"


# Flows are bucketed by when Vigil received them, not by the exporter's flow times: exporter
# clocks and uptime arithmetic go wrong (softflowd's v9 times wrap 49.7 days ahead), and on-call
# questions are about "now".
FLOWS = Table(
    name="flows",
    columns="""
    TimeReceived DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    FlowStart DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    FlowEnd DateTime64(9, 'UTC') CODEC(Delta, LZ4),
    Exporter IPv6,
    FlowVersion UInt8,
    ObservationDomain UInt32,
    SrcAddr IPv6,
    DstAddr IPv6,
    SrcPort UInt16,
    DstPort UInt16,
    Protocol UInt8,
    TcpFlags UInt8,
    Tos UInt8,
    InputInterface UInt32,
    OutputInterface UInt32,
    Bytes UInt64,
    Packets UInt64,
    SamplingRate UInt32,
    SrcAs UInt32,
    DstAs UInt32,
    SrcPrefix LowCardinality(String),
    SrcCustomer LowCardinality(String),
    SrcSite LowCardinality(String),
    DstPrefix LowCardinality(String),
    DstCustomer LowCardinality(String),
    DstSite LowCardinality(String)""",
    engine="MergeTree",
    partition_by="toDate(TimeReceived)",
    order_by="(toStartOfMinute(TimeReceived), Exporter, InputInterface)",
    ttl=_flows_ttl,
    settings="index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000",
)

# Per minute, exporter, interface and direction: traffic entering on the input interface counts
# for the source's customer ("in"), traffic leaving on the output interface for the destination's
# ("out"), so each flow appears once per direction. Bytes and packets are scaled by the sampling
# rate; flows are counted as exported. SynNoAck and Rst count TCP flows whose cumulative flags
# show a handshake that never completed, or a reset.
FLOWS_1M = Table(
    name="flows_1m",
    columns="""
    Minute DateTime('UTC') CODEC(Delta, LZ4),
    Exporter IPv6,
    Interface UInt32,
    Direction LowCardinality(String),
    Customer LowCardinality(String),
    Protocol UInt8,
    Bytes SimpleAggregateFunction(sum, UInt64),
    Packets SimpleAggregateFunction(sum, UInt64),
    Flows SimpleAggregateFunction(sum, UInt64),
    TcpFlows SimpleAggregateFunction(sum, UInt64),
    SynNoAck SimpleAggregateFunction(sum, UInt64),
    Rst SimpleAggregateFunction(sum, UInt64)""",
    engine="AggregatingMergeTree",
    partition_by="toDate(Minute)",
    order_by="(Exporter, Interface, Direction, Customer, Protocol, Minute)",
    ttl=_flows_minute_ttl,
)


# Per minute, exporter and source customer: the most used destination ports of TCP and UDP flows,
# as topK state with counts (space-saving: exact for up to 100 distinct ports a row, approximate
# beyond), merged across minutes at read time. Not one row per port: replies go to ephemeral
# ports, so such a rollup had a row for every fifth flow and read no faster than the flows.
# The reader shows the first `_TOP_PORTS` (flows_read.py); up to 10 are kept.
# The state's topK parameters: the reader's topKMerge must use the same ones.
FLOW_PORTS_TOPK = "10, 10, 'counts'"
FLOW_PORTS_1M = Table(
    name="flow_ports_1m",
    columns=f"""
    Minute DateTime('UTC') CODEC(Delta, LZ4),
    Exporter IPv6,
    Customer LowCardinality(String),
    DstPorts AggregateFunction(topK({FLOW_PORTS_TOPK}), UInt16)""",
    engine="AggregatingMergeTree",
    partition_by="toDate(Minute)",
    order_by="(Minute, Exporter, Customer)",
    ttl=_flows_minute_ttl,
)


def _exporters_ttl(ctx: DdlContext) -> str:
    return f"toDateTime(Time) + toIntervalDay({ctx.flows_retention_days})"


FLOW_EXPORTERS = Table(
    name="flow_exporters",
    columns="""
    Time DateTime64(9, 'UTC'),
    Exporter IPv6,
    FlowVersion UInt8,
    ObservationDomain UInt32,
    FirstSeen DateTime64(9, 'UTC'),
    LastSeen DateTime64(9, 'UTC'),
    Packets UInt64,
    Flows UInt64,
    Malformed Map(LowCardinality(String), UInt64),
    Templates Array(UInt16),
    SamplingRate UInt32,
    GivenUp UInt64""",
    engine="ReplacingMergeTree",
    version_column="Time",
    order_by="(Exporter, FlowVersion, ObservationDomain)",
    ttl=_exporters_ttl,
)

FLOWS_1M_MV = MaterializedView(
    name="flows_1m_mv",
    source="flows",
    target="flows_1m",
    select="""
    SELECT toStartOfMinute(TimeReceived) AS Minute, Exporter,
           side.1 AS Interface, side.2 AS Direction, side.3 AS Customer, Protocol,
           sum(Bytes * SamplingRate) AS Bytes,
           sum(Packets * SamplingRate) AS Packets,
           count() AS Flows,
           countIf(Protocol = 6) AS TcpFlows,
           countIf(Protocol = 6 AND bitAnd(TcpFlags, 2) != 0 AND bitAnd(TcpFlags, 16) = 0) AS SynNoAck,
           countIf(Protocol = 6 AND bitAnd(TcpFlags, 4) != 0) AS Rst
    FROM {source}
    ARRAY JOIN [(InputInterface, 'in', SrcCustomer), (OutputInterface, 'out', DstCustomer)] AS side
    GROUP BY Minute, Exporter, Interface, Direction, Customer, Protocol""",
)


FLOW_PORTS_1M_MV = MaterializedView(
    name="flow_ports_1m_mv",
    source="flows",
    target="flow_ports_1m",
    select=f"""
    SELECT toStartOfMinute(TimeReceived) AS Minute, Exporter, SrcCustomer AS Customer,
           topKState({FLOW_PORTS_TOPK})(DstPort) AS DstPorts
    FROM {{source}}
    WHERE Protocol IN (6, 17)
    GROUP BY Minute, Exporter, Customer""",
)


def _replacing(name: str, columns: str, order_by: str) -> Table:
    """A small state table: rows rewritten whole with a newer UpdatedAt, read with FINAL.

    Sharded by its key, so every version of a row is on one shard and FINAL can pick the newest.
    """
    return Table(
        name=name,
        columns=columns,
        engine="ReplacingMergeTree",
        version_column="UpdatedAt",
        order_by=order_by,
        settings="index_granularity = 8192",
        shard_key=f"cityHash64({order_by})",
    )


# What the detectors found. A finding is rewritten as it develops (observed value, severity,
# closing), each time with a newer UpdatedAt; readers take the newest row per Id (FINAL).
# Ids are derived from the series and the onset, so replaying a bucket rewrites the same finding.
FINDINGS = _replacing(
    "findings",
    """
    Id String,
    Kind LowCardinality(String),
    ServiceName LowCardinality(String),
    Operation String,
    Signal LowCardinality(String),
    SeriesKey String,
    StartedAt DateTime('UTC'),
    EndedAt Nullable(DateTime('UTC')),
    Status LowCardinality(String),
    Severity LowCardinality(String),
    Score Float64,
    Baseline Float64,
    Observed Float64,
    Unit LowCardinality(String),
    Summary String,
    DeployId String,
    ExemplarTraceIds Array(String),
    TopAttributes String,
    UpdatedAt DateTime64(3, 'UTC')""",
    "Id",
)

# Each detector family's watermark (the end of the last bucket it consumed) and model state.
DETECTOR_STATE = _replacing(
    "detector_state",
    """
    Detector String,
    Watermark DateTime('UTC'),
    State String,
    UpdatedAt DateTime64(3, 'UTC')""",
    "Detector",
)

# Which granules of spans hold an error span: a healthy service's page asks for its newest
# errors over the whole range, and without this reads the status of every span in it to find none.
# Where errors are common every granule holds one, and the rollup narrows that read instead.
SPANS_STATUS_INDEX = AddColumns(
    table="spans",
    columns=(),
    indexes=("idx_status StatusCode TYPE set(3) GRANULARITY 1",),
)

# Each log row's template (see LOG_TEMPLATE_FIELDS); rows from before have TemplateId 0.
LOGS_TEMPLATES = AddColumns(
    table="logs",
    columns=("TemplateId UInt64", "Template LowCardinality(String)"),
    indexes=("idx_template_id TemplateId TYPE bloom_filter(0.01) GRANULARITY 1",),
)


def _logs_minute_ttl(ctx: DdlContext) -> str:
    return f"Minute + toIntervalDay({ctx.logs_retention_days})"


# Per minute, service and template: how many lines, how severe, and one sample, for the
# patterns view and the log pattern detectors. Template text can generalise over time
# ("<*>" replacing words); the newest text wins as parts merge.
LOG_PATTERNS_1M = Table(
    name="log_patterns_1m",
    columns="""
    Minute DateTime('UTC') CODEC(Delta, LZ4),
    ServiceName LowCardinality(String),
    TemplateId UInt64,
    Template SimpleAggregateFunction(anyLast, String),
    Count SimpleAggregateFunction(sum, UInt64),
    Warnings SimpleAggregateFunction(sum, UInt64),
    Errors SimpleAggregateFunction(sum, UInt64),
    SeverityMax SimpleAggregateFunction(max, UInt8),
    FirstSeen SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    LastSeen SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    Sample SimpleAggregateFunction(any, String)""",
    engine="AggregatingMergeTree",
    partition_by="toDate(Minute)",
    order_by="(ServiceName, TemplateId, Minute)",
    ttl=_logs_minute_ttl,
)

# Warnings count SeverityNumber 13-16, errors 17 and above (OTLP's WARN and ERROR/FATAL ranges).
LOG_PATTERNS_1M_MV = MaterializedView(
    name="log_patterns_1m_mv",
    source="logs",
    target="log_patterns_1m",
    select="""
    SELECT toStartOfMinute(Timestamp) AS Minute, ServiceName, TemplateId,
           anyLast(Template) AS Template,
           count() AS Count,
           countIf(SeverityNumber >= 13 AND SeverityNumber < 17) AS Warnings,
           countIf(SeverityNumber >= 17) AS Errors,
           max(SeverityNumber) AS SeverityMax,
           min(Timestamp) AS FirstSeen,
           max(Timestamp) AS LastSeen,
           any(substring(Body, 1, 1024)) AS Sample
    FROM {source}
    GROUP BY Minute, ServiceName, TemplateId""",
)

# Deploys reported by pipelines (detected ones are derived from SERVICE_VERSIONS when read; see
# `vigil.store.deploys`). A report is rewritten whole with a newer UpdatedAt (e.g. when finished).
DEPLOYS = _replacing(
    "deploys",
    """
    Id String,
    ServiceName LowCardinality(String),
    Version String,
    Environment LowCardinality(String),
    Kind LowCardinality(String),
    Commit String,
    StartedAt DateTime64(3, 'UTC'),
    FinishedAt Nullable(DateTime64(3, 'UTC')),
    Url String,
    Description String,
    UpdatedAt DateTime64(3, 'UTC')""",
    "Id",
)

# Canary analyses: what a pipeline asked, and the verdict with its evidence once judged (a running
# analysis is rewritten when its window closes).
CANARY_ANALYSES = _replacing(
    "canary_analyses",
    """
    Id String,
    ServiceName LowCardinality(String),
    BaselineVersion String,
    CanaryVersion String,
    Environment LowCardinality(String),
    WindowStart DateTime64(3, 'UTC'),
    WindowEnd DateTime64(3, 'UTC'),
    Operations UInt8,
    CheckKinds Array(LowCardinality(String)),
    MetricChecks String,
    Status LowCardinality(String),
    Verdict LowCardinality(String),
    Score Nullable(Float64),
    Reason String,
    Checks String,
    ExemplarTraceIds Array(String),
    CreatedAt DateTime64(3, 'UTC'),
    UpdatedAt DateTime64(3, 'UTC')""",
    "Id",
)

# SLO definitions from the SLO file and the API; a deleted SLO is a newer row with Deleted = 1.
SLOS = _replacing(
    "slos",
    """
    Name String,
    Definition String,
    Source LowCardinality(String),
    Deleted UInt8,
    UpdatedAt DateTime64(3, 'UTC')""",
    "Name",
)


def _slo_minutes_ttl(ctx: DdlContext) -> str:
    # The longest SLO window (90 days) and then some: counts outlive the spans they came from.
    return "Minute + toIntervalDay(100)"


# Good and total requests of each SLO per minute; CountingKey names the definition they were
# counted under, so changing what "good" means starts a fresh count.
SLO_MINUTES = Table(
    name="slo_minutes",
    columns="""
    SloName LowCardinality(String),
    CountingKey LowCardinality(String),
    Minute DateTime('UTC') CODEC(Delta, LZ4),
    Good UInt64,
    Total UInt64,
    UpdatedAt DateTime64(3, 'UTC')""",
    engine="ReplacingMergeTree",
    version_column="UpdatedAt",
    partition_by="toYYYYMM(Minute)",
    order_by="(SloName, CountingKey, Minute)",
    ttl=_slo_minutes_ttl,
    shard_key="cityHash64(SloName)",
)


# Alerts: one row per (rule, finding), its lifecycle state and notification group.
ALERTS = _replacing(
    "alerts",
    """
    Key String,
    Rule LowCardinality(String),
    Severity LowCardinality(String),
    State LowCardinality(String),
    Kind LowCardinality(String),
    ServiceName LowCardinality(String),
    Operation String,
    Signal LowCardinality(String),
    Summary String,
    FindingId String,
    StartedAt DateTime64(3, 'UTC'),
    Channels Array(String),
    FiringAt Nullable(DateTime64(3, 'UTC')),
    ResolvedAt Nullable(DateTime64(3, 'UTC')),
    GroupId String,
    NotifiedAt Nullable(DateTime64(3, 'UTC')),
    UpdatedAt DateTime64(3, 'UTC')""",
    "Key",
)
# One Slack message per group: the alerts of one service on one channel that fired together.
ALERT_GROUPS = _replacing(
    "alert_groups",
    """
    Id String,
    ServiceName LowCardinality(String),
    Channel String,
    OpenedAt DateTime64(3, 'UTC'),
    Keys Array(String),
    Ts String,
    Resolved UInt8,
    UpdatedAt DateTime64(3, 'UTC')""",
    "Id",
)
# Notifications written before they are sent, marked sent once Slack accepted them.
ALERT_OUTBOX = _replacing(
    "alert_outbox",
    """
    Id String,
    GroupId String,
    Channel String,
    Action LowCardinality(String),
    Text String,
    Blocks String,
    CreatedAt DateTime64(3, 'UTC'),
    SentAt Nullable(DateTime64(3, 'UTC')),
    Ts String,
    Attempts UInt32,
    Error String,
    UpdatedAt DateTime64(3, 'UTC')""",
    "Id",
)
SILENCES = _replacing(
    "silences",
    """
    Id String,
    Matchers String,
    Author String,
    Comment String,
    StartsAt DateTime64(3, 'UTC'),
    EndsAt DateTime64(3, 'UTC'),
    CreatedAt DateTime64(3, 'UTC'),
    UpdatedAt DateTime64(3, 'UTC')""",
    "Id",
)
ALERT_RULES = _replacing(
    "alert_rules",
    """
    Name String,
    Document String,
    Source LowCardinality(String),
    UpdatedAt DateTime64(3, 'UTC')""",
    "Name",
)

# Calls between services per minute: a span whose parent span belongs to another service is one
# call from the parent's service (Caller) to its own (Callee); errors and duration are the
# callee's span's. Filled by `vigil.store.service_edges.ServiceEdgeRollup` (a join over spans
# is too slow to run when a page is read); a minute is rewritten whole when recomputed, and the
# newest row per (Caller, Callee, Minute) wins, so recomputing never doubles a count.
SERVICE_EDGES_1M = Table(
    name="service_edges_1m",
    columns="""
    Minute DateTime('UTC') CODEC(Delta, LZ4),
    Caller LowCardinality(String),
    Callee LowCardinality(String),
    Calls UInt64,
    Errors UInt64,
    DurationSum UInt64,
    UpdatedAt DateTime64(3, 'UTC')""",
    engine="ReplacingMergeTree",
    version_column="UpdatedAt",
    partition_by="toDate(Minute)",
    order_by="(Caller, Callee, Minute)",
    ttl=_minute_ttl,
    shard_key="cityHash64(Caller, Callee)",
)

# Leader leases (see vigil.store.lease): claims per lease name, the highest Version winning,
# read with FINAL. Sharded by name so every claim on one lease is on one shard.
LEASES = Table(
    name="leases",
    columns="""
    Name String,
    Holder String,
    ExpiresAt DateTime64(3, 'UTC'),
    Version UInt64""",
    engine="ReplacingMergeTree",
    version_column="Version",
    order_by="Name",
    # No deduplication window: two claims must never be dropped as one retried insert.
    settings="index_granularity = 8192",
    shard_key="cityHash64(Name)",
)

# Digests of the OTLP requests each Vigil stored (see vigil.collector.request_exchange), so that a
# retry a load balancer routes to another host is recognised there. Read by insertion time, kept an
# hour (dedup windows are minutes); no deduplication window, as two hosts' identical rows are both news.
REQUEST_DIGESTS = Table(
    name="request_digests",
    columns="""
    Digest FixedString(16),
    Host String,
    StoredAt DateTime64(3, 'UTC'),
    InsertedAt DateTime64(3, 'UTC') DEFAULT now64(3)""",
    engine="MergeTree",
    partition_by="toStartOfHour(InsertedAt)",
    order_by="InsertedAt",
    ttl=lambda ctx: "toDateTime(InsertedAt) + toIntervalHour(1)",
    settings="index_granularity = 8192, ttl_only_drop_parts = 1",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "spans, trace-id lookup and per-minute RED rollup",
        (SPANS, SPANS_TRACE_ID_TS, SPANS_TRACE_ID_TS_MV, SPANS_RED_1M, SPANS_RED_1M_MV),
    ),
    Migration(2, "logs", (LOGS,)),
    Migration(3, "metrics: one table per point type, and the metrics catalog", _METRIC_OBJECTS),
    Migration(4, "flows, their per-minute rollup, and flow exporters", (FLOWS, FLOWS_1M, FLOWS_1M_MV, FLOW_EXPORTERS)),
    Migration(5, "detector findings and detector state", (FINDINGS, DETECTOR_STATE)),
    Migration(
        6,
        "log templates on each log row and per-minute log patterns",
        (LOGS_TEMPLATES, LOG_PATTERNS_1M, LOG_PATTERNS_1M_MV),
    ),
    Migration(7, "deploy events", (DEPLOYS,)),
    Migration(8, "canary analyses", (CANARY_ANALYSES,)),
    Migration(9, "SLO definitions and per-minute SLO counts", (SLOS, SLO_MINUTES)),
    Migration(
        10,
        "alerts, their groups, the Slack outbox, silences and rules",
        (ALERTS, ALERT_GROUPS, ALERT_OUTBOX, SILENCES, ALERT_RULES),
    ),
    Migration(11, "per-minute calls between services", (SERVICE_EDGES_1M,)),
    Migration(12, "leader leases", (LEASES,)),
    # Flows stored before this version are not in the rollup: their minutes show no top ports.
    Migration(13, "per-minute destination ports of flows", (FLOW_PORTS_1M, FLOW_PORTS_1M_MV)),
    Migration(14, "request digests shared between hosts", (REQUEST_DIGESTS,)),
    # Parts written before this version have no such index and are read in full, as before.
    Migration(15, "span status skip index, for error reads", (SPANS_STATUS_INDEX,)),
    Migration(
        16,
        "first and last minute of each service version",
        (SERVICE_VERSIONS, SERVICE_VERSIONS_MV, Backfill(SERVICE_VERSIONS_MV)),
    ),
    Migration(17, "error spans by service and time", (ERROR_SPANS, ERROR_SPANS_MV, Backfill(ERROR_SPANS_MV))),
    Migration(18, "RED rollup per service, version and minute", (SPANS_RED_BY_SERVICE,)),
)

MIGRATIONS_TABLE = "schema_migrations"


def _local(name: str, ctx: DdlContext) -> str:
    return f"{name}_local" if ctx.cluster else name


def _engine(table: Table, ctx: DdlContext) -> str:
    args = [table.version_column] if table.version_column else []
    if not ctx.cluster:
        return f"{table.engine}({', '.join(args)})"
    replicated = [f"'/clickhouse/tables/{{shard}}/{ctx.database}/{table.name}'", "'{replica}'", *args]
    return f"Replicated{table.engine}({', '.join(replicated)})"


def _create_table(table: Table, ctx: DdlContext) -> list[str]:
    local = _local(table.name, ctx)
    parts = [
        f"CREATE TABLE IF NOT EXISTS {ctx.database}.{local}{ctx.on_cluster}\n({table.columns}\n)",
        f"ENGINE = {_engine(table, ctx)}",
    ]
    if table.partition_by:
        parts.append(f"PARTITION BY {table.partition_by}")
    parts.append(f"ORDER BY {table.order_by}")
    if table.ttl is not None:
        parts.append(f"TTL {table.ttl(ctx)}")
    if table.settings:
        parts.append(f"SETTINGS {table.settings}")
    statements = ["\n".join(parts)]
    if ctx.cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {ctx.database}.{table.name}{ctx.on_cluster}"
            f" AS {ctx.database}.{local}\n"
            f"ENGINE = Distributed({ctx.cluster}, {ctx.database}, {local}, {table.shard_key})"
        )
    return statements


def _create_view(view: MaterializedView, ctx: DdlContext) -> list[str]:
    # On a cluster each node's view reads its local inserts and writes its local rollup;
    # readers go through the Distributed rollup table.
    source = f"{ctx.database}.{_local(view.source, ctx)}"
    target = f"{ctx.database}.{_local(view.target, ctx)}"
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {ctx.database}.{view.name}{ctx.on_cluster}"
        f" TO {target} AS{view.select.format(source=source)}"
    ]


def _add_columns(change: AddColumns, ctx: DdlContext) -> list[str]:
    local = f"{ctx.database}.{_local(change.table, ctx)}"
    columns = [f"ADD COLUMN IF NOT EXISTS {column}" for column in change.columns]
    indexes = [f"ADD INDEX IF NOT EXISTS {index}" for index in change.indexes]
    statements = [f"ALTER TABLE {local}{ctx.on_cluster} {', '.join(columns + indexes)}"]
    if ctx.cluster and columns:
        # The Distributed table mirrors the columns (indexes live with the data, in the local table).
        statements.append(f"ALTER TABLE {ctx.database}.{change.table}{ctx.on_cluster} {', '.join(columns)}")
    return statements


def _add_projection(change: AddProjection, ctx: DdlContext) -> list[str]:
    # On a cluster each shard's local table keeps its own; Distributed reads ask every shard.
    local = f"{ctx.database}.{_local(change.table, ctx)}{ctx.on_cluster}"
    return [
        # Without it ClickHouse refuses projections on tables whose merges combine rows.
        f"ALTER TABLE {local} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
        f"ALTER TABLE {local} ADD PROJECTION IF NOT EXISTS {change.name} ({change.select})",
        f"ALTER TABLE {local} MATERIALIZE PROJECTION {change.name}",
    ]


def _backfill(backfill: Backfill, ctx: DdlContext) -> list[str]:
    # On a cluster, through the Distributed tables: every shard's rows, spread as inserts are.
    view = backfill.view
    source = f"{ctx.database}.{view.source}"
    return [f"INSERT INTO {ctx.database}.{view.target}{view.select.format(source=source)}"]


def create_table_statements(obj: SchemaObject, ctx: DdlContext) -> list[str]:
    """The statements for one table, view, column change or backfill in the mode `ctx` selects."""
    if isinstance(obj, Table):
        return _create_table(obj, ctx)
    if isinstance(obj, AddColumns):
        return _add_columns(obj, ctx)
    if isinstance(obj, AddProjection):
        return _add_projection(obj, ctx)
    if isinstance(obj, Backfill):
        return _backfill(obj, ctx)
    return _create_view(obj, ctx)


def migrations_table_statement(ctx: DdlContext) -> str:
    engine = (
        f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{ctx.database}/{MIGRATIONS_TABLE}', '{{replica}}')"
        if ctx.cluster
        else "MergeTree()"
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {ctx.database}.{MIGRATIONS_TABLE}{ctx.on_cluster}\n"
        "(version UInt32, name String, applied_at DateTime('UTC') DEFAULT now())\n"
        f"ENGINE = {engine}\nORDER BY version"
    )


def ttl_tables() -> list[Table]:
    """Every table with a TTL, in migration order; their TTL follows the retention settings."""
    tables: list[Table] = []
    for migration in MIGRATIONS:
        tables.extend(obj for obj in migration.objects if isinstance(obj, Table) and obj.ttl is not None)
    return tables
