"""The `vigil` command: wiring and exit codes only."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer

from vigil.auth import new_secret, parse_inline_tokens, token_digest
from vigil.ci import canary_app, deploy_app, silence_app
from vigil.errors import ConfigError, StoreUnavailable
from vigil.settings import Settings, load_settings, parse_duration

if TYPE_CHECKING:
    from vigil.demo import DemoTraffic

__all__ = ["app", "main"]

app = typer.Typer(
    help="Vigil: OTLP traces into ClickHouse, per-service RED, trace search. Settings come from VIGIL_* variables.",
    no_args_is_help=True,
    add_completion=False,
)


app.add_typer(deploy_app, name="deploy")
app.add_typer(canary_app, name="canary")
app.add_typer(silence_app, name="silence")
token_app = typer.Typer(help="API tokens: make one for VIGIL_TOKENS or VIGIL_TOKENS_FILE.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@dataclass(frozen=True, slots=True)
class _DemoPlan:
    rate: float
    rollout_after_s: float | None  # None: no release during the demo


# The demo's release: checkout 1.5.0, half again as slow, reported as a pipeline would.
_DEMO_RELEASE = ("checkout", "1.5.0", 1.5)


def _release_demo_version(traffic: DemoTraffic, http_url: str) -> None:
    service, version, slowdown = _DEMO_RELEASE
    traffic.roll_out(service, version, slowdown=slowdown)
    body = {"service": service, "version": version, "environment": "demo", "kind": "rolling", "description": "demo"}
    try:
        response = httpx.post(f"{http_url}/api/v1/deploys", json=body, timeout=10.0)
    except httpx.HTTPError as exc:  # the release happened; only its report is lost, as a pipeline's could be
        logging.getLogger("vigil.demo").warning("demo release not reported: %s", exc)
        return
    logging.getLogger("vigil.demo").info(
        "demo release: %s %s rolled out (%.1fx slower) and reported (HTTP %d)",
        service, version, slowdown, response.status_code,
    )  # fmt: skip


def _run(settings: Settings, demo: _DemoPlan | None = None, roles: frozenset[str] | None = None) -> None:
    from vigil.server import ROLES, Vigil, stop_on_signals

    vigil = Vigil(settings, ROLES if roles is None else roles)

    async def run() -> None:
        stop = stop_on_signals()
        try:
            ports = await vigil.start()
            if demo is None:
                await vigil.serve_until(stop)
                return
            from vigil.demo import DemoTraffic, otlp_grpc_exporter_factory
            from vigil.demo_feeds import DemoFeeds, DemoTargets

            endpoint = f"http://{settings.bind}:{ports.otlp_grpc}"
            traffic = DemoTraffic(otlp_grpc_exporter_factory(endpoint), requests_per_second=demo.rate)
            traffic.start()
            release = None
            if demo.rollout_after_s is not None:
                http_url = f"http://{settings.bind}:{ports.http}"
                release = threading.Timer(demo.rollout_after_s, _release_demo_version, (traffic, http_url))
                release.daemon = True
                release.start()
            feeds = DemoFeeds(DemoTargets(settings.bind, ports.otlp_grpc, ports.statsd, ports.netflow))
            feeds.start()
            logging.getLogger("vigil.demo").info(
                "sample traffic: %.0f requests/s into %s, plus OTLP metrics, StatsD lines and NetFlow v5 flows",
                demo.rate,
                endpoint,
            )
            try:
                await vigil.serve_until(stop)
            finally:
                if release is not None:
                    release.cancel()
                # Before Vigil stops, so the generators' last data still have somewhere to go.
                await asyncio.to_thread(traffic.shutdown)
                await asyncio.to_thread(feeds.shutdown)
        finally:
            await vigil.shutdown()

    try:
        asyncio.run(run())
    except ConfigError as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreUnavailable as exc:  # an outage, not a mistake in the settings: a restart may succeed
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def serve() -> None:
    """Run every part of Vigil on the embedded store.

    OTLP gRPC (:4317) and HTTP (:4318), StatsD (:8125), NetFlow/IPFIX (:2055, :4739), API and dashboard (:8080).
    """
    settings = _settings()
    _configure_logging(settings.log_level)
    _run(settings)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Sample requests per second sent to the front service.", min=0.1)] = 20.0,
    release_after: Annotated[
        str, typer.Option(help="When checkout 1.5.0, a slower release, rolls out (e.g. 30m); 'never' for no release.")
    ] = "30m",
) -> None:
    """`vigil serve` plus sample traffic: traces, logs, metrics and network flows, with SLOs and a release.

    A few services calling each other, with realistic latencies and errors, their logs and metrics (OTLP and
    StatsD), NetFlow flows between two customers and the internet, three SLOs, and after --release-after a slower
    checkout release, reported as a deploy.
    """
    from vigil.demo_feeds import DEMO_PREFIXES, DEMO_SLOS

    settings = _settings()
    if settings.tokens or settings.tokens_file:
        # The sample system sends without credentials, as a newcomer's first services would.
        typer.echo(
            "vigil: the demo sends its traffic without tokens; unset VIGIL_TOKENS and VIGIL_TOKENS_FILE", err=True
        )
        raise typer.Exit(2)
    demo_files = Path(settings.wal_path).parent
    demo_files.mkdir(parents=True, exist_ok=True)
    if not settings.prefix_file:
        # The customers the demo's flows come from; a VIGIL_PREFIX_FILE of one's own takes precedence.
        prefix_file = demo_files / "vigil-demo-prefixes.csv"
        prefix_file.write_text(DEMO_PREFIXES)
        settings = settings.model_copy(update={"prefix_file": str(prefix_file)})
    if not settings.slo_file:
        slo_file = demo_files / "vigil-demo-slos.yaml"
        slo_file.write_text(DEMO_SLOS)
        settings = settings.model_copy(update={"slo_file": str(slo_file)})
    try:
        rollout_after_s = None if release_after == "never" else parse_duration(release_after)
    except ValueError as exc:
        typer.echo(f"vigil: --release-after: {exc}", err=True)
        raise typer.Exit(2) from None
    _configure_logging(settings.log_level)
    _run(settings, _DemoPlan(rate, rollout_after_s))


@app.command()
def collector() -> None:
    """Run the receivers (OTLP, StatsD, NetFlow/IPFIX), their write-ahead log and the inserter into ClickHouse.

    No API or pages: VIGIL_HTTP_PORT answers /healthz and /readyz only, for load balancers and Kubernetes probes.
    Collectors scale out behind a load balancer, each with its own VIGIL_WAL_DIR.

    Roles are meant for a ClickHouse server or cluster (VIGIL_CLICKHOUSE_URL=http://...), where each runs in its
    own processes and scales on its own; on an embedded chDB store only one process may open the directory.
    """
    settings = _settings()
    _configure_logging(settings.log_level)
    _run(settings, roles=frozenset({"collector"}))


@app.command()
def api() -> None:
    """Serve the API and pages (VIGIL_HTTP_PORT) only: no receivers, no inserter, no detectors.

    Roles are meant for a ClickHouse server or cluster (VIGIL_CLICKHOUSE_URL=http://...), where each runs in its
    own processes and scales on its own; on an embedded chDB store only one process may open the directory.
    """
    settings = _settings()
    _configure_logging(settings.log_level)
    _run(settings, roles=frozenset({"api"}))


@app.command()
def detect(
    backfill: Annotated[
        str | None,
        typer.Option(help="Replay this much history (e.g. 7d) with fresh models first, rewriting its findings."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop when caught up instead of following new buckets.")] = False,
) -> None:
    """Run the streaming detectors and the alerts that follow their findings, on their own.

    Replicas may run side by side: only the one holding the leader lease (VIGIL_LEASE_TTL, default 30s) detects and
    alerts; a standby takes over when the lease expires. --backfill and --once run without the lease: run them while
    no other replica does. Next to a `vigil serve`, set VIGIL_DETECTORS_ENABLED=false on the serve.

    Roles are meant for a ClickHouse server or cluster (VIGIL_CLICKHOUSE_URL=http://...), where each runs in its
    own processes and scales on its own; on an embedded chDB store only one process may open the directory.
    """
    import time

    from rich.progress import Progress

    from vigil.detectors.engine import DetectorEngine
    from vigil.settings import parse_duration
    from vigil.store.client import database_from_url, open_client
    from vigil.store.migrate import ddl_context, migrate
    from vigil.store.slos import SloStore, load_slo_file

    settings = _settings()
    _configure_logging(settings.log_level)
    try:
        backfill_s = parse_duration(backfill) if backfill is not None else None
    except ValueError as exc:
        typer.echo(f"vigil: --backfill: {exc}", err=True)
        raise typer.Exit(2) from None
    if backfill_s is None and not once:
        # Following new buckets, and alerting, is the leader's job.
        _run(settings, roles=frozenset({"detect"}))
        return
    try:
        database = database_from_url(settings.clickhouse_url, settings.clickhouse_database)
        client = open_client(settings.clickhouse_url)
        migrate(client, ddl_context(settings, database))
        if settings.slo_file:
            SloStore(client, database).sync_file(load_slo_file(settings.slo_file))
    except ConfigError as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreUnavailable as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(1) from None
    engine = DetectorEngine.from_settings(settings, client, database)
    if backfill_s is not None:
        start = time.time() - backfill_s
        for runner in engine.runners:
            runner.reset(start)
        total = sum(max(int((r.closed_until() - start) // r.family.step), 0) for r in engine.runners)
        with Progress() as progress:
            task = progress.add_task(f"replaying {backfill}", total=total)
            for runner in engine.runners:
                runner.run(progress=lambda n: progress.advance(task, n))
    else:
        engine.run_once()
    if not once:
        _run(settings, roles=frozenset({"detect"}))


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Option(help="Who or what holds it (shown in logs and on the dashboard).")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: ingest, read, ci, admin.")] = "read",
) -> None:
    """Make a token: print its secret once, and the lines that give it to Vigil.

    Vigil keeps only the secret's SHA-256, so the tokens file entry holds no secret.
    """
    scope_list = [scope.strip() for scope in scopes.split(",") if scope.strip()]
    secret = new_secret()
    try:
        # The same checks Vigil makes when it reads the entry.
        parse_inline_tokens(f"{name}:{'+'.join(scope_list)}:{secret}")
    except ConfigError as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"secret (shown once; give it to the holder): {secret}")
    typer.echo("")
    typer.echo("for VIGIL_TOKENS_FILE:")
    typer.echo(f"  - name: {name}")
    typer.echo(f"    scopes: [{', '.join(scope_list)}]")
    typer.echo(f"    sha256: {token_digest(secret)}")
    typer.echo("")
    typer.echo(f"or in VIGIL_TOKENS: {name}:{'+'.join(scope_list)}:{secret}")


def main() -> None:
    app(prog_name="vigil")


if __name__ == "__main__":
    main()
