"""API tokens: how they are given, checked, rotated, and turned into login sessions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vigil.api.auth import Sessions, required_scopes
from vigil.auth import AuthConfig, Tokens, bearer_secret, parse_inline_tokens, token_digest
from vigil.errors import ConfigError

SECRET = "s3cret-0123456789abcdef"


def test_inline_tokens_carry_names_scopes_and_only_the_digest() -> None:
    [ci, agents] = parse_inline_tokens(f"ci-pipeline:ci+read:{SECRET}, agents:ingest:{SECRET}x")
    assert (ci.name, ci.scopes, ci.digest) == ("ci-pipeline", frozenset({"ci", "read"}), token_digest(SECRET))
    assert (agents.name, agents.scopes) == ("agents", frozenset({"ingest"}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ci:ci", "VIGIL_TOKENS: entry 'ci' is not name:scope+scope:secret (e.g. ci-pipeline:ci:<secret>)"),
        (
            f"ci:deploy:{SECRET}",
            "VIGIL_TOKENS: token 'ci' has scopes 'deploy'; expected one or more of ingest, read, ci, admin",
        ),
        (
            "ci:ci:short",
            "VIGIL_TOKENS: token 'ci' has a secret shorter than 16 characters; make one with `vigil token new`",
        ),
        (f"c i:ci:{SECRET}", "VIGIL_TOKENS: token name 'c i' must be 1-64 letters, digits or _.@-"),
        (f"ci:ci:{SECRET},ci:read:{SECRET}", "VIGIL_TOKENS: token name 'ci' is given twice"),
    ],
)
def test_a_bad_inline_token_is_refused_naming_the_problem(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_inline_tokens(value)
    assert str(caught.value) == message


def test_a_tokens_file_holds_digests_or_secrets(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n"
        f"  - {{name: ci, scopes: [ci], sha256: {token_digest(SECRET).upper()}}}\n"
        f"  - {{name: agents, scopes: ingest, token: {SECRET}-agents}}\n"
    )
    tokens = Tokens(AuthConfig(file=str(path)))
    assert tokens.required is True
    assert tokens.authenticate(SECRET).name == "ci"  # type: ignore[union-attr]
    assert tokens.authenticate(f"{SECRET}-agents").scopes == frozenset({"ingest"})  # type: ignore[union-attr]
    assert tokens.authenticate("not-a-token-at-all-0000") is None
    assert tokens.authenticate(None) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "{path}: expected a mapping with a `tokens:` list of {{name, scopes, sha256 or token}}"),
        (
            "tokens: [{name: ci, scopes: [ci]}]\n",
            "{path}: tokens[1]: give exactly one of `sha256` (the secret's SHA-256, hex) or `token` (the secret)",
        ),
        (
            "tokens: [{name: ci, scopes: [ci], sha256: abc}]\n",
            "{path}: tokens[1]: `sha256` must be 64 hex digits (`vigil token new` prints one)",
        ),
        ("tokens: [{name: ci, scopes: {a: 1}, token: x}]\n", "{path}: tokens[1]: `scopes` must be a list, e.g. [read]"),
        ("tokens: [\n", "{path}: not valid YAML"),
    ],
)
def test_a_bad_tokens_file_stops_the_start_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Tokens(AuthConfig(file=str(path)))
    assert str(caught.value).startswith(message.format(path=path))


def test_a_rewritten_tokens_file_takes_effect_and_a_broken_one_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens: [{{name: old, scopes: [read], token: {SECRET}-old}}]\n")
    tokens = Tokens(AuthConfig(file=str(path)), check_interval_s=0.0)
    assert tokens.authenticate(f"{SECRET}-old") is not None

    path.write_text(f"tokens: [{{name: new, scopes: [read], token: {SECRET}-new}}]\n")
    os.utime(path, (time.time() + 5, time.time() + 5))  # a distinct mtime even on coarse clocks
    assert tokens.authenticate(f"{SECRET}-old") is None
    assert tokens.named("new") is not None

    path.write_text("tokens: [\n")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert tokens.authenticate(f"{SECRET}-new") is not None


def test_auth_is_required_once_tokens_exist_or_when_asked_for() -> None:
    assert Tokens(AuthConfig()).required is False
    assert Tokens(AuthConfig(inline=f"ci:ci:{SECRET}")).required is True
    assert Tokens(AuthConfig(mode="off", inline=f"ci:ci:{SECRET}")).required is False
    with pytest.raises(ConfigError) as caught:
        Tokens(AuthConfig(mode="on"))
    assert str(caught.value) == "VIGIL_AUTH=on but no tokens are configured: set VIGIL_TOKENS or VIGIL_TOKENS_FILE"


def test_the_auth_config_never_shows_its_secrets() -> None:
    assert repr(AuthConfig(inline=f"ci:ci:{SECRET}")) == "AuthConfig(mode='auto', inline='<set>', file='')"


@pytest.mark.parametrize(
    ("header", "secret"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None), (None, None)],
)
def test_the_bearer_secret_is_read_from_the_authorization_header(header: str | None, secret: str | None) -> None:
    assert bearer_secret(header) == secret


@pytest.mark.parametrize(
    ("method", "path", "scopes"),
    [
        ("GET", "/healthz", ()),
        ("GET", "/login", ()),
        ("POST", "/login", ()),
        ("GET", "/static/vigil.css", ()),
        ("GET", "/openapi.json", ()),
        ("GET", "/", ("read",)),
        ("GET", "/api/v1/services", ("read",)),
        ("GET", "/metrics", ("read",)),
        ("POST", "/api/v1/deploys", ("ci",)),
        ("GET", "/api/v1/deploys/d-1", ("read", "ci")),
        ("POST", "/api/v1/canary/analyses", ("ci",)),
        ("GET", "/api/v1/canary/analyses/a-1", ("read", "ci")),
        ("PUT", "/api/v1/slos/checkout", ("admin",)),
        ("POST", "/api/v1/silences", ("admin",)),
        ("POST", "/alerts/silences", ("admin",)),
    ],
)
def test_each_route_needs_the_scope_of_what_it_does(method: str, path: str, scopes: tuple[str, ...]) -> None:
    assert required_scopes(method, path) == scopes


def test_a_session_names_its_token_until_it_expires_or_the_token_changes() -> None:
    tokens = Tokens(AuthConfig(inline=f"alice:read:{SECRET}"))
    sessions = Sessions("session-key", ttl_s=3600)
    alice = tokens.named("alice")
    assert alice is not None
    cookie = sessions.issue(alice, now=1000.0)
    assert sessions.verify(cookie, tokens, now=1000.0 + 3599) == alice
    assert sessions.verify(cookie, tokens, now=1000.0 + 3601) is None  # expired
    assert Sessions("another-key", ttl_s=3600).verify(cookie, tokens, now=1000.0) is None  # not ours
    payload, _, signature = cookie.partition(".")
    assert sessions.verify(payload[:-2] + "xx." + signature, tokens, now=1000.0) is None  # tampered
    rotated = Tokens(AuthConfig(inline=f"alice:read:{SECRET}-rotated"))
    assert sessions.verify(cookie, rotated, now=1000.0) is None  # same name, new secret
    assert sessions.verify("garbage", tokens, now=1000.0) is None
