"""Signing in to the dashboard with a read token, and out again (see vigil.api.auth for the cookie)."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.api.auth import SESSION_COOKIE, WebAuth
from vigil.dashboards.render import render

__all__ = ["router", "safe_next"]

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    if request.app.state.auth is None:  # auth not required: nothing to sign in to
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", title="Sign in", next=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    # An HTML form posts application/x-www-form-urlencoded (read with the standard library, as
    # the silence form is).
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    target = safe_next(form.get("next"))
    auth: WebAuth | None = request.app.state.auth
    if auth is None:
        return RedirectResponse(target, status_code=303)
    token = auth.tokens.authenticate(form.get("token", "").strip())
    if token is None:
        error = "That token is not known. Paste the whole secret, or ask for a new one."
    elif not token.allows("read"):
        error = (
            f"Token {token.name!r} has the scopes {', '.join(sorted(token.scopes))}; "
            "signing in needs one with the read scope."
        )
    else:
        response = RedirectResponse(target, status_code=303)
        settings = request.app.state.settings
        response.set_cookie(
            SESSION_COOKIE,
            auth.sessions.issue(token),
            max_age=int(auth.sessions.ttl_s),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https" or settings.public_url.startswith("https://"),
        )
        return response
    return render(request, "login.html", title="Sign in", status_code=401, next=target, error=error)


@router.post("/logout")
def sign_out() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
    return response
