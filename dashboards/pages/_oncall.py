"""What the on-call pages (findings, deploys, alerts) share: how long things lasted, and the
service page around a moment."""

from __future__ import annotations

from urllib.parse import quote

from vigil.dashboards.render import link

__all__ = ["duration_text", "service_path", "service_url_at"]


def duration_text(seconds: float) -> str:
    """How long, to the units an on-call engineer reads.

    >>> duration_text(45), duration_text(750), duration_text(11_100), duration_text(187_200)
    ('45s', '12m', '3h 5m', '2d 4h')
    """
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{secs}s"


def service_path(service: str) -> str:
    return f"/services/{quote(service, safe='')}"


def service_url_at(service: str, start_s: float, end_s: float) -> str:
    """The service page over an absolute range (what a finding, deploy or alert links to)."""
    return link(service_path(service), None, start=int(start_s), end=int(end_s))
