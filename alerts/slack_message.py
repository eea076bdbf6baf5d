"""Slack Block Kit messages for alert groups: pure functions, no I/O.

One Slack message per group: the alerts of one service in one grouping window (a cascade).
`alert_message` builds it when the group fires, `resolved_message` rebuilds the same message
for ``chat.update`` once the group resolves, and `resolution_reply` is the short reply posted in
the message's thread. Each returns ``(text, blocks)``: ``text`` is the fallback Slack shows in
notifications and to screen readers, ``blocks`` the Block Kit layout:

* a ``header`` block (plain text): the severity emoji of the worst alert (critical 🔴, warning 🟠,
  info 🔵; ✅ once resolved), the service and what is wrong: ``🔴 checkout: latency p95
  regression`` for one alert, ``🔴 checkout: 3 alerts`` for several, ``✅ checkout: 3 alerts
  resolved`` (``2 of 3 alerts resolved`` while some still fire);
* one ``section`` (mrkdwn) per alert, most severe first, then by onset, at most
  `MAX_ALERT_SECTIONS`, then one ``…and N more: …`` section. An alert's section reads::

      🔴 *Latency p95 regression* on POST /checkout
      p95 latency of POST /checkout is 6.9 times its baseline.
      *180 ms → 1,240 ms* (6.9x) · since 12:03 UTC · suspected deploy v42
      <dashboard|Dashboard> · <finding|Finding> · <trace|Trace>

  The summary line is the detector's sentence; once resolved, ``since 12:03 UTC`` becomes
  ``12:03 to 12:26 UTC (23 min)``. Links (left out when ``public_url`` is empty):
  ``{public_url}/services/{service}?start=…&end=…`` (unix seconds: `DASHBOARD_BEFORE_S` before
  the onset to `DASHBOARD_AFTER_S` after the end; no ``end`` while firing, so the page runs to
  now), ``{public_url}/api/v1/findings/{finding_id}`` and ``{public_url}/traces/{trace_id}``
  for the first exemplar; path parts are URL-encoded;
* a ``context`` block (mrkdwn): ``Rule: checkout-latency · Severity: critical``, or the rules
  and the count per severity for several alerts.

Values are formatted by unit (`format_value`): ``1,240 ms``, ratios as percentages (``4.5%``),
``1.2 Mbit/s``, ``2 min 5 s``, ``14.4x budget``. Times are UTC.

Every text that comes from outside (service and operation names, summaries, rule names, deploy
ids) is put on one line and escaped for Slack (``&``, ``<``, ``>`` become entities), also in the
header and the fallback text, and mrkdwn text objects are ``verbatim``: ``<!channel>``,
``<script>`` or ``@here`` render literally and ping no one. The output stays within Slack's
limits: header text <= 150 characters, any text object <= 3000, at most 50 blocks (here 13).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

__all__ = [
    "DASHBOARD_AFTER_S",
    "DASHBOARD_BEFORE_S",
    "MAX_ALERT_SECTIONS",
    "AlertView",
    "alert_message",
    "format_duration",
    "format_value",
    "resolution_reply",
    "resolved_message",
]

Block = dict[str, Any]

# Slack's limits: header text and any text object (a message has at most 50 blocks; these
# messages have at most MAX_ALERT_SECTIONS + 3).
HEADER_LIMIT = 150
TEXT_LIMIT = 3000
# A cascade can hold dozens of alerts; past this many the rest is one line each.
MAX_ALERT_SECTIONS = 10
# The dashboard link opens half an hour before the onset (to show the change) and, once
# resolved, ends a quarter of an hour after the end (to show the recovery).
DASHBOARD_BEFORE_S = 1800
DASHBOARD_AFTER_S = 900

# How much of each outside text a message shows (escaped characters), so that an alert's
# section fits in one text object whatever the detectors and rules put in them.
_SERVICE_CHARS = 80
_OPERATION_CHARS = 200
_TITLE_CHARS = 60
_SUMMARY_CHARS = 600
_DEPLOY_CHARS = 100
_RULE_CHARS = 100
_VALUE_CHARS = 60
_MIN_SUMMARY_CHARS = 20
_MAX_RULES = 10

_SEVERITY_EMOJI = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_SEVERITY_ORDER = ("critical", "warning", "info")
_UNKNOWN_EMOJI = "⚪"
_RESOLVED_EMOJI = "✅"
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}

# What the detectors' signals are called in a message; others are spelled out from the name.
_SIGNAL_TITLES = {
    "latency_p50": "latency p50",
    "latency_p95": "latency p95",
    "latency_p99": "latency p99",
    "error_rate": "error rate",
    "throughput": "throughput",
    "new_pattern": "new log pattern",
    "pattern_rate": "log pattern rate",
    "error_logs": "error logs",
    "bits_per_second": "traffic anomaly",
    "failed_handshakes": "failed handshakes",
    "silent": "exporter silent",
    "slo_burn_page": "SLO burn (page)",
    "slo_burn_ticket": "SLO burn (ticket)",
}
# Replication lag findings carry the metric name as their signal, which says less than the kind.
_KIND_TITLES = {"replication_lag": "replication lag"}
_KIND_SUFFIXES = {"service_regression": " regression"}


@dataclass(frozen=True, slots=True)
class AlertView:
    """What a message shows of one alert: the alert's rule and state with its finding."""

    key: str  # stable dedup key of the alert
    rule: str  # name of the alert rule that matched
    severity: str  # critical | warning | info
    state: str  # firing | resolved
    kind: str  # finding kind: service_regression, log_pattern, network, replication_lag, slo_burn, monitor
    service: str
    operation: str  # "" when the finding is about the whole service
    signal: str  # e.g. latency_p95, error_rate, new_pattern, slo_burn_page
    summary: str  # one sentence from the detector
    started_at: float  # unix seconds (onset)
    ended_at: float | None
    baseline: float
    observed: float
    unit: str  # of baseline and observed: ms, ratio, requests/min, s, bits/s, lines/min, x budget ...
    deploy_id: str  # "" when none
    exemplar_trace_ids: tuple[str, ...]
    finding_id: str


