"""Apply schema migrations at start-up, idempotently.

Each migration's statements are ``IF NOT EXISTS``, so a migration interrupted halfway is
simply re-run; a version is recorded only after all its statements succeeded. Retention
is not a migration: TTLs are brought in line with the settings on every start, and only
altered when they differ.
"""

from __future__ import annotations

import logging
import re

from clickhouse_connect.driver.client import Client

from vigil.settings import Settings
from vigil.store.schema import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    DdlContext,
    create_table_statements,
    migrations_table_statement,
    ttl_tables,
)

__all__ = ["applied_versions", "ddl_context", "migrate"]

logger = logging.getLogger(__name__)


def ddl_context(settings: Settings, database: str) -> DdlContext:
    """The DDL context `settings` ask for; every process that migrates must use it, or the
    retention it enforces on start would revert to the defaults."""
    return DdlContext(
        database=database,
        cluster=settings.clickhouse_cluster,
        traces_retention_days=settings.traces_retention_days,
        logs_retention_days=settings.logs_retention_days,
        metrics_retention_days=settings.metrics_retention_days,
        flows_retention_days=settings.flows_retention_days,
    )


def applied_versions(client: Client, ctx: DdlContext) -> list[int]:
    rows = client.query(f"SELECT DISTINCT version FROM {ctx.database}.{MIGRATIONS_TABLE} ORDER BY version")
    return [int(row[0]) for row in rows.result_rows]


def migrate(client: Client, ctx: DdlContext) -> list[int]:
    """Create the database and bring the schema to the newest version; returns the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {ctx.database}{ctx.on_cluster}")
    client.command(migrations_table_statement(ctx))
    done = set(applied_versions(client, ctx))
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for obj in migration.objects:
            for statement in create_table_statements(obj, ctx):
                client.command(statement)
        client.command(
            f"INSERT INTO {ctx.database}.{MIGRATIONS_TABLE} (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            parameters={"v": migration.version, "n": migration.name},
        )
        logger.info("applied schema migration %d: %s", migration.version, migration.name)
        applied.append(migration.version)
    _sync_ttls(client, ctx)
    return applied


def _current_ttl(client: Client, database: str, table: str) -> str:
    rows = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        parameters={"d": database, "t": table},
    ).result_rows
    if not rows:
        return ""
    match = re.search(r"\bTTL (.+?)(?: SETTINGS |$)", str(rows[0][0]), re.S)
    return match.group(1).strip() if match else ""


def _sync_ttls(client: Client, ctx: DdlContext) -> None:
    for table in ttl_tables():
        assert table.ttl is not None
        wanted = table.ttl(ctx)
        name = f"{table.name}_local" if ctx.cluster else table.name
        days = re.search(r"toIntervalDay\((\d+)\)", wanted)
        current = _current_ttl(client, ctx.database, name)
        if days and f"toIntervalDay({days.group(1)})" in current:
            continue
        # Rewriting every part to apply a new TTL at once would stall ingest; merges apply it.
        client.command(
            f"ALTER TABLE {ctx.database}.{name}{ctx.on_cluster} MODIFY TTL {wanted}",
            settings={"materialize_ttl_after_modify": 0},
        )
        logger.info("set TTL of %s to %s", name, wanted)
