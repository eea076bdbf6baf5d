"""Page benchmark data: a day of spans and logs of 20 services, written straight into ClickHouse.

    .venv/bin/python -m tests.bench.page_data --data-dir /var/tmp/vigil-pages [--spans 10000000] [--logs 5000000]

Builds Vigil's schema (database `vigil`, what `vigil serve` opens) in the chDB directory
`--data-dir` and fills it the way the collector would, so `tests.bench.pages` can time the pages
over it:

- spans over the last 24 h: 20 services in three tiers (4 entry services, 8 in the middle, 8 at
  the back), 10 operations each. A trace is a root SERVER span with an INTERNAL child, and calls
  one or two tiers down (a CLIENT span, then the callee's SERVER span): 2, 4 or 6 spans, parents
  in other services. Durations are log-normal around each operation's median, a server's
  including its calls; about 1% of spans fail (a callee's failure often fails its callers).
- versions: each service is deployed once or twice during the day (a reported deploy each), so
  spans carry the version that was live; `checkout` 2.0.0 is slower and fails more.
- logs over the same day from ~50 templates (info, debug, warnings and errors); 40% are written
  inside a span (its trace and span id, service and version), the rest on their own. Each row
  carries the template id and template the collector's miner gives its template's bodies.

Rows go through `StoreWriter.insert`, the store's insert path, into `spans` and `logs`, so the
materialized views (RED per minute, trace-id times, log patterns per minute) fill as in
production, in time-ordered chunks of `--chunk` spans. The calls between services
(`service_edges_1m`), which the detectors roll up every minute, are rolled up for the whole day at
the end. Prints rows/s for each. Once done it writes `vigil-page-data.json` (when the
day ends, and the row counts) into the directory. Run it again with another `--data-dir` for a new
store; a directory already holding spans is refused rather than doubled.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vigil.collector.log_templates import LogTemplateMiner
from vigil.store.client import Client, open_client
from vigil.store.deploys import Deploy, DeployStore, deploy_id
from vigil.store.migrate import migrate
from vigil.store.schema import LOG_TEMPLATE_FIELDS, LOGS_ARROW_SCHEMA, SPANS_ARROW_SCHEMA, DdlContext
from vigil.store.service_edges import ServiceEdgeRollup
from vigil.store.write import StoreWriter

DATABASE = "vigil"
# Written into the data directory once it is filled: when its day ends, and how much it holds.
MARKER = "vigil-page-data.json"
DAY_S = 86_400

ENTRY = ["web", "mobile-bff", "api-gateway", "partner-api"]
MIDDLE = ["checkout", "cart", "catalog", "search", "orders", "users", "recommend", "pricing"]
BACK = ["payments", "inventory", "shipping", "auth", "notifications", "reviews", "currency", "ledger"]
SERVICES = ENTRY + MIDDLE + BACK
OPERATIONS = 10
_ENTRY_OPS = [
    "GET /",
    "GET /product/{id}",
    "GET /cart",
    "POST /cart",
    "POST /checkout",
    "GET /search",
    "GET /account",
    "POST /login",
    "GET /orders/{id}",
    "GET /health",
]
_RPC_OPS = ["Get", "List", "Create", "Update", "Delete", "Search", "Validate", "Reserve", "Confirm", "Stream"]
# A callee of each middle and back service: callers in one tier call two or three of the next.
_FANOUT = 3
# The regression: this service's last version is slower and fails more.
SLOW_SERVICE, SLOW_VERSION = "checkout", "2.0.0"

# Spans per trace by calls made: 0, 1 or 2 tiers down (2, 4 or 6 spans; 4.4 on average).
_HOPS_P = (0.2, 0.4, 0.4)
_SPANS_PER_TRACE = 2 + 2 * (_HOPS_P[1] + 2 * _HOPS_P[2])
_SERVER_ERROR_P = 0.012
_PROPAGATE_P = 0.6
_LOGS_IN_SPANS = 0.4

_attr_map = pa.map_(pa.string(), pa.string())


@dataclass(frozen=True, slots=True)
class LogTemplate:
    """A log statement: `parts` around up to two numbers drawn from `a` and `b` ranges."""

    severity: str
    parts: tuple[str, str, str]
    a: tuple[int, int] | None
    b: tuple[int, int] | None


def _t(severity: str, text: str, a: tuple[int, int] | None = None, b: tuple[int, int] | None = None) -> LogTemplate:
    pieces = text.split("{}")
    parts = [*pieces, "", ""][:3]
    return LogTemplate(severity, (parts[0], parts[1], parts[2]), a, b)


_MS, _ID, _N = (1, 5000), (1000, 99_999_999), (1, 500)
TEMPLATES: tuple[LogTemplate, ...] = (
    _t("INFO", "request handled in {} ms with {} queries", _MS, (0, 40)),
    _t("INFO", "order {} accepted", _ID),
    _t("INFO", "order {} shipped in {} parcels", _ID, (1, 5)),
    _t("INFO", "user {} logged in", _ID),
    _t("INFO", "user {} logged out after {} minutes", _ID, (1, 600)),
    _t("INFO", "cart {} updated: {} items", _ID, (1, 30)),
    _t("INFO", "payment {} authorised", _ID),
    _t("INFO", "cache warm: {} keys loaded in {} ms", (100, 90_000), _MS),
    _t("INFO", "search returned {} results in {} ms", (0, 1000), _MS),
    _t("INFO", "price list refreshed: {} products", (10, 50_000)),
    _t("INFO", "reservation {} confirmed for {} units", _ID, _N),
    _t("INFO", "email queued for user {}", _ID),
    _t("INFO", "connection pool resized to {} connections", (2, 128)),
    _t("INFO", "exchange rates updated from provider in {} ms", _MS),
    _t("INFO", "recommendations computed for user {} from {} signals", _ID, (1, 400)),
    _t("INFO", "ledger batch {} committed with {} entries", _ID, (1, 10_000)),
    _t("INFO", "review {} published", _ID),
    _t("INFO", "inventory sync finished: {} SKUs changed", (0, 3000)),
    _t("INFO", "token issued for client {} valid {} seconds", _ID, (60, 86_400)),
    _t("INFO", "partner feed {} accepted with {} records", _ID, (1, 20_000)),
    _t("INFO", "health check passed"),
    _t("INFO", "configuration reloaded"),
    _t("DEBUG", "query plan chosen: index scan on {} rows", (1, 10_000_000)),
    _t("DEBUG", "retrying idempotent call, attempt {} of {}", (1, 3), (3, 5)),
    _t("DEBUG", "span exported in batch of {}", (1, 512)),
    _t("DEBUG", "feature flag evaluated for user {}", _ID),
    _t("DEBUG", "cache hit ratio {} percent over {} lookups", (0, 100), (100, 100_000)),
    _t("DEBUG", "serialised response of {} bytes", (50, 2_000_000)),
    _t("DEBUG", "gc pause of {} ms", (1, 300)),
    _t("DEBUG", "opened stream {} to upstream", _ID),
    _t("WARN", "slow query took {} ms on table orders", (500, 20_000)),
    _t("WARN", "retry {} for payment {}", (1, 5), _ID),
    _t("WARN", "cache miss storm: {} misses in {} seconds", (100, 50_000), (1, 60)),
    _t("WARN", "request queue at {} percent of capacity", (70, 99)),
    _t("WARN", "deprecated endpoint called by client {}", _ID),
    _t("WARN", "rate limit near for tenant {}: {} requests", _ID, (900, 1000)),
    _t("WARN", "upstream answered slowly after {} ms", (800, 10_000)),
    _t("WARN", "stock low for SKU {}: {} left", _ID, (0, 5)),
    _t("WARN", "token for client {} expires in {} seconds", _ID, (1, 300)),
    _t("WARN", "disk usage at {} percent", (80, 99)),
    _t("ERROR", "payment {} failed: card declined", _ID),
    _t("ERROR", "upstream timed out after {} ms", (1000, 30_000)),
    _t("ERROR", "order {} could not be saved: deadlock detected", _ID),
    _t("ERROR", "connection refused by database after {} attempts", (1, 10)),
    _t("ERROR", "unhandled exception in handler, request {} aborted", _ID),
    _t("ERROR", "shipment {} rejected by carrier with code {}", _ID, (400, 499)),
    _t("ERROR", "ledger entry {} out of balance by {} cents", _ID, (1, 100_000)),
    _t("ERROR", "could not reserve {} units for order {}", _N, _ID),
    _t("ERROR", "authentication failed for user {}", _ID),
    _t("ERROR", "currency {} missing from rate table", (100, 999)),
)
# How often each template is logged: a few statements dominate, as in real services.
_TEMPLATE_P = 1.0 / np.arange(1, len(TEMPLATES) + 1) ** 1.1
_TEMPLATE_P /= _TEMPLATE_P.sum()
_SEVERITY_NUMBER = {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17}


# -- the world: services, operations, versions -------------------------------------------------


@dataclass(frozen=True, slots=True)
class World:
    """Everything fixed about the day: operations, medians, call graph, versions and deploys."""

    start_s: float
    operation_names: list[str]  # index service * OPERATIONS + op
    median_ms: np.ndarray  # (services, OPERATIONS)
    callees: np.ndarray  # (services, _FANOUT): service indices a service calls
    deploy_times_s: np.ndarray  # (services, 2): when versions 1 and 2 go live (inf: never)
    version_names: list[str]  # index service * 3 + version
    slow: tuple[int, int]  # (service, version) of the regression

    def version_at(self, service: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """Which of its versions (0, 1, 2) each service was running at each time."""
        deployed: np.ndarray = (t_s[:, None] >= self.deploy_times_s[service]).sum(axis=1)
        return deployed


def build_world(rng: np.random.Generator, start_s: float) -> World:
    names = []
    for i, service in enumerate(SERVICES):
        if i < len(ENTRY):
            names += _ENTRY_OPS
        else:
            rpc = service.title().replace("-", "")
            names += [f"{rpc}Service/{op}" for op in _RPC_OPS]
    median_ms = np.exp(rng.normal(np.log(12.0), 0.8, size=(len(SERVICES), OPERATIONS)))
    # Each caller calls _FANOUT services of the next tier, and every service there has callers.
    callees = np.zeros((len(SERVICES), _FANOUT), dtype=np.int64)
    fanout = np.arange(_FANOUT)
    for i in range(len(ENTRY)):
        callees[i] = len(ENTRY) + (2 * i + fanout) % len(MIDDLE)
    for m in range(len(MIDDLE)):
        callees[len(ENTRY) + m] = len(ENTRY) + len(MIDDLE) + (m + 3 * fanout) % len(BACK)
    deploy_times = np.full((len(SERVICES), 2), np.inf)
    versions = []
    for i in range(len(SERVICES)):
        deploys = 2 if i % 3 == 0 else 1
        deploy_times[i, :deploys] = np.sort(start_s + rng.uniform(0.1, 0.95, deploys) * DAY_S)
        major = 1 + i % 3
        versions += [f"{major}.{minor}.0" for minor in range(3)]
    slow_service = SERVICES.index(SLOW_SERVICE)
    deploy_times[slow_service] = [start_s + 0.3 * DAY_S, start_s + 0.75 * DAY_S]
    versions[slow_service * 3 : slow_service * 3 + 3] = ["1.8.0", "1.9.0", SLOW_VERSION]
    return World(start_s, names, median_ms, callees, deploy_times, versions, (slow_service, 2))


def write_deploys(client: Client, world: World) -> int:
    store = DeployStore(client, DATABASE)
    written = 0
    for i, service in enumerate(SERVICES):
        for v, at in enumerate(world.deploy_times_s[i], start=1):
            if not np.isfinite(at):
                continue
            version = world.version_names[i * 3 + v]
            kind = "canary" if (i, v) == world.slow else "rolling"
            digest = hashlib.sha1(f"{service}{version}".encode()).hexdigest()[:7]
            deploy = Deploy(
                deploy_id(service, version, "production", float(at)),
                service,
                version,
                "production",
                kind,
                digest,
                float(at),
                float(at) + 240.0,
                "",
                f"{service} {version}",
                False,
            )
            store.write(deploy)
            written += 1
    return written


# -- Arrow columns -----------------------------------------------------------------------------


def hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pa.StringArray:
    """`n` random ids as lowercase hex strings (what decoders store), built from one buffer."""
    data = rng.bytes(n * nbytes).hex().encode("ascii")
    offsets = np.arange(0, (n + 1) * 2 * nbytes, 2 * nbytes, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def pick(names: Sequence[str], index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(names, pa.string()), pa.array(index))


def string_map(n: int, entries: dict[str, pa.Array | str]) -> pa.MapArray:
    """Maps with the same keys in every row; a value is an array (one per row) or one string for all."""
    k = len(entries)
    if k == 0:
        empty = pa.array([], pa.string())
        return pa.MapArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), empty, empty)
    columns = [v if isinstance(v, pa.Array) else pa.repeat(pa.scalar(v, pa.string()), n) for v in entries.values()]
    interleave = (np.arange(n)[:, None] + n * np.arange(k)[None, :]).ravel()
    items = pc.take(pa.concat_arrays(columns), pa.array(interleave))
    keys = pc.take(pa.array(list(entries), pa.string()), pa.array(np.tile(np.arange(k), n)))
    return pa.MapArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), keys, items)


def empty_lists(n: int, value_type: pa.DataType) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], value_type))


def timestamps(ns: np.ndarray) -> pa.Array:
    return pa.array(ns.astype(np.int64), pa.timestamp("ns", tz="UTC"))


# -- spans -------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One position in the trace shape, for the traces that have it."""

    traces: np.ndarray  # indices into the chunk's traces
    service: np.ndarray
    op: np.ndarray
    kind: str
    start_ns: np.ndarray
    duration_ns: np.ndarray
    error: np.ndarray
    parent: int | None  # slot index of the parent
    peer: np.ndarray | None = None  # the callee, for CLIENT spans


