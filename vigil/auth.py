"""API tokens and their scopes: who may send data, read, gate deploys or administer.

A token is a name, a set of scopes and a secret. Vigil keeps only each secret's SHA-256,
so a tokens file need not hold secrets at all (``sha256:``), and a request's token is
found by its digest rather than compared secret by secret.

Scopes:

- ``ingest``: send OTLP (``Authorization: Bearer`` on gRPC and HTTP).
- ``read``: the API's GET routes, the dashboard (login) and ``/metrics``.
- ``ci``: report deploys and start and read canary analyses (CI/CD pipelines).
- ``admin``: everything, including SLO, alert-rule and silence changes.

Tokens come from VIGIL_TOKENS (``name:scope+scope:secret``, comma-separated) and from
VIGIL_TOKENS_FILE (YAML, re-read when it changes, so tokens rotate without a restart)::

    tokens:
      - name: ci-pipeline
        scopes: [ci]
        sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
      - name: otel-agents
        scopes: [ingest]
        token: a-secret-from-a-mounted-kubernetes-secret
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from vigil.config_file import read_yaml
from vigil.errors import ConfigError

__all__ = [
    "SCOPES",
    "AuthConfig",
    "IngestRefusal",
    "Token",
    "Tokens",
    "bearer_secret",
    "ingest_refusal",
    "new_secret",
    "parse_inline_tokens",
    "parse_tokens_document",
    "token_digest",
]

logger = logging.getLogger(__name__)

Scope = Literal["ingest", "read", "ci", "admin"]
SCOPES: Final[tuple[Scope, ...]] = ("ingest", "read", "ci", "admin")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# Shorter secrets can be guessed; `vigil token new` makes 43-character ones.
MIN_SECRET_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class Token:
    """A known token: its name (for logs and sessions, never the secret) and scopes."""

    name: str
    scopes: frozenset[str]
    digest: str  # SHA-256 of the secret, hex

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The auth settings as plain values (collector processes receive them pickled)."""

    mode: Literal["auto", "on", "off"] = "auto"
    inline: str = ""  # VIGIL_TOKENS; holds secrets, so never in a repr
    file: str = ""  # VIGIL_TOKENS_FILE

    def __repr__(self) -> str:
        return f"AuthConfig(mode={self.mode!r}, inline={'<set>' if self.inline else ''!r}, file={self.file!r})"


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A fresh secret: 256 random bits, URL-safe (fits in a header, a cookie and VIGIL_TOKENS)."""
    return secrets.token_urlsafe(32)


def bearer_secret(authorization: str | None) -> str | None:
    """The secret in an ``Authorization: Bearer <secret>`` value; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


@dataclass(frozen=True, slots=True)
class IngestRefusal:
    """Why a sender may not ingest: no known token (`authenticated` False) or one without the scope."""

    authenticated: bool
    message: str


def ingest_refusal(tokens: Tokens, authorization: str | None, how_to_send: str) -> IngestRefusal | None:
    """The OTLP receivers' check: None when `authorization` carries a token with the ingest scope.

    `how_to_send` names the carrier in the receiver's own terms (a header, gRPC metadata).
    """
    token = tokens.authenticate(bearer_secret(authorization))
    if token is None:
        message = f"send an API token with the ingest scope as {how_to_send}"
        if authorization:
            message = "the bearer token is not known; " + message
        return IngestRefusal(authenticated=False, message=message)
    if not token.allows("ingest"):
        scopes = ", ".join(sorted(token.scopes))
        return IngestRefusal(True, f"token {token.name!r} lacks the ingest scope (it has {scopes})")
    return None


def _token(name: Any, scopes: Iterable[Any], digest: str, where: str) -> Token:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: token name {name!r} must be 1-64 letters, digits or _.@-")
    scope_set = frozenset(str(scope) for scope in scopes)
    unknown = sorted(scope_set - set(SCOPES))
    if unknown or not scope_set:
        raise ConfigError(
            f"{where}: token {name!r} has {'scopes ' + ', '.join(map(repr, unknown)) if unknown else 'no scopes'}; "
            f"expected one or more of {', '.join(SCOPES)}"
        )
    return Token(name, scope_set, digest)


def _secret_digest(secret: Any, name: str, where: str) -> str:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{where}: token {name!r} has a secret shorter than {MIN_SECRET_LENGTH} characters; "
            "make one with `vigil token new`"
        )
    return token_digest(secret)


