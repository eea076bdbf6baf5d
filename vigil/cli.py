"""The `vigil` command: wiring and exit codes only."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Annotated

import typer

from vigil.errors import ConfigError
from vigil.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    help="Vigil: OTLP traces into ClickHouse, per-service RED, trace search. Settings come from VIGIL_* variables.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(settings: Settings, demo_rate: float | None = None) -> None:
    from vigil.server import Vigil

    vigil = Vigil(settings)

    async def run() -> None:
        if demo_rate is None:
            await vigil.run()
            return
        from vigil.demo import DemoTraffic, otlp_grpc_exporter_factory

        started = threading.Event()
        holder: list[DemoTraffic] = []

        async def start_demo() -> None:
            while vigil.ports is None:
                await asyncio.sleep(0.05)
            endpoint = f"http://{settings.bind}:{vigil.ports.otlp_grpc}"
            traffic = DemoTraffic(otlp_grpc_exporter_factory(endpoint), requests_per_second=demo_rate)
            traffic.start()
            holder.append(traffic)
            started.set()
            logging.getLogger("vigil.demo").info("sample traffic: %.0f requests/s into %s", demo_rate, endpoint)

        task = asyncio.create_task(start_demo())
        try:
            await vigil.run()
        finally:
            task.cancel()
            for traffic in holder:
                await asyncio.to_thread(traffic.shutdown)

    try:
        asyncio.run(run())
    except ConfigError as exc:
        typer.echo(f"vigil: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve() -> None:
    """Run every part in one process: OTLP gRPC (:4317) and HTTP (:4318) receivers, API and dashboard (:8080)."""
    settings = _settings()
    _configure_logging(settings.log_level)
    _run(settings)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Sample requests per second sent to the front service.", min=0.1)] = 20.0,
) -> None:
    """`vigil serve` plus sample traffic: a few services calling each other, with realistic latencies and errors."""
    settings = _settings()
    _configure_logging(settings.log_level)
    _run(settings, demo_rate=rate)


def main() -> None:
    app(prog_name="vigil")


if __name__ == "__main__":
    main()