def _lognormal_ms(rng: np.random.Generator, median: np.ndarray) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, 0.45, median.shape))


def trace_slots(rng: np.random.Generator, world: World, t0_s: np.ndarray) -> list[Slot]:
    n = len(t0_s)
    hops = rng.choice(3, size=n, p=_HOPS_P)
    s0 = rng.integers(0, len(ENTRY), n)
    s1 = world.callees[s0, rng.integers(0, _FANOUT, n)]
    s2 = world.callees[s1, rng.integers(0, _FANOUT, n)]
    ops = rng.integers(0, OPERATIONS, (3, n))
    v1 = world.version_at(s1, t0_s)
    slow = (s1 == world.slow[0]) & (v1 == world.slow[1])
    own0 = _lognormal_ms(rng, world.median_ms[s0, ops[0]] * 0.3)
    own1 = _lognormal_ms(rng, world.median_ms[s1, ops[1]]) * np.where(slow, 1.8, 1.0)
    own2 = _lognormal_ms(rng, world.median_ms[s2, ops[2]])
    internal = _lognormal_ms(rng, np.full(n, 1.5))
    net = rng.uniform(0.2, 2.0, (2, n))
    # Durations bottom-up (a server's includes its call), starts top-down.
    d5 = own2
    d4 = d5 + net[1]
    d3 = own1 + np.where(hops >= 2, d4, 0.0)
    d2 = d3 + net[0]
    d1 = internal
    d0 = own0 + d1 + np.where(hops >= 1, d2, 0.0)
    ms = 1_000_000.0
    start0 = t0_s * 1e9
    start1 = start0 + 0.05 * ms
    start2 = start1 + d1 * ms + 0.05 * ms
    start3 = start2 + net[0] / 2 * ms
    start4 = start3 + own1 / 2 * ms
    start5 = start4 + net[1] / 2 * ms
    e5 = rng.random(n) < _SERVER_ERROR_P
    # A callee's failure fails its caller often, not always (retries, fallbacks).
    e3 = rng.random(n) < _SERVER_ERROR_P * np.where(slow, 3.0, 1.0)
    e3 |= (hops >= 2) & e5 & (rng.random(n) < _PROPAGATE_P)
    e0 = (rng.random(n) < _SERVER_ERROR_P / 2) | ((hops >= 1) & e3 & (rng.random(n) < _PROPAGATE_P))
    everyone = np.arange(n)
    one, two = everyone[hops >= 1], everyone[hops >= 2]

    def slot(
        idx: np.ndarray,
        service: np.ndarray,
        op: np.ndarray,
        kind: str,
        start: np.ndarray,
        duration: np.ndarray,
        error: np.ndarray,
        parent: int | None,
        peer: np.ndarray | None = None,
    ) -> Slot:
        return Slot(
            idx,
            service[idx],
            op[idx],
            kind,
            start[idx].astype(np.int64),
            (duration[idx] * ms).astype(np.uint64),
            error[idx],
            parent,
            None if peer is None else peer[idx],
        )

    no_error = np.zeros(n, dtype=bool)
    return [
        slot(everyone, s0, ops[0], "Server", start0, d0, e0, None),
        slot(everyone, s0, ops[0], "Internal", start1, d1, no_error, 0),
        slot(one, s0, ops[1], "Client", start2, d2, e3, 0, s1),
        slot(one, s1, ops[1], "Server", start3, d3, e3, 2),
        slot(two, s1, ops[2], "Client", start4, d4, e5, 3, s2),
        slot(two, s2, ops[2], "Server", start5, d5, e5, 4),
    ]