def parse_inline_tokens(value: str) -> list[Token]:
    """VIGIL_TOKENS: ``name:scope+scope:secret`` entries, comma-separated."""
    tokens = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, _, rest = entry.partition(":")
        scopes, _, secret = rest.partition(":")
        if not secret:
            raise ConfigError(
                f"VIGIL_TOKENS: entry {name!r} is not name:scope+scope:secret (e.g. ci-pipeline:ci:<secret>)"
            )
        tokens.append(_token(name, scopes.split("+"), _secret_digest(secret, name, "VIGIL_TOKENS"), "VIGIL_TOKENS"))
    return _unique(tokens, "VIGIL_TOKENS")


def parse_tokens_document(document: Any, where: str) -> list[Token]:
    """A tokens file's parsed YAML: ``tokens:`` a list of {name, scopes, sha256 | token}."""
    if document is None:
        return []
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected a mapping with a `tokens:` list of {{name, scopes, sha256 or token}}")
    tokens = []
    for index, entry in enumerate(entries, start=1):
        at = f"{where}: tokens[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping with name, scopes and sha256 or token")
        name = entry.get("name")
        scopes = entry.get("scopes")
        if isinstance(scopes, str):
            scopes = [scopes]
        if not isinstance(scopes, list):
            raise ConfigError(f"{at}: `scopes` must be a list, e.g. [read]")
        if ("sha256" in entry) == ("token" in entry):
            raise ConfigError(f"{at}: give exactly one of `sha256` (the secret's SHA-256, hex) or `token` (the secret)")
        if "sha256" in entry:
            digest = str(entry["sha256"]).strip().lower()
            if not _DIGEST_RE.match(digest):
                raise ConfigError(f"{at}: `sha256` must be 64 hex digits (`vigil token new` prints one)")
        else:
            digest = _secret_digest(entry["token"], str(name), at)
        tokens.append(_token(name, scopes, digest, at))
    return _unique(tokens, where)


def _unique(tokens: list[Token], where: str) -> list[Token]:
    names: set[str] = set()
    for token in tokens:
        if token.name in names:
            raise ConfigError(f"{where}: token name {token.name!r} is given twice")
        names.add(token.name)
    return tokens


def _read_tokens_file(path: str) -> list[Token]:
    _, document = read_yaml(path, "VIGIL_TOKENS_FILE")
    return parse_tokens_document(document, path)


class Tokens:
    """The tokens in force, re-reading VIGIL_TOKENS_FILE when it changes. Thread-safe.

    Whether auth is required is decided once, at start: "on", or "auto" with tokens then.
    A tokens file edited to be empty later refuses everyone rather than opening the doors.
    """

    def __init__(self, config: AuthConfig, check_interval_s: float = 2.0) -> None:
        self._config = config
        self._check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._inline = parse_inline_tokens(config.inline)
        self._file_stamp: tuple[float, int, int] | None = None
        self._file_tokens = _read_tokens_file(config.file) if config.file else []
        self._file_stamp = self._stamp()
        self._next_check = time.monotonic() + check_interval_s
        self._by_digest, self._by_name = self._index()
        if config.mode == "on" and not self._by_digest:
            raise ConfigError("VIGIL_AUTH=on but no tokens are configured: set VIGIL_TOKENS or VIGIL_TOKENS_FILE")
        self.required = config.mode == "on" or (config.mode == "auto" and bool(self._by_digest))

    def _index(self) -> tuple[dict[str, Token], dict[str, Token]]:
        tokens = self._inline + self._file_tokens
        names = [token.name for token in tokens]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ConfigError(f"token names given both in VIGIL_TOKENS and VIGIL_TOKENS_FILE: {', '.join(duplicated)}")
        return {token.digest: token for token in tokens}, {token.name: token for token in tokens}

    def _stamp(self) -> tuple[float, int, int] | None:
        try:
            stat = os.stat(self._config.file)
        except OSError:
            return None
        return (stat.st_mtime, stat.st_size, stat.st_ino)

    def _refresh(self) -> None:
        if not self._config.file:
            return
        now = time.monotonic()
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self._check_interval_s
            stamp = self._stamp()
            if stamp == self._file_stamp:
                return
            try:
                file_tokens = _read_tokens_file(self._config.file)
                self._file_tokens, previous = file_tokens, self._file_tokens
                try:
                    self._by_digest, self._by_name = self._index()
                except ConfigError:
                    self._file_tokens = previous
                    raise
            except ConfigError as exc:
                # Keep the tokens in force: a half-written or broken file must not lock everyone out.
                logger.error("tokens file not reloaded, keeping the previous tokens: %s", exc)
            else:
                logger.info("tokens file reloaded: %d token(s)", len(self._by_digest))
            self._file_stamp = stamp

    def authenticate(self, secret: str | None) -> Token | None:
        """The token whose secret this is; None for no secret or an unknown one."""
        if not secret:
            return None
        self._refresh()
        return self._by_digest.get(token_digest(secret))

    def named(self, name: str) -> Token | None:
        self._refresh()
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_digest)