# -- public builders ----------------------------------------------------------------------------


def alert_message(alerts: Sequence[AlertView], *, service: str, public_url: str) -> tuple[str, list[Block]]:
    """The message for a group that fires: ``(fallback text, blocks)``."""
    ordered = _ordered(alerts)
    emoji = _worst_emoji(ordered)
    svc = _escape(service, _SERVICE_CHARS)
    what = _title(ordered[0]) if len(ordered) == 1 else f"{len(ordered)} alerts"
    header = f"{emoji} {svc}: {what}"
    if len(ordered) == 1:
        a = ordered[0]
        facts = f"{_change_text(a)} since {_clock(a.started_at)} UTC"
        text = f"{header}{_on(a)}: {facts}"
    else:
        text = _join_clipped([f"{header}:", *(_title(a) + _on(a) for a in ordered)], " ", TEXT_LIMIT, sep_after=";")
    return text, _blocks(header, ordered, service=service, public_url=public_url)


def resolved_message(alerts: Sequence[AlertView], *, service: str, public_url: str) -> tuple[str, list[Block]]:
    """The group's message once resolved, to replace the original with ``chat.update``."""
    ordered = _ordered(alerts)
    svc = _escape(service, _SERVICE_CHARS)
    resolved = [a for a in ordered if _is_resolved(a)]
    if len(resolved) == len(ordered):
        what = _title(ordered[0]) if len(ordered) == 1 else f"{len(ordered)} alerts"
        header = f"{_RESOLVED_EMOJI} {svc}: {what} resolved"
    else:
        firing = [a for a in ordered if not _is_resolved(a)]
        header = f"{_worst_emoji(firing)} {svc}: {len(resolved)} of {len(ordered)} alerts resolved"
    lasted = _incident_duration(ordered)
    text = header if lasted is None else f"{header} after {format_duration(lasted)}"
    return text, _blocks(header, ordered, service=service, public_url=public_url)


