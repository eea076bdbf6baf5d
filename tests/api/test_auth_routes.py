"""With tokens configured, every route of the API and the pages refuses a request without a
token of the scope it needs, and serves one with it (over real HTTP, on a real store)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.auth_tokens import ADMIN, CI, INGEST, READ, TOKENS_SETTING, bearer
from tests.conftest import RunningVigil, start_vigil, stop_vigil
from vigil.api.auth import required_scopes
from vigil.dashboards.site import PLOTLY_JS_PATH
from vigil.server import build_web_app
from vigil.settings import load_settings
from vigil.store.read import StoreReader

_APP = build_web_app(load_settings(), StoreReader(client=None, database=""))  # type: ignore[arg-type]


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            # FastAPI keeps an included router whole (its routes carry their full paths).
            yield from _api_routes(included.routes)


# Every route the web app has, as (method, path with its parameters filled in).
ROUTES = sorted(
    (method, re.sub(r"\{[^}]+\}", "x1", route.path))
    for route in _api_routes(_APP.routes)
    for method in route.methods - {"HEAD"}
)
SECRET_OF_SCOPE = {"read": READ, "ci": CI, "admin": ADMIN}


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, chdb_url: str) -> Iterator[RunningVigil]:
    # One Vigil for the module: the routes only read, and refusals touch nothing.
    settings = load_settings(
        clickhouse_url=chdb_url,
        clickhouse_database="t_auth_routes",
        http_port=0,
        otlp_http_port=0,
        otlp_grpc_port=0,
        statsd_enabled=False,
        netflow_enabled=False,
        collector_processes=0,
        detectors_enabled=False,
        wal_dir=str(tmp_path_factory.mktemp("wal")),
        tokens=TOKENS_SETTING,
    )
    running, thread = start_vigil(settings)
    try:
        yield running
    finally:
        stop_vigil(running, thread)


def _call(vigil: RunningVigil, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] | None = {} if method in ("POST", "PUT") else None
    return httpx.request(method, vigil.api + path, json=body, headers=headers, timeout=30, follow_redirects=False)


def test_only_probes_login_and_static_files_are_open() -> None:
    # /openapi.json and /docs are open too: they describe the API and hold no data.
    assert [(m, p) for m, p in ROUTES if not required_scopes(m, p)] == [
        ("GET", PLOTLY_JS_PATH),
        ("GET", "/healthz"),
        ("GET", "/login"),
        ("GET", "/readyz"),
        ("POST", "/login"),
        ("POST", "/logout"),
    ]


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if required_scopes(*r)])
def test_a_route_refuses_a_request_without_a_token(secured: RunningVigil, method: str, path: str) -> None:
    response = _call(secured, method, path)
    if _is_api(path):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="vigil"'
        assert response.json()["detail"].startswith("this route needs a token with the ")
    else:
        # A browser goes to the login form, and comes back after it.
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=" + httpx.URL(path).raw_path.decode().replace("/", "%2F")


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if required_scopes(*r)])
def test_a_route_refuses_a_token_without_its_scope(secured: RunningVigil, method: str, path: str) -> None:
    response = _call(secured, method, path, bearer(INGEST))
    assert response.status_code == 403
    detail = (
        f"token 'agent' has scopes ingest; this route needs {' or '.join(map(repr, required_scopes(method, path)))}"
    )
    if _is_api(path):
        assert response.json() == {"detail": detail}
    else:
        assert html.escape(detail, quote=False).replace("'", "&#39;") in response.text


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if required_scopes(*r)])
def test_a_route_serves_a_token_with_its_scope_and_an_admin_one(secured: RunningVigil, method: str, path: str) -> None:
    for secret in (SECRET_OF_SCOPE[required_scopes(method, path)[0]], ADMIN):
        response = _call(secured, method, path, bearer(secret))
        # The filled-in ids do not exist and the bodies are empty: 404 and 422 are answers too.
        assert response.status_code not in (401, 403), (secret, response.text)


def test_an_unknown_bearer_token_is_refused_even_on_an_open_route(secured: RunningVigil) -> None:
    response = _call(secured, "GET", "/api/v1/services", bearer("not-a-known-token-000000"))
    assert response.status_code == 401
    assert response.json() == {
        "detail": "the token in the Authorization header is not known; send Authorization: Bearer <secret>"
    }
    assert _call(secured, "GET", "/healthz").status_code == 200


def test_the_api_schema_declares_bearer_auth() -> None:
    schemes = _APP.openapi()["components"]["securitySchemes"]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer <secret>`",
        }
    }


def test_a_body_over_the_limit_is_refused_before_a_route_reads_it(secured: RunningVigil) -> None:
    response = httpx.post(
        secured.api + "/api/v1/deploys", content=b"x" * (1024 * 1024 + 1), headers=bearer(CI), timeout=30
    )
    assert response.status_code == 413
