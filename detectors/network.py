"""Network anomalies: traffic drops and spikes, failed-handshake surges, and silent flow exporters.

Series come from the per-minute flow rollup (`flows_1m`), keyed as JSON lists:

- ``["customer", customer, direction, "bits_per_second"]``: a customer's traffic; "in" is what it
  sent into the network, "out" what was delivered to it. Addresses outside every prefix are the
  customer "" (shown as ``unknown``), a series like any other.
- ``["interface", exporter, interface, direction, "bits_per_second"]``: traffic entering ("in")
  or leaving ("out") one interface of one exporter.
- ``["customer", customer, direction, "failed_handshakes"]``: TCP flows with SYN but no ACK, out
  of the customer's TCP flows in that direction.
- ``["exporter", address, "silent"]``: the flows an exporter sent per minute.

Finding rules, as an on-call engineer may rely on them:

- Traffic (`TrafficDetector`): a drop or a spike of at least 30% of the baseline and 10 kbit/s,
  judged by `LevelShiftDetector` against a baseline that follows the time of day and week once
  it has two days of history. A minute without flows of a series seen before counts as 0 bit/s,
  so a customer whose traffic stops is a drop. The onset is the first minute at least halfway
  to the new level. Closes after 10 minutes back near the baseline, or after 10 hours at the new
  level (accepted as the new normal).
- Failed handshakes (`HandshakeDetector`): a rise only, judged on counts (Bernoulli CUSUM), to
  at least 3x the baseline share and 5 points above it, with at least 20 failed handshakes since
  the onset. Closes when the evidence has drained back to zero.
- Exporter silence (`ExporterSilenceDetector`): an exporter that had sent flows in at least 30
  minutes and then sends none for N minutes in a row: N = 3 for an exporter that has sent flows
  every minute for two hours (up to 5 with less history), longer for a sparse one (about 16 for
  one with flows in half of the minutes at random; see the detector for the rule). Onset at the
  first empty minute; closes with the first minute of flows again, or after 24 hours of silence
  (the exporter is taken to be retired). An exporter never seen sending never fires.
- Cold start: no finding on a series before its baseline exists: 100 minutes with data for
  traffic, 60 minutes and 1000 TCP flows for handshakes, 30 minutes with flows for exporters.
- One silent exporter is one finding: while an exporter sends no flows, its interfaces, and the
  customers it carried at least 10% of (judged on the hour before its last flow), have no data
  rather than a drop. This holds for 24 hours (`MAX_SCOPE_AGE_S`); a traffic series without data
  for 6 hours starts cold again, so a retired exporter's customers learn their new level.

Evidence: a failed-handshake surge or a traffic spike lists the destination ports
over-represented since the onset (against the hour before) as ``destination.port`` attributes.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace

from clickhouse_connect.driver.client import Client

from vigil.detectors.base import SeriesDetector
from vigil.detectors.network_anomaly import ExporterSilenceDetector, HandshakeDetector, TrafficDetector
from vigil.detectors.runner import Buckets, SeriesInfo
from vigil.store.detector_read import exporter_last_seen, flow_scope_buckets, flow_scopes, flow_top_ports
from vigil.store.findings import Finding
from vigil.store.flows_read import UNKNOWN

__all__ = [
    "CARRIER_SHARE",
    "HANDSHAKES",
    "MAX_SCOPE_AGE_S",
    "SILENT",
    "TRAFFIC",
    "NetworkAnomalies",
    "customer_key",
    "exporter_key",
    "interface_key",
]

TRAFFIC = "bits_per_second"
HANDSHAKES = "failed_handshakes"
SILENT = "silent"

# What a silent exporter carried is read from this long before its last flow (or the chunk).
_SCOPE_LOOKBACK_S = 3600.0
# An exporter silent for longer is forgotten: its customers' traffic is judged without it.
MAX_SCOPE_AGE_S = 86400.0
# A customer is blanked while an exporter that carried at least this share of its traffic is silent.
CARRIER_SHARE = 0.1
# Ports evidence compares the window since the onset with this much before it.
_EVIDENCE_BASELINE_S = 3600.0

_Value = float | dict[str, float]


def _key(*parts: str | int) -> str:
    return json.dumps(list(parts), separators=(",", ":"))


def customer_key(customer: str, direction: str, signal: str) -> str:
    return _key("customer", customer, direction, signal)


def interface_key(exporter: str, interface: int, direction: str) -> str:
    return _key("interface", exporter, interface, direction, TRAFFIC)


def exporter_key(exporter: str) -> str:
    return _key("exporter", exporter, SILENT)


def _who(customer: str) -> str:
    return f"customer {customer}" if customer else "unknown customers (no matching prefix)"


class NetworkAnomalies:
    """The network family of detectors (see the module docstring)."""

    name = "network"
    kind = "network"
    step = 60.0

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def buckets(self, start: float, end: float) -> Buckets:
        step = self.step
        traffic: dict[float, dict[str, float]] = defaultdict(dict)
        handshakes: dict[float, dict[str, list[int]]] = defaultdict(dict)
        flows: dict[float, dict[str, float]] = defaultdict(dict)
        active: dict[float, set[str]] = defaultdict(set)
        for row in flow_scope_buckets(self.client, self.database, start, end):
            t, bits = row.minute, row.bytes * 8 / step
            values = traffic[t]
            for key in (
                customer_key(row.customer, row.direction, TRAFFIC),
                interface_key(row.exporter, row.interface, row.direction),
            ):
                values[key] = values.get(key, 0.0) + bits
            if row.tcp_flows:
                counts = handshakes[t].setdefault(customer_key(row.customer, row.direction, HANDSHAKES), [0, 0])
                counts[0] += row.syn_no_ack
                counts[1] += row.tcp_flows
            if row.direction == "in":  # each flow is counted once per direction; "in" counts it once
                key = exporter_key(row.exporter)
                flows[t][key] = flows[t].get(key, 0.0) + row.flows
            active[t].add(row.exporter)

        last_seen = exporter_last_seen(self.client, self.database, end + step)
        out: dict[float, dict[str, _Value]] = defaultdict(dict)
        for t, values in traffic.items():
            out[t].update(values)
        for t, per_customer in handshakes.items():
            out[t].update({key: {"y": float(failed), "n": float(tcp)} for key, (failed, tcp) in per_customer.items()})
        for t, per_exporter in flows.items():
            out[t].update({key: {"y": n} for key, n in per_exporter.items()})
        for exporter, seen in last_seen.items():
            bucket = self._seen_bucket(seen, start, end)
            if bucket is not None:
                current = out[bucket].get(exporter_key(exporter))
                out[bucket][exporter_key(exporter)] = {**(current if isinstance(current, dict) else {}), "seen": seen}

        self._blank_silent_scopes(start, end, out, traffic, active, last_seen)
        return sorted(out.items())

    def _seen_bucket(self, seen: float, start: float, end: float) -> float | None:
        """Where an exporter's last packet goes, for the silence summary to give its exact time.

        In its own minute; or in the chunk's last minute when it came just after the chunk (the
        exporter was alive at the chunk's end, so a silence of flows is not a silence of packets).
        """
        bucket = math.floor(seen / self.step) * self.step
        if start <= bucket < end:
            return bucket
        if end <= seen < end + self.step and end - self.step >= start:
            return end - self.step
        return None

    def _blank_silent_scopes(
        self,
        start: float,
        end: float,
        out: dict[float, dict[str, _Value]],
        traffic: Mapping[float, Mapping[str, float]],
        active: Mapping[float, set[str]],
        last_seen: Mapping[str, float],
    ) -> None:
        """While an exporter sends nothing, what it carried has no data: the silence is its own finding."""
        step = self.step
        known = set().union(*active.values()) if active else set()
        known |= {e for e, seen in last_seen.items() if seen >= start - MAX_SCOPE_AGE_S}
        first_active: dict[str, float] = {}
        for t in sorted(active):
            for exporter in active[t]:
                first_active.setdefault(exporter, t)

        def silent(exporter: str, t: float) -> bool:
            # Silent once it has been seen: an exporter that appears mid-chunk was not silent before.
            if exporter in active.get(t, ()):
                return False
            return first_active.get(exporter, math.inf) < t or last_seen.get(exporter, math.inf) < t

        minutes = [start + i * step for i in range(round((end - start) / step))]
        silent_at = {t: {e for e in known if silent(e, t)} for t in minutes}
        quiet = set().union(*silent_at.values()) if silent_at else set()
        if not quiet:
            return
        # What each silent exporter carried: the hour before its last flow, or before this chunk.
        since = min([start, *(last_seen[e] for e in quiet if e in last_seen)]) - _SCOPE_LOOKBACK_S
        scopes = flow_scopes(self.client, self.database, sorted(quiet), max(since, start - MAX_SCOPE_AGE_S), end)
        interfaces: dict[str, set[str]] = defaultdict(set)
        exporter_minutes: dict[str, int] = defaultdict(int)
        for scope in scopes:
            interfaces[scope.exporter].add(interface_key(scope.exporter, scope.interface, scope.direction))
            exporter_minutes[scope.exporter] = max(exporter_minutes[scope.exporter], scope.minutes)
        carried: dict[str, dict[str, float]] = defaultdict(dict)  # exporter -> customer key -> bit/s
        for scope in scopes:
            key = customer_key(scope.customer, scope.direction, TRAFFIC)
            rate = scope.bytes * 8 / step / max(exporter_minutes[scope.exporter], 1)
            carried[scope.exporter][key] = carried[scope.exporter].get(key, 0.0) + rate
        for t, exporters in silent_at.items():
            missing: dict[str, float] = defaultdict(float)
            for exporter in exporters:
                for key in interfaces.get(exporter, ()):
                    out[t][key] = {}  # no "y": no data
                for key, rate in carried.get(exporter, {}).items():
                    missing[key] += rate
            seen = traffic.get(t, {})
            for key, rate in missing.items():
                if rate > 0 and rate >= CARRIER_SHARE * (rate + seen.get(key, 0.0)):
                    out[t][key] = {}

    def new_detector(self, series: str) -> SeriesDetector:
        parts = json.loads(series)
        if parts[0] == "exporter":
            return ExporterSilenceDetector(parts[1])
        if parts[0] == "interface":
            _, exporter, interface, direction, _ = parts
            moving = "entering" if direction == "in" else "leaving"
            return TrafficDetector(f"{moving} interface {interface} of exporter {exporter} ({direction})")
        _, customer, direction, signal = parts
        if signal == HANDSHAKES:
            return HandshakeDetector(f"{'from' if direction == 'in' else 'to'} {_who(customer)} ({direction})")
        moving = "sent by" if direction == "in" else "delivered to"
        return TrafficDetector(f"{moving} {_who(customer)} ({direction})")

    def absent_value(self, series: str) -> float | None:
        # Traffic that stops is 0 bit/s (a drop); no TCP flows is no rate; a silent exporter is the point.
        return 0.0 if json.loads(series)[-1] == TRAFFIC else None

    def describe(self, series: str) -> SeriesInfo:
        parts = json.loads(series)
        if parts[0] == "exporter":
            return SeriesInfo(service=f"exporter {parts[1]}", operation="", signal=SILENT, unit="s")
        if parts[0] == "interface":
            _, exporter, interface, direction, signal = parts
            return SeriesInfo(
                service=f"exporter {exporter}",
                operation=f"interface {interface} {direction}",
                signal=signal,
                unit="bits/s",
            )
        _, customer, direction, signal = parts
        unit = "bits/s" if signal == TRAFFIC else "ratio"
        return SeriesInfo(service=customer or UNKNOWN, operation=direction, signal=signal, unit=unit)

    def enrich(self, finding: Finding, now: float) -> Finding:
        parts = json.loads(finding.series)
        handshakes = finding.signal == HANDSHAKES
        spike = finding.signal == TRAFFIC and finding.observed > finding.baseline
        if parts[0] == "exporter" or not (handshakes or spike):
            return finding  # what vanished in a drop, or from a silent exporter, is not in the flows
        since, baseline_start = finding.started_at, finding.started_at - _EVIDENCE_BASELINE_S
        if parts[0] == "interface":
            ports = flow_top_ports(
                self.client,
                self.database,
                direction=parts[3],
                exporter=parts[1],
                interface=int(parts[2]),
                bad_start=since,
                bad_end=now,
                baseline_start=baseline_start,
                failed_handshakes=handshakes,
            )
        else:
            ports = flow_top_ports(
                self.client,
                self.database,
                direction=parts[2],
                customer=parts[1],
                bad_start=since,
                bad_end=now,
                baseline_start=baseline_start,
                failed_handshakes=handshakes,
            )
        return replace(finding, top_attributes=tuple(ports))
