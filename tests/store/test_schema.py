"""The same definitions render single-node and cluster DDL; the cluster form is asserted as text
(no ClickHouse cluster runs here), the single-node form is executed by the migration tests."""

from __future__ import annotations

from vigil.store.schema import (
    LOGS_TEMPLATES,
    SERVICE_VERSIONS_MV,
    SPANS,
    SPANS_RED_1M_MV,
    SPANS_RED_BY_SERVICE,
    SPANS_STATUS_INDEX,
    SPANS_TRACE_ID_TS,
    Backfill,
    DdlContext,
    create_table_statements,
    migrations_table_statement,
)

CLUSTER = DdlContext(database="obs", cluster="prod", traces_retention_days=14)
SINGLE = DdlContext(database="obs", traces_retention_days=14)


def test_single_node_tables_use_plain_merge_tree_with_ttl() -> None:
    (statement,) = create_table_statements(SPANS_TRACE_ID_TS, SINGLE)
    assert statement.startswith("CREATE TABLE IF NOT EXISTS obs.spans_trace_id_ts\n(")
    assert statement.endswith(
        "ENGINE = MergeTree()\nPARTITION BY toDate(Start)\nORDER BY (TraceId, Start)\n"
        "TTL toDateTime(Start) + toIntervalDay(14)\n"
        "SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000"
    )


def test_cluster_tables_are_replicated_locals_behind_distributed_tables_sharded_by_trace() -> None:
    local, distributed = create_table_statements(SPANS, CLUSTER)
    assert local.startswith("CREATE TABLE IF NOT EXISTS obs.spans_local ON CLUSTER prod\n(")
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/obs/spans', '{replica}')\n" in local
    assert "TTL toDateTime(Timestamp) + toIntervalDay(14)\n" in local
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS obs.spans ON CLUSTER prod AS obs.spans_local\n"
        "ENGINE = Distributed(prod, obs, spans_local, cityHash64(TraceId))"
    )


def test_cluster_rollup_views_read_and_write_local_tables() -> None:
    (view,) = create_table_statements(SPANS_RED_1M_MV, CLUSTER)
    assert view.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS obs.spans_red_1m_mv ON CLUSTER prod TO obs.spans_red_1m_local AS"
    )
    assert "FROM obs.spans_local\n" in view


def test_the_migrations_table_is_replicated_on_a_cluster() -> None:
    assert migrations_table_statement(CLUSTER) == (
        "CREATE TABLE IF NOT EXISTS obs.schema_migrations ON CLUSTER prod\n"
        "(version UInt32, name String, applied_at DateTime('UTC') DEFAULT now())\n"
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/obs/schema_migrations', '{replica}')\n"
        "ORDER BY version"
    )


def test_an_index_added_alone_alters_only_the_table_that_holds_the_data() -> None:
    assert create_table_statements(SPANS_STATUS_INDEX, SINGLE) == [
        "ALTER TABLE obs.spans ADD INDEX IF NOT EXISTS idx_status StatusCode TYPE set(3) GRANULARITY 1"
    ]
    assert create_table_statements(SPANS_STATUS_INDEX, CLUSTER) == [
        "ALTER TABLE obs.spans_local ON CLUSTER prod "
        "ADD INDEX IF NOT EXISTS idx_status StatusCode TYPE set(3) GRANULARITY 1"
    ]


def test_added_columns_alter_the_table_and_on_a_cluster_its_distributed_table_too() -> None:
    assert create_table_statements(LOGS_TEMPLATES, SINGLE) == [
        "ALTER TABLE obs.logs ADD COLUMN IF NOT EXISTS TemplateId UInt64, "
        "ADD COLUMN IF NOT EXISTS Template LowCardinality(String), "
        "ADD INDEX IF NOT EXISTS idx_template_id TemplateId TYPE bloom_filter(0.01) GRANULARITY 1"
    ]
    assert create_table_statements(LOGS_TEMPLATES, CLUSTER) == [
        "ALTER TABLE obs.logs_local ON CLUSTER prod ADD COLUMN IF NOT EXISTS TemplateId UInt64, "
        "ADD COLUMN IF NOT EXISTS Template LowCardinality(String), "
        "ADD INDEX IF NOT EXISTS idx_template_id TemplateId TYPE bloom_filter(0.01) GRANULARITY 1",
        "ALTER TABLE obs.logs ON CLUSTER prod ADD COLUMN IF NOT EXISTS TemplateId UInt64, "
        "ADD COLUMN IF NOT EXISTS Template LowCardinality(String)",
    ]


def test_a_view_on_a_rollup_reads_and_writes_local_tables_and_its_backfill_goes_through_distributed_ones() -> None:
    (view,) = create_table_statements(SERVICE_VERSIONS_MV, CLUSTER)
    assert view.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS obs.service_versions_mv ON CLUSTER prod"
        " TO obs.service_versions_local AS"
    )
    assert "FROM obs.spans_red_1m_local\n" in view
    select = (
        "\n    SELECT ServiceName, ServiceVersion, min(Minute) AS FirstMinute, max(Minute) AS LastMinute"
        "\n    FROM obs.spans_red_1m"
        "\n    WHERE ServiceVersion != ''"
        "\n    GROUP BY ServiceName, ServiceVersion"
    )
    # The same statement in both modes: on a cluster the names are the Distributed tables, so every
    # shard's rollup is read and the rows are spread over the shards as the view's would be.
    assert create_table_statements(Backfill(SERVICE_VERSIONS_MV), SINGLE) == [
        f"INSERT INTO obs.service_versions{select}"
    ]
    assert create_table_statements(Backfill(SERVICE_VERSIONS_MV), CLUSTER) == [
        f"INSERT INTO obs.service_versions{select}"
    ]


def test_a_projection_is_added_to_the_table_that_holds_the_data_and_built_for_the_parts_it_has() -> None:
    select = SPANS_RED_BY_SERVICE.select
    assert create_table_statements(SPANS_RED_BY_SERVICE, SINGLE) == [
        "ALTER TABLE obs.spans_red_1m MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
        f"ALTER TABLE obs.spans_red_1m ADD PROJECTION IF NOT EXISTS by_service ({select})",
        "ALTER TABLE obs.spans_red_1m MATERIALIZE PROJECTION by_service",
    ]
    # On a cluster every shard's local table; the Distributed table has no parts to project.
    assert create_table_statements(SPANS_RED_BY_SERVICE, CLUSTER) == [
        "ALTER TABLE obs.spans_red_1m_local ON CLUSTER prod"
        " MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
        f"ALTER TABLE obs.spans_red_1m_local ON CLUSTER prod ADD PROJECTION IF NOT EXISTS by_service ({select})",
        "ALTER TABLE obs.spans_red_1m_local ON CLUSTER prod MATERIALIZE PROJECTION by_service",
    ]