def spans_table(rng: np.random.Generator, world: World, t0_s: np.ndarray) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """The spans of traces starting at `t0_s`, and per server span what logs need to join them."""
    slots = trace_slots(rng, world, t0_s)
    trace_ids = hex_ids(rng, len(t0_s), 16)
    sizes = [len(s.traces) for s in slots]
    span_ids = hex_ids(rng, sum(sizes), 8)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # Where each trace's span sits in each slot (-1 when the trace has no span there).
    position = np.full((len(slots), len(t0_s)), -1, dtype=np.int64)
    for k, s in enumerate(slots):
        position[k, s.traces] = first[k] + np.arange(len(s.traces))
    columns: dict[str, list[pa.Array]] = {name: [] for name in SPANS_ARROW_SCHEMA.names}
    for k, s in enumerate(slots):
        n = len(s.traces)
        if n == 0:
            continue
        version = world.version_at(s.service, s.start_ns / 1e9)
        service_names = pick(SERVICES, s.service)
        version_names = pick(world.version_names, s.service * 3 + version)
        # A client span is named after the operation it calls.
        named_for = s.service if s.peer is None else s.peer
        op_names = pick(world.operation_names, named_for * OPERATIONS + s.op)
        if s.parent is None:
            parent_ids = pa.repeat(pa.scalar("", pa.string()), n)
        else:
            parent_ids = pc.take(span_ids, pa.array(position[s.parent, s.traces]))
        status = np.where(s.error, "Error", "Unset")
        code = np.where(s.error, "500", "200")
        if s.kind == "Server":
            attributes = {
                "http.request.method": "GET" if k == 0 else "POST",
                "http.route": op_names,
                "http.response.status_code": pa.array(code),
            }
            types = {"http.response.status_code": "int"}
        elif s.kind == "Client":
            assert s.peer is not None
            attributes = {
                "peer.service": pick(SERVICES, s.peer),
                "rpc.method": op_names,
                "http.response.status_code": pa.array(code),
            }
            types = {"http.response.status_code": "int"}
        else:
            attributes = {"db.system": "postgresql", "db.operation": "SELECT"}
            types = {}
        hosts = pc.binary_join_element_wise(service_names, pa.array((s.traces % 4).astype(str)), "-")
        for name, column in {
            "Timestamp": timestamps(s.start_ns),
            "TraceId": pc.take(trace_ids, pa.array(s.traces)),
            "SpanId": span_ids[first[k] : first[k] + n],
            "ParentSpanId": parent_ids,
            "TraceState": pa.repeat(pa.scalar("", pa.string()), n),
            "SpanName": op_names,
            "SpanKind": pa.repeat(pa.scalar(s.kind, pa.string()), n),
            "ServiceName": service_names,
            "ServiceVersion": version_names,
            "ResourceAttributes": string_map(
                n,
                {
                    "service.name": service_names,
                    "service.version": version_names,
                    "host.name": hosts,
                    "deployment.environment": "production",
                },
            ),
            "ResourceAttributeTypes": string_map(n, {}),
            "ScopeName": pa.repeat(pa.scalar("opentelemetry.instrumentation.bench", pa.string()), n),
            "ScopeVersion": pa.repeat(pa.scalar("0.1", pa.string()), n),
            "SpanAttributes": string_map(n, attributes),
            "SpanAttributeTypes": string_map(n, types),
            "Duration": pa.array(s.duration_ns, pa.uint64()),
            "StatusCode": pa.array(status),
            "StatusMessage": pa.array(np.where(s.error, "upstream failed", "")),
            "Events.Timestamp": empty_lists(n, pa.timestamp("ns", tz="UTC")),
            "Events.Name": empty_lists(n, pa.string()),
            "Events.Attributes": empty_lists(n, _attr_map),
            "Events.AttributeTypes": empty_lists(n, _attr_map),
            "Links.TraceId": empty_lists(n, pa.string()),
            "Links.SpanId": empty_lists(n, pa.string()),
            "Links.TraceState": empty_lists(n, pa.string()),
            "Links.Attributes": empty_lists(n, _attr_map),
            "Links.AttributeTypes": empty_lists(n, _attr_map),
        }.items():
            columns[name].append(column)
    table = pa.table({name: pa.concat_arrays(parts) for name, parts in columns.items()}, schema=SPANS_ARROW_SCHEMA)
    servers = [k for k, s in enumerate(slots) if s.kind == "Server"]
    anchors = {
        "row": np.concatenate([first[k] + np.arange(len(slots[k].traces)) for k in servers]),
        "start_ns": np.concatenate([slots[k].start_ns for k in servers]),
        "duration_ns": np.concatenate([slots[k].duration_ns for k in servers]),
        "service": np.concatenate([slots[k].service for k in servers]),
        "error": np.concatenate([slots[k].error for k in servers]),
    }
    return table, anchors


