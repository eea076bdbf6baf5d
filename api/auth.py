"""Who may call which route of the web app: bearer tokens and dashboard login sessions.

Every route of the API and the pages depends on `authorize` (an app-wide dependency), which
decides the scope a request needs from its method and path (`required_scopes`):

- probes, the login page, static files and the API's schema and docs: no token;
- deploys and canary analyses: ``ci`` to create, ``read`` or ``ci`` to read;
- any other GET: ``read``; any other method: ``admin``.

A request proves itself with ``Authorization: Bearer <secret>`` or, in a browser, the login
cookie. The cookie is HttpOnly and SameSite=Lax: Lax, not Strict, so a link from a Slack
alert opens the page signed in, while cross-site POSTs (the only writes a page makes) carry
no cookie; writes with a cookie must also come from Vigil's own origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vigil.auth import Token, Tokens

__all__ = [
    "SESSION_COOKIE",
    "LoginRequired",
    "Sessions",
    "WebAuth",
    "authorize",
    "required_scopes",
]

SESSION_COOKIE: Final = "vigil_session"

_PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout", "/openapi.json", "/docs", "/redoc"})
_PUBLIC_PREFIXES = ("/static/", "/assets/", "/docs/")
_CI_PREFIXES = ("/api/v1/deploys", "/api/v1/canary")
_READS = frozenset({"GET", "HEAD"})

# Declares the scheme in the OpenAPI document; `authorize` does the checking (and accepts cookies).
_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <secret>`")


def required_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes of which a request needs one (admin holds them all); () for public routes."""
    if path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES):
        return ()
    if path.startswith(_CI_PREFIXES):
        return ("read", "ci") if method in _READS else ("ci",)
    return ("read",) if method in _READS else ("admin",)


class LoginRequired(HTTPException):
    """401: no valid credentials. The API answers it as JSON; pages send the browser to /login."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, headers={"WWW-Authenticate": 'Bearer realm="vigil"'})


class Sessions:
    """Signed, expiring login cookies naming a token; no server-side state.

    The cookie holds the token's name and the first 16 hex digits of its digest, never the secret:
    rotating or revoking the token ends its sessions.
    """

    def __init__(self, secret: str, ttl_s: float) -> None:
        # A random key per process when none is set: logins end on restart, which is safe.
        self._key = hashlib.sha256(secret.encode()).digest() if secret else secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._key, payload, "sha256")).decode().rstrip("=")

    def issue(self, token: Token, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        payload = json.dumps([token.name, token.digest[:16], expires], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._sign(payload)

    def verify(self, cookie: str, tokens: Tokens, now: float | None = None) -> Token | None:
        """The token a cookie was issued for, if the signature holds, it has not expired and the
        token still exists unchanged."""
        encoded, _, signature = cookie.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            name, digest_prefix, expires = json.loads(payload)
        except (ValueError, TypeError):
            return None
        if not isinstance(expires, int) or expires < (now if now is not None else time.time()):
            return None
        token = tokens.named(str(name))
        if token is None or token.digest[:16] != digest_prefix:
            return None
        return token


@dataclass(frozen=True, slots=True)
class WebAuth:
    """What `authorize` consults, kept on app.state.auth only when auth is required (else None)."""

    tokens: Tokens
    sessions: Sessions


def _same_origin(request: Request) -> bool:
    """A write made with a cookie must come from a page of this host (defence beside SameSite)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser, or one that sends neither; SameSite already kept the cookie home
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _credentials(request: Request, bearer: HTTPAuthorizationCredentials | None, auth: WebAuth) -> Token | None:
    if request.headers.get("authorization") is not None:
        # A bearer token that does not match is refused even with a valid cookie: the caller meant it.
        secret = bearer.credentials if bearer is not None and bearer.scheme.lower() == "bearer" else None
        token = auth.tokens.authenticate(secret)
        if token is None:
            raise LoginRequired(
                "the token in the Authorization header is not known; send Authorization: Bearer <secret>"
            )
        return token
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    token = auth.sessions.verify(cookie, auth.tokens)
    if token is not None and request.method not in _READS and not _same_origin(request):
        raise HTTPException(403, "a change made with a login cookie must come from Vigil's own pages")
    return token


def authorize(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Token | None:
    """Refuses a request without a token holding one of the scopes its route needs (when auth is on)."""
    auth: WebAuth | None = getattr(request.app.state, "auth", None)
    if auth is None:
        return None
    scopes = required_scopes(request.method, request.url.path)
    token = _credentials(request, bearer, auth)
    if not scopes:
        return token
    if token is None:
        raise LoginRequired(
            f"this route needs a token with the {' or '.join(repr(s) for s in scopes)} scope: "
            "send Authorization: Bearer <secret>, or sign in at /login"
        )
    if not any(token.allows(scope) for scope in scopes):
        raise HTTPException(
            403,
            f"token {token.name!r} has scopes {', '.join(sorted(token.scopes))}; this route needs "
            f"{' or '.join(repr(s) for s in scopes)}",
        )
    request.state.token = token
    return token
