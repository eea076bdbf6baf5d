"""What the on-call pages (findings, deploys, alerts) share: the service page around a moment."""

from __future__ import annotations

from urllib.parse import quote

from vigil.dashboards.render import link

__all__ = ["service_path", "service_url_at"]


def service_path(service: str) -> str:
    return f"/services/{quote(service, safe='')}"


def service_url_at(service: str, start_s: float, end_s: float) -> str:
    """The service page over an absolute range (what a finding, deploy or alert links to)."""
    return link(service_path(service), None, start=int(start_s), end=int(end_s))