def resolution_reply(alerts: Sequence[AlertView], *, public_url: str) -> tuple[str, list[Block]]:
    """The short reply in the group message's thread once the group resolved.

    It says how long the incident lasted (first onset to last end) and links the service
    dashboard over the whole incident; for several alerts, one line each.
    """
    ordered = _ordered(alerts)
    lasted = _incident_duration(ordered)
    after = "" if lasted is None else f" after {format_duration(lasted)}"
    after_bold = "" if lasted is None else f" after *{format_duration(lasted)}*"
    ends = [a.ended_at for a in ordered if _is_resolved(a) and a.ended_at is not None]
    dashboard = _dashboard_link(
        ordered[0].service, min(a.started_at for a in ordered), max(ends) if ends else None, public_url
    )
    # A link too long to leave room for the reply (an absurd public URL) is left out.
    link = f" · {dashboard}" if dashboard and len(dashboard) <= TEXT_LIMIT // 2 else ""
    if len(ordered) == 1:
        what = _title(ordered[0]) + _on(ordered[0])
        text = f"Resolved{after}: {what}"
        return text, [_section(f"{_RESOLVED_EMOJI} Resolved{after_bold}: {what}{link}")]
    svc = _escape(ordered[0].service, _SERVICE_CHARS)
    text = f"Resolved{after}: {len(ordered)} alerts on {svc}"
    lines = [f"{_RESOLVED_EMOJI} Resolved{after_bold}: {len(ordered)} alerts on {svc}{link}"]
    lines += [f"• {_capitalized(_title(a))}{_on(a)}: {_lasted(a)}" for a in ordered[:MAX_ALERT_SECTIONS]]
    if len(ordered) > MAX_ALERT_SECTIONS:
        lines.append(f"…and {len(ordered) - MAX_ALERT_SECTIONS} more")
    return text, [_section(_join_clipped(lines, "\n", TEXT_LIMIT))]


# -- formatting ---------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """`value` in `unit` as a person reads it.

    >>> format_value(1240.4, "ms"), format_value(2.54, "ms"), format_value(0.0123, "ratio")
    ('1,240 ms', '2.5 ms', '1.2%')
    >>> format_value(1_234_567, "bits/s"), format_value(125, "s"), format_value(14.43, "x budget")
    ('1.2 Mbit/s', '2 min 5 s', '14.4x budget')
    """
    if unit == "ratio":
        return f"{_number(value * 100)}%"
    if unit == "%":
        return f"{_number(value)}%"
    if unit == "s":
        return _seconds(value)
    if unit == "x budget":
        # Burn rates are read to one decimal: 14.4 is the classic page threshold.
        return f"{_trim(f'{value:,.1f}')}x budget" if math.isfinite(value) else f"{value}x budget"
    if unit in ("bits/s", "bit/s"):
        return _scaled(value, "bit/s", (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)))
    if unit in ("bytes/s", "B/s"):
        return _scaled(value, "B/s", (("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)))
    if unit in ("bytes", "B"):
        return _scaled(value, "B", (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)))
    return f"{_number(value)} {unit}" if unit else _number(value)


def format_duration(seconds: float) -> str:
    """A duration to the second below a minute, else to the minute.

    >>> format_duration(42), format_duration(23 * 60 + 10), format_duration(3 * 3600 + 300), format_duration(90000)
    ('42 s', '23 min', '3 h 5 min', '1 d 1 h')
    """
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if round(seconds) < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _number(value: float) -> str:
    """Whole numbers with thousands separators from 10 up, one decimal from 1, else two significant digits."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 10:
        return f"{value:,.0f}"
    if size >= 1:
        return _trim(f"{value:.1f}")
    decimals = min(1 - math.floor(math.log10(size)), 9)
    return _trim(f"{value:.{decimals}f}")


def _trim(number: str) -> str:
    if "." not in number:
        return number
    trimmed = number.rstrip("0").rstrip(".")
    return "0" if trimmed in ("-0", "") else trimmed


def _scaled(value: float, base: str, prefixes: tuple[tuple[str, float], ...]) -> str:
    for name, scale in prefixes:
        if abs(value) >= scale:
            return f"{_number(value / scale)} {name}"
    return f"{_number(value)} {base}"


def _seconds(value: float) -> str:
    # Lag is read in seconds while short and in minutes or hours once long.
    if not math.isfinite(value) or abs(value) < 59.5:
        return f"{_number(value)} s"
    total = round(abs(value))
    sign = "-" if value < 0 else ""
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{sign}{minutes} min {secs} s" if secs else f"{sign}{minutes} min"
    return sign + format_duration(total)


def _change_text(a: AlertView) -> str:
    # The unit is outside text too.
    baseline = _escape(format_value(a.baseline, a.unit), _VALUE_CHARS)
    return f"{baseline} → {_escape(format_value(a.observed, a.unit), _VALUE_CHARS)}"


