"""The CI/CD side of the `vigil` command: pipelines talking to a running Vigil over its API.

`vigil deploy mark` reports a deploy; `vigil canary gate` asks for a canary verdict and exits
by it (0 PASS, 1 FAIL, 2 INCONCLUSIVE). Every command takes `--url` (or ``VIGIL_URL``) and
`--token` (or ``VIGIL_TOKEN``, sent as ``Authorization: Bearer``), exits 3 when Vigil cannot
be reached and 4 when it refuses the token, so a pipeline can tell "Vigil is down" or "the
pipeline is misconfigured" from "Vigil said no" (a refused token must never read as a verdict,
least of all with ``--inconclusive-exit 0``).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

__all__ = ["EXIT_NOT_ALLOWED", "EXIT_UNREACHABLE", "canary_app", "deploy_app", "silence_app"]

EXIT_UNREACHABLE = 3
EXIT_NOT_ALLOWED = 4
_TIMEOUT_S = 30.0

deploy_app = typer.Typer(help="Report deploys to Vigil from a pipeline.", no_args_is_help=True)

UrlOption = Annotated[str, typer.Option(envvar="VIGIL_URL", help="Vigil's base URL.")]
DEFAULT_URL = "http://127.0.0.1:8080"
TokenOption = Annotated[str, typer.Option(envvar="VIGIL_TOKEN", help="API token, sent as a bearer token.")]


def request(method: str, url: str, path: str, token: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """One API call; exits 3 (with the reason) when Vigil cannot be reached, 4 when it refuses the token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=headers, timeout=_TIMEOUT_S)
    except httpx.HTTPError as exc:
        typer.echo(f"vigil: cannot reach Vigil at {url}: {exc}", err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    if response.status_code in (401, 403):
        fix = "pass --token or set VIGIL_TOKEN" if not token else "use a token with the scope named"
        typer.echo(f"vigil: Vigil refused the request: {refusal(response)}; {fix}", err=True)
        raise typer.Exit(EXIT_NOT_ALLOWED)
    return response


def refusal(response: httpx.Response) -> str:
    """What the API said was wrong, readably: FastAPI's validation errors name each field."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}: {response.text[:500]}"
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:]) or 'request'}: {item.get('msg')}" for item in detail
        )
    return f"HTTP {response.status_code}: {detail}"


@deploy_app.command("mark")
def mark(
    service: Annotated[str, typer.Option(help="The service deployed.")],
    version: Annotated[str, typer.Option(help="The version deployed (service.version in its telemetry).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
    environment: Annotated[str, typer.Option(help="Where it was deployed.")] = "production",
    kind: Annotated[str, typer.Option(help="canary, rolling or full.")] = "full",
    commit: Annotated[str, typer.Option(help="The commit deployed.")] = "",
    started_at: Annotated[str, typer.Option(help="ISO 8601 start (default: now).")] = "",
    finished_at: Annotated[str, typer.Option(help="ISO 8601 end, when the deploy has finished.")] = "",
    link: Annotated[str, typer.Option(help="A link to the pipeline run or release.")] = "",
    description: Annotated[str, typer.Option(help="A line about what changed.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")] = False,
) -> None:
    """Report a deploy; prints its id. Exits 1 when Vigil refuses the report, 3 when unreachable."""
    body: dict[str, Any] = {
        "service": service,
        "version": version,
        "environment": environment,
        "kind": kind,
        "commit": commit,
        "url": link,
        "description": description,
    }
    if started_at:
        body["started_at"] = started_at
    if finished_at:
        body["finished_at"] = finished_at
    response = request("POST", url, "/api/v1/deploys", token, body)
    if response.status_code != 201:
        typer.echo(f"vigil: the deploy was not recorded: {refusal(response)}", err=True)
        raise typer.Exit(1)
    created = response.json()
    typer.echo(
        json.dumps(created) if as_json else f"deploy {created['id']}: {service} {version} ({kind}, {environment})"
    )


canary_app = typer.Typer(help="Canary gates for pipelines: promote or roll back.", no_args_is_help=True)

_VERDICT_EXIT = {"PASS": 0, "FAIL": 1}
_POLL_S = 10.0
# How long past the window's end `--wait` keeps polling before giving up (detectors judge within seconds).
_WAIT_MARGIN_S = 300.0


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _summary(analysis: dict[str, Any]) -> str:
    start = datetime.fromtimestamp(analysis["start"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    minutes = (analysis["end"] - analysis["start"]) / 60
    score = "" if analysis["score"] is None else f", score {analysis['score']:.0f}"
    state = "" if analysis["status"] == "done" else " so far (window still open)"
    lines = [
        f"canary {analysis['service']} {analysis['canary_version']} vs {analysis['baseline_version']}, "
        f"{minutes:g} min from {start}: {analysis['verdict']}{score}{state}",
        analysis["reason"],
        "",
        f"{'check':<40} {'result':<12} {'base n':>8} {'base p95':>9} {'base err':>8} "
        f"{'can n':>8} {'can p95':>9} {'can err':>8} {'effect':>8} {'p':>9}",
    ]
    for check in analysis["checks"]:
        base, can = check["baseline"], check["canary"]
        name = f"{check.get('kind', '')} {check['name']}".strip()[:40]
        lines.append(
            f"{name:<40} {check['result']:<12} {base['n']:>8} {_fmt(base['p95_ms'], '.1f'):>9} "
            f"{_fmt(base['error_rate'], '.2%'):>8} {can['n']:>8} {_fmt(can['p95_ms'], '.1f'):>9} "
            f"{_fmt(can['error_rate'], '.2%'):>8} {_fmt(check['effect'], '+.1%'):>8} "
            f"{_fmt(check.get('adjusted_p_value', check['p_value']), '.2g'):>9}"
        )
    if analysis["exemplar_trace_ids"]:
        lines += ["", "canary requests to look at: " + " ".join(analysis["exemplar_trace_ids"])]
    return "\n".join(lines)


@canary_app.command("gate")
def gate(
    service: Annotated[str, typer.Option(help="The service deployed.")],
    baseline: Annotated[str, typer.Option(help="The version serving before (service.version).")],
    canary: Annotated[str, typer.Option(help="The version under test (service.version).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
    duration: Annotated[str, typer.Option(help="The window compared, e.g. 10m.")] = "10m",
    start: Annotated[str, typer.Option(help="ISO 8601 start of the window (default: now).")] = "",
    environment: Annotated[str, typer.Option(help="Only requests with this deployment.environment.")] = "",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the window has closed and been judged.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
    inconclusive_exit: Annotated[int, typer.Option(help="Exit code for INCONCLUSIVE (0 to let it pass).")] = 2,
    poll_interval: Annotated[float, typer.Option(help="Seconds between polls with --wait.", min=0.1)] = _POLL_S,
) -> None:
    """Judge a canary: exits 0 on PASS, 1 on FAIL, 2 on INCONCLUSIVE (--inconclusive-exit), 3 when
    Vigil cannot be reached. Without --wait, a window still open is reported as it stands so far
    and counts as INCONCLUSIVE."""
    body: dict[str, Any] = {
        "service": service,
        "baseline_version": baseline,
        "canary_version": canary,
        "environment": environment,
        "duration": duration,
    }
    if start:
        body["start"] = start
    created = request("POST", url, "/api/v1/canary/analyses", token, body)
    if created.status_code != 201:
        typer.echo(f"vigil: the canary analysis was refused: {refusal(created)}", err=True)
        raise typer.Exit(inconclusive_exit)
    path = f"/api/v1/canary/analyses/{created.json()['id']}"
    analysis = _fetch(url, path, token)
    if wait:
        deadline = analysis["end"] + _WAIT_MARGIN_S
        while analysis["status"] != "done" and time.time() < deadline:
            time.sleep(min(poll_interval, max(deadline - time.time(), 0.0)))
            analysis = _fetch(url, path, token)
    typer.echo(json.dumps(analysis) if as_json else _summary(analysis))
    if analysis["status"] != "done":
        typer.echo("vigil: the window has not been judged yet; use --wait to wait for the verdict", err=True)
        raise typer.Exit(inconclusive_exit)
    raise typer.Exit(_VERDICT_EXIT.get(analysis["verdict"], inconclusive_exit))


def _fetch(url: str, path: str, token: str) -> dict[str, Any]:
    response = request("GET", url, path, token)
    if response.status_code != 200:
        typer.echo(f"vigil: cannot read the canary analysis: {refusal(response)}", err=True)
        raise typer.Exit(EXIT_UNREACHABLE)
    result: dict[str, Any] = response.json()
    return result


silence_app = typer.Typer(help="Silence alerts for a while (maintenance, a known incident).", no_args_is_help=True)


@silence_app.command("add")
def silence_add(
    matcher: Annotated[
        list[str],
        typer.Argument(
            help="label=value pairs an alert must all have: kind, service, severity, rule, operation, signal."
        ),
    ],
    author: Annotated[str, typer.Option(help="Who silences.")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    duration: Annotated[str, typer.Option(help="How long, e.g. 2h.")] = "1h",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = "",
) -> None:
    """Silence matching alerts; prints the silence's id."""
    matchers: dict[str, str] = {}
    for item in matcher:
        label, sep, value = item.partition("=")
        if not sep or not label or not value:
            typer.echo(f"vigil: {item!r} is not label=value, e.g. service=checkout", err=True)
            raise typer.Exit(2)
        matchers[label] = value
    body = {"matchers": matchers, "author": author, "comment": comment, "duration": duration}
    response = request("POST", url, "/api/v1/silences", token, body)
    if response.status_code != 201:
        typer.echo(f"vigil: the silence was not created: {refusal(response)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"silence {response.json()['id']}: {' '.join(matcher)} for {duration}")


@silence_app.command("list")
def silence_list(url: UrlOption = DEFAULT_URL, token: TokenOption = "") -> None:
    """Every silence, active ones marked."""
    response = request("GET", url, "/api/v1/silences", token)
    if response.status_code != 200:
        typer.echo(f"vigil: cannot list silences: {refusal(response)}", err=True)
        raise typer.Exit(1)
    for silence in response.json():
        ends = datetime.fromtimestamp(silence["ends_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
        matchers = " ".join(f"{k}={v}" for k, v in sorted(silence["matchers"].items()))
        state = "active" if silence["active"] else "ended"
        typer.echo(
            f"{silence['id']}  {state:<6}  until {ends}  {matchers}  ({silence['author']}: {silence['comment']})"
        )


@silence_app.command("expire")
def silence_expire(silence_id: str, url: UrlOption = DEFAULT_URL, token: TokenOption = "") -> None:
    """End a silence now."""
    response = request("DELETE", url, f"/api/v1/silences/{silence_id}", token)
    if response.status_code != 204:
        typer.echo(f"vigil: the silence was not expired: {refusal(response)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"silence {silence_id} expired")
