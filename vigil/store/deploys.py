"""Deploy events: those a pipeline reports, and those Vigil infers from a new `service.version`.

A pipeline reports a deploy with ``POST /api/v1/deploys`` or ``vigil deploy mark``; it is stored
in `deploys` (ReplacingMergeTree by id, so a retried report with the same id is one deploy).

A *detected* deploy is the first minute a version of a service served requests, when the service
had served another version before (its first version is its start, not a deploy). They are
derived when read from `service_versions`, which the RED rollup's inserts keep (a version's first
and last minute of requests), so no process has to find them; a version that has served no
request for the traces' retention is forgotten. A detected deploy of a version that a pipeline
also reported is left out: the report says more.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from vigil.errors import StoreUnavailable

__all__ = ["DEPLOY_KINDS", "Deploy", "DeployStore", "deploy_id", "detected_deploy_id"]

DeployKind = Literal["canary", "rolling", "full", "unknown"]
DEPLOY_KINDS: tuple[str, ...] = ("canary", "rolling", "full")

_COLUMNS = (
    "Id",
    "ServiceName",
    "Version",
    "Environment",
    "Kind",
    "Commit",
    "StartedAt",
    "FinishedAt",
    "Url",
    "Description",
    "UpdatedAt",
)


@dataclass(frozen=True, slots=True)
class Deploy:
    id: str
    service: str
    version: str
    environment: str
    kind: str  # canary, rolling or full as reported; "unknown" when detected
    commit: str
    started_at: float  # unix seconds
    finished_at: float | None
    url: str
    description: str
    detected: bool


def deploy_id(service: str, version: str, environment: str, started_at: float) -> str:
    """The id of a reported deploy: the same report sent twice (a retried pipeline step) is one deploy.

    >>> deploy_id("checkout", "1.4.2", "production", 1.7e9)
    'd-8355c62826567ede'
    """
    key = f"{service}\0{version}\0{environment}\0{int(started_at * 1000)}"
    return "d-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def detected_deploy_id(service: str, version: str) -> str:
    """The id of the deploy that Vigil infers when `version` of `service` first serves requests.

    >>> detected_deploy_id("checkout", "1.4.2")
    'd-d9b20d6485765dce'
    """
    return "d-" + hashlib.blake2b(f"{service}\0{version}".encode(), digest_size=8).hexdigest()


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class DeployStore:
    """Writes reported deploys and reads them together with detected ones."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def write(self, deploy: Deploy) -> None:
        row = [
            deploy.id,
            deploy.service,
            deploy.version,
            deploy.environment,
            deploy.kind,
            deploy.commit,
            _utc(deploy.started_at),
            None if deploy.finished_at is None else _utc(deploy.finished_at),
            deploy.url,
            deploy.description,
            _utc(time.time()),
        ]
        try:
            self.client.insert(f"{self.database}.deploys", [row], column_names=list(_COLUMNS))
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse did not accept the deploy: {exc}") from exc

    def get(self, deploy_id: str) -> Deploy | None:
        found = [d for d in self._reported(service=None, start=None, end=None, deploy_id=deploy_id)]
        if found:
            return found[0]
        return next((d for d in self._detected(service=None, start=None, end=None) if d.id == deploy_id), None)

    def query(
        self,
        *,
        service: str | None = None,
        start: float | None = None,
        end: float | None = None,
        environment: str | None = None,
        limit: int = 200,
    ) -> list[Deploy]:
        """Deploys that started in [start, end], reported and detected, newest first."""
        # Every reported deploy of the service: those in the window, and the versions they cover.
        ever = self._reported(service=service, start=None, end=None)
        reported = [
            d for d in ever if (start is None or d.started_at >= start) and (end is None or d.started_at <= end)
        ]
        covered = {(d.service, d.version) for d in ever}
        detected = [
            d for d in self._detected(service=service, start=start, end=end) if (d.service, d.version) not in covered
        ]
        deploys = [*reported, *detected]
        if environment is not None:
            deploys = [d for d in deploys if d.environment == environment]
        deploys.sort(key=lambda d: (-d.started_at, d.id))
        return deploys[:limit]

    def nearest_before(self, service: str, at: float, *, lookback: float) -> Deploy | None:
        """The deploy of `service` that started last at or before `at`, within `lookback` seconds."""
        deploys = self.query(service=service, start=at - lookback, end=at, limit=1)
        return deploys[0] if deploys else None

    def _reported(
        self, *, service: str | None, start: float | None, end: float | None, deploy_id: str | None = None
    ) -> list[Deploy]:
        where, params = ["1"], dict[str, Any]()
        if deploy_id is not None:
            where.append("Id = {id:String}")
            params["id"] = deploy_id
        if service is not None:
            where.append("ServiceName = {service:String}")
            params["service"] = service
        if start is not None:
            where.append("StartedAt >= fromUnixTimestamp64Milli(toInt64({start:Float64} * 1000))")
            params["start"] = start
        if end is not None:
            where.append("StartedAt <= fromUnixTimestamp64Milli(toInt64({end:Float64} * 1000))")
            params["end"] = end
        rows = self.client.query(
            f"""SELECT Id, ServiceName, Version, Environment, Kind, Commit,
                       toUnixTimestamp64Milli(StartedAt) / 1000, toUnixTimestamp64Milli(FinishedAt) / 1000,
                       Url, Description
                FROM {self.database}.deploys FINAL WHERE {" AND ".join(where)}""",
            parameters=params,
        ).result_rows
        return [
            Deploy(
                id=row[0],
                service=row[1],
                version=row[2],
                environment=row[3],
                kind=row[4],
                commit=row[5],
                started_at=float(row[6]),
                finished_at=None if row[7] is None else float(row[7]),
                url=row[8],
                description=row[9],
                detected=False,
            )
            for row in rows
        ]

    def _detected(self, *, service: str | None, start: float | None, end: float | None) -> list[Deploy]:
        # A row per version: the service's first version is picked out here, not by a window
        # function, which cost ClickHouse more than the read itself.
        rows = self.client.query(
            f"""SELECT ServiceName, ServiceVersion, toUnixTimestamp(min(FirstMinute)) AS first
                FROM {self.database}.service_versions
                {"WHERE ServiceName = {service:String}" if service is not None else ""}
                GROUP BY ServiceName, ServiceVersion""",
            parameters={"service": service or ""},
        ).result_rows
        service_first: dict[str, int] = {}
        for name, _, first in rows:
            service_first[name] = min(first, service_first.get(name, first))
        return [
            Deploy(
                id=detected_deploy_id(name, version),
                service=name,
                version=version,
                environment="",
                kind="unknown",
                commit="",
                started_at=float(first),
                finished_at=None,
                url="",
                description=f"version {version} first served requests",
                detected=True,
            )
            for name, version, first in rows
            if first > service_first[name] and (start is None or first >= start) and (end is None or first <= end)
        ]