# -- logs --------------------------------------------------------------------------------------


def mined_templates() -> list[tuple[int, str]]:
    """(TemplateId, Template) of each template, as the collector's miner assigns them to its bodies."""
    miner = LogTemplateMiner()
    samples = []
    for template in TEMPLATES:
        a = "" if template.a is None else str(template.a[0] + 7)
        b = "" if template.b is None else str(template.b[0] + 3)
        samples.append(template.parts[0] + a + template.parts[1] + b + template.parts[2])
    for body in samples:
        miner.mine(body)
    # Mined again: a template may have generalised when a later, similar one joined its cluster.
    return [(mined.template_id, mined.template) for mined in (miner.mine(body) for body in samples)]


def _numbers(rng: np.random.Generator, bounds: list[tuple[int, int] | None], template: np.ndarray) -> pa.Array:
    low = np.array([b[0] if b else 0 for b in bounds])[template]
    high = np.array([b[1] if b else 1 for b in bounds])[template]
    values = pc.cast(pa.array(rng.integers(low, high + 1)), pa.string())
    present = pa.array(np.array([b is not None for b in bounds])[template])
    return pc.if_else(present, values, "")


def logs_table(
    rng: np.random.Generator,
    world: World,
    n: int,
    spans: pa.Table,
    anchors: dict[str, np.ndarray],
    window_ns: tuple[int, int],
    mined: list[tuple[int, str]],
) -> pa.Table:
    in_span = rng.random(n) < _LOGS_IN_SPANS
    anchored = rng.integers(0, len(anchors["row"]), int(in_span.sum()))
    service = rng.integers(0, len(SERVICES), n)
    service[in_span] = anchors["service"][anchored]
    ts = rng.integers(window_ns[0], window_ns[1], n)
    ts[in_span] = anchors["start_ns"][anchored] + (rng.random(len(anchored)) * anchors["duration_ns"][anchored]).astype(
        np.int64
    )
    template = rng.choice(len(TEMPLATES), size=n, p=_TEMPLATE_P)
    # A failed span logs one of the errors.
    errors = np.array([i for i, t in enumerate(TEMPLATES) if t.severity == "ERROR"])
    failed = np.zeros(n, dtype=bool)
    failed[in_span] = anchors["error"][anchored]
    template[failed] = rng.choice(errors, int(failed.sum()))
    parts = [pick([t.parts[i] for t in TEMPLATES], template) for i in range(3)]
    body = pc.binary_join_element_wise(
        parts[0],
        _numbers(rng, [t.a for t in TEMPLATES], template),
        parts[1],
        _numbers(rng, [t.b for t in TEMPLATES], template),
        parts[2],
        "",
    )
    # The span of each log written inside one (row 0 stands in for the others, whose ids stay empty).
    span_row = np.zeros(n, dtype=np.int64)
    span_row[in_span] = anchors["row"][anchored]
    inside, rows, empty = pa.array(in_span), pa.array(span_row), pa.scalar("", pa.string())
    trace_id = pc.if_else(inside, pc.take(spans["TraceId"], rows), empty)
    span_id = pc.if_else(inside, pc.take(spans["SpanId"], rows), empty)
    version = world.version_at(service, ts / 1e9)
    service_names = pick(SERVICES, service)
    version_names = pick(world.version_names, service * 3 + version)
    severity = [t.severity for t in TEMPLATES]
    columns = {
        "Timestamp": timestamps(ts),
        "ObservedTimestamp": timestamps(ts + rng.integers(1_000_000, 50_000_000, n)),
        "TraceId": trace_id,
        "SpanId": span_id,
        "TraceFlags": pa.array(in_span.astype(np.uint8)),
        "SeverityText": pick(severity, template),
        "SeverityNumber": pa.array(np.array([_SEVERITY_NUMBER[s] for s in severity], np.uint8)[template]),
        "ServiceName": service_names,
        "ServiceVersion": version_names,
        "Body": body,
        "BodyType": pa.repeat(empty, n),
        "EventName": pa.repeat(empty, n),
        "ResourceAttributes": string_map(
            n, {"service.name": service_names, "service.version": version_names, "deployment.environment": "production"}
        ),
        "ResourceAttributeTypes": string_map(n, {}),
        "ScopeName": pick([f"app.{s}" for s in SERVICES], service),
        "ScopeVersion": pa.repeat(empty, n),
        "LogAttributes": string_map(n, {"code.function": pick(["handle", "process", "flush", "run"], template % 4)}),
        "LogAttributeTypes": string_map(n, {}),
        "TemplateId": pa.array(np.array([m[0] for m in mined], np.uint64)[template]),
        "Template": pick([m[1] for m in mined], template),
    }
    schema = pa.schema(list(LOGS_ARROW_SCHEMA) + [pa.field(name, typ) for name, typ in LOG_TEMPLATE_FIELDS])
    return pa.table(columns, schema=schema)