def _change_factor(a: AlertView) -> str:
    """How far from baseline: a factor from twice on, else a signed percentage; nothing from zero."""
    if not (math.isfinite(a.baseline) and math.isfinite(a.observed)) or a.baseline <= 0:
        return ""
    ratio = a.observed / a.baseline
    if ratio >= 2:
        return f" ({_number(ratio)}x)"
    percent = (ratio - 1) * 100
    return f" ({'+' if percent >= 0 else '-'}{_number(abs(percent))}%)"


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M")


def _escape(raw: str, limit: int) -> str:
    """`raw` on one line with Slack's control characters escaped, in at most `limit` characters.

    Cut text ends in "…"; a cut never splits an entity.
    """
    out: list[str] = []
    size = 0
    pieces = [_ENTITIES.get(ch, ch) for ch in " ".join(raw.split())]
    if sum(len(p) for p in pieces) <= limit:
        return "".join(pieces)
    for piece in pieces:
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def _cut(text: str, limit: int) -> str:
    """Escaped `text` in at most `limit` characters, ending in "…" when cut, never inside an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _join_clipped(parts: Sequence[str], sep: str, limit: int, *, sep_after: str = "") -> str:
    """Whole `parts` joined while they fit in `limit` characters, then "…".

    The parts are already escaped, so cutting between them never breaks an entity or a link.
    `sep_after` ends every part but the first and the last (a list after a colon).
    """
    pieces = [part + (sep_after if 0 < i < len(parts) - 1 else "") for i, part in enumerate(parts)]
    joined = sep.join(pieces)
    if len(joined) <= limit:
        return joined
    out = ""
    for piece in pieces:
        candidate = out + sep + piece if out else piece
        if len(candidate) + len(sep) + 1 > limit:
            break
        out = candidate
    return out + sep + "…" if out else _cut(pieces[0], limit)


# -- pieces of a message ------------------------------------------------------------------------


def _ordered(alerts: Sequence[AlertView]) -> list[AlertView]:
    if not alerts:
        raise ValueError("a message needs at least one alert")
    # Most severe first, then by onset: the first section is the alert to look at first, and the
    # order does not change when the message is updated on resolution.
    return sorted(alerts, key=lambda a: (_severity_rank(a.severity), a.started_at, a.operation, a.signal, a.key))


def _severity_rank(severity: str) -> int:
    return _SEVERITY_ORDER.index(severity) if severity in _SEVERITY_ORDER else len(_SEVERITY_ORDER)


def _worst_emoji(alerts: Sequence[AlertView]) -> str:
    worst = min(alerts, key=lambda a: _severity_rank(a.severity))
    return _SEVERITY_EMOJI.get(worst.severity, _UNKNOWN_EMOJI)


def _is_resolved(a: AlertView) -> bool:
    return a.state == "resolved"


def _title(a: AlertView) -> str:
    """What is wrong in a few words, e.g. "latency p95 regression" (escaped)."""
    name = _KIND_TITLES.get(a.kind) or _SIGNAL_TITLES.get(a.signal)
    if name is None:
        name = " ".join(a.signal.replace("_", " ").split()) or a.kind.replace("_", " ") or "alert"
    return _escape(name + _KIND_SUFFIXES.get(a.kind, ""), _TITLE_CHARS)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _on(a: AlertView) -> str:
    return f" on {_escape(a.operation, _OPERATION_CHARS)}" if a.operation.strip() else ""


def _lasted(a: AlertView) -> str:
    if not _is_resolved(a):
        return "still firing"
    if a.ended_at is None:
        return "resolved"
    return format_duration(a.ended_at - a.started_at)


def _incident_duration(alerts: Sequence[AlertView]) -> float | None:
    """From the first onset to the last end among resolved alerts, or None when none has ended."""
    ends = [a.ended_at for a in alerts if _is_resolved(a) and a.ended_at is not None]
    return max(ends) - min(a.started_at for a in alerts) if ends else None


def _when(a: AlertView) -> str:
    if not _is_resolved(a):
        return f"since {_clock(a.started_at)} UTC"
    if a.ended_at is None:
        return f"from {_clock(a.started_at)} UTC, resolved"
    return f"{_clock(a.started_at)} to {_clock(a.ended_at)} UTC ({format_duration(a.ended_at - a.started_at)})"


def _link(url: str, label: str) -> str:
    # Inside <url|label> Slack decodes &amp; back to &, so the URL is escaped like any text.
    return f"<{_escape(url, TEXT_LIMIT)}|{label}>"


def _dashboard_link(service: str, start: float, end: float | None, public_url: str) -> str:
    """The service dashboard from before `start` to after `end` (to now while `end` is None)."""
    base = public_url.rstrip("/")
    if not base:
        return ""
    query = {"start": str(math.floor(start) - DASHBOARD_BEFORE_S)}
    if end is not None:
        query["end"] = str(math.ceil(end) + DASHBOARD_AFTER_S)
    return _link(f"{base}/services/{quote(service, safe='')}?{urlencode(query)}", "Dashboard")


def _links(a: AlertView, public_url: str) -> str:
    base = public_url.rstrip("/")
    if not base:
        return ""
    end = a.ended_at if _is_resolved(a) else None
    links = [_dashboard_link(a.service, a.started_at, end, public_url)]
    if a.finding_id:
        links.append(_link(f"{base}/api/v1/findings/{quote(a.finding_id, safe='')}", "Finding"))
    if a.exemplar_trace_ids:
        links.append(_link(f"{base}/traces/{quote(a.exemplar_trace_ids[0], safe='')}", "Trace"))
    return " · ".join(links)


def _alert_text(a: AlertView, group_service: str, public_url: str) -> str:
    emoji = _RESOLVED_EMOJI if _is_resolved(a) else _SEVERITY_EMOJI.get(a.severity, _UNKNOWN_EMOJI)
    first = f"{emoji} *{_capitalized(_title(a))}*{_on(a)}"
    if a.service != group_service:
        first += f" ({_escape(a.service, _SERVICE_CHARS)})"
    facts = f"*{_change_text(a)}*{_change_factor(a)} · {_when(a)}"
    if a.deploy_id.strip():
        facts += f" · suspected deploy {_escape(a.deploy_id, _DEPLOY_CHARS)}"
    links = _links(a, public_url)
    fixed = [first, facts, *([links] if links else [])]
    if sum(len(line) + 1 for line in fixed) > TEXT_LIMIT:
        # Only the links can be this long (a very long public URL): the alert matters more.
        fixed = fixed[:2]
    # The summary gets the room the other lines leave.
    room = min(_SUMMARY_CHARS, TEXT_LIMIT - sum(len(line) + 1 for line in fixed))
    summary = _escape(a.summary, room) if room >= _MIN_SUMMARY_CHARS else ""
    return "\n".join([fixed[0], *([summary] if summary else []), *fixed[1:]])


def _more_text(rest: Sequence[AlertView]) -> str:
    items = [
        f"{_RESOLVED_EMOJI if _is_resolved(a) else _SEVERITY_EMOJI.get(a.severity, _UNKNOWN_EMOJI)} "
        f"{_capitalized(_title(a))}{_on(a)}"
        for a in rest
    ]
    return _join_clipped([f"…and {len(rest)} more:", *items], " ", TEXT_LIMIT, sep_after=";")


def _context_text(alerts: Sequence[AlertView]) -> str:
    rules = list(dict.fromkeys(_escape(a.rule, _RULE_CHARS) for a in alerts))
    shown = ", ".join(rules[:_MAX_RULES]) + (f", +{len(rules) - _MAX_RULES} more" if len(rules) > _MAX_RULES else "")
    label = "Rule" if len(rules) == 1 else "Rules"
    if len(alerts) == 1:
        severity = _escape(alerts[0].severity, _RULE_CHARS)
    else:
        counts: dict[str, int] = {}
        for a in alerts:
            counts[a.severity] = counts.get(a.severity, 0) + 1
        ranked = sorted(counts, key=lambda s: (_severity_rank(s), s))
        severity = ", ".join(f"{counts[s]} {_escape(s, _RULE_CHARS)}" for s in ranked)
    return f"{label}: {shown} · Severity: {severity}"


def _section(text: str) -> Block:
    # verbatim: Slack does not turn names, URLs or @mentions in outside text into links or pings.
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def _blocks(header: str, ordered: Sequence[AlertView], *, service: str, public_url: str) -> list[Block]:
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": _cut(header, HEADER_LIMIT)}}]
    blocks += [_section(_alert_text(a, service, public_url)) for a in ordered[:MAX_ALERT_SECTIONS]]
    if len(ordered) > MAX_ALERT_SECTIONS:
        blocks.append(_section(_more_text(ordered[MAX_ALERT_SECTIONS:])))
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _context_text(ordered), "verbatim": True}]}
    )
    return blocks