# -- the run -----------------------------------------------------------------------------------


def generate(
    client: Client, *, spans: int, logs: int, chunk: int, seed: int = 7, now_s: float | None = None
) -> dict[str, float]:
    """Fills the store; returns what `MARKER` records."""
    end_s = float(int(now_s if now_s is not None else time.time()))
    start_s = end_s - DAY_S
    migrate(client, DdlContext(database=DATABASE))
    already = client.query(f"SELECT count() FROM {DATABASE}.spans").result_rows[0][0]
    if already:
        raise SystemExit(f"{DATABASE}.spans already holds {already:,} spans; use a new --data-dir")
    rng = np.random.default_rng(seed)
    world = build_world(rng, start_s)
    deploys = write_deploys(client, world)
    writer = StoreWriter(client, DATABASE)
    mined = mined_templates()
    traces = max(1, round(spans / _SPANS_PER_TRACE))
    chunks = max(1, round(spans / chunk))
    edges = np.linspace(start_s, end_s, chunks + 1)
    built_s = spans_s = logs_s = 0.0
    spans_written = logs_written = 0
    print(f"{len(SERVICES)} services x {OPERATIONS} operations, {deploys} deploys, {len(TEMPLATES)} log templates")
    print(f"{traces:,} traces (~{spans:,} spans) and {logs:,} logs over 24 h in {chunks} chunks")
    for i in range(chunks):
        began = time.perf_counter()
        in_chunk = traces * (i + 1) // chunks - traces * i // chunks
        t0 = np.sort(rng.uniform(edges[i], edges[i + 1], in_chunk))
        span_rows, anchors = spans_table(rng, world, t0)
        log_count = logs * (i + 1) // chunks - logs * i // chunks
        window = (int(edges[i] * 1e9), int(edges[i + 1] * 1e9))
        log_rows = logs_table(rng, world, log_count, span_rows, anchors, window, mined)
        inserted = time.perf_counter()
        built_s += inserted - began
        writer.insert("spans", span_rows)
        spans_done = time.perf_counter()
        spans_s += spans_done - inserted
        writer.insert("logs", log_rows)
        logs_s += time.perf_counter() - spans_done
        spans_written += span_rows.num_rows
        logs_written += log_rows.num_rows
        if (i + 1) % max(1, chunks // 10) == 0 or i + 1 == chunks:
            print(f"  chunk {i + 1}/{chunks}: {spans_written:,} spans, {logs_written:,} logs", flush=True)
    total = built_s + spans_s + logs_s
    print(f"built rows:      {built_s:7.1f} s  ({(spans_written + logs_written) / built_s:,.0f} rows/s)")
    print(f"inserted spans:  {spans_s:7.1f} s  ({spans_written / spans_s:,.0f} rows/s, with the span views)")
    print(f"inserted logs:   {logs_s:7.1f} s  ({logs_written / logs_s:,.0f} rows/s, with the log patterns view)")
    print(f"overall:         {total:7.1f} s  ({(spans_written + logs_written) / total:,.0f} rows/s)")
    began = time.perf_counter()
    rollup = ServiceEdgeRollup(client, DATABASE, close_after_s=0.0, max_catch_up_s=DAY_S + 600)
    minutes = rollup.run(end_s + 60)
    rolled_s = time.perf_counter() - began
    print(f"service edges:   {rolled_s:7.1f} s  ({minutes:,} minutes, {spans_written / rolled_s:,.0f} spans/s)")
    rows = client.query(
        f"SELECT (SELECT count() FROM {DATABASE}.spans_red_1m), (SELECT count() FROM {DATABASE}.spans_trace_id_ts),"
        f" (SELECT count() FROM {DATABASE}.log_patterns_1m), (SELECT count() FROM {DATABASE}.service_edges_1m)"
    ).result_rows[0]
    names = ("spans_red_1m", "spans_trace_id_ts", "log_patterns_1m", "service_edges_1m")
    print("rollup rows: " + ", ".join(f"{name} {count:,}" for name, count in zip(names, rows, strict=True)))
    return {"generated_at": end_s, "spans": spans_written, "logs": logs_written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="chDB data directory (created if missing)")
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--logs", type=int, default=5_000_000)
    parser.add_argument("--chunk", type=int, default=500_000, help="spans per insert (logs in proportion)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    client = open_client(f"chdb://{data_dir}")
    made = generate(client, spans=args.spans, logs=args.logs, chunk=args.chunk, seed=args.seed)
    (data_dir / MARKER).write_text(json.dumps(made))


if __name__ == "__main__":
    main()
