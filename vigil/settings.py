"""Vigil's configuration: one `Settings` object read from `VIGIL_*` environment variables.

Components never read the environment themselves; they take plain arguments, and the CLI
builds them from `get_settings()`. Each field documents its variable beside it.

>>> Settings(http_port=9090).http_port
9090
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.errors import ConfigError

__all__ = ["ALLOWED_SOURCES_FORM", "Settings", "allowed_networks", "get_settings", "load_settings", "parse_duration"]

_DEFAULT_CLICKHOUSE_URL = "chdb://./vigil-data"
_DEFAULT_DATABASE = "vigil"
_DEFAULT_MAX_BATCH_ROWS = 20_000
_DEFAULT_MAX_BATCH_AGE = "10ms"
_DEFAULT_MAX_QUEUE_ROWS = 400_000
_DEFAULT_MAX_WAL_BYTES = 2 * 1024**3
_DEFAULT_INSERT_ROWS = 200_000
_DEFAULT_INSERT_INTERVAL = "1s"
_DEFAULT_DEDUP_WINDOW = "10m"
_DEFAULT_DEDUP_MAX_REQUESTS = 50_000
# The OTLP spec recommends 20 MiB after decompression for HTTP; gRPC servers default to 4 MiB.
_DEFAULT_MAX_REQUEST_BYTES = 20 * 1024 * 1024
_DEFAULT_MAX_GRPC_MESSAGE_BYTES = 4 * 1024 * 1024

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}

Port = Annotated[int, Field(ge=0, le=65535)]


def parse_duration(value: str | float | int) -> float:
    """Seconds in a duration such as ``250ms``, ``10s``, ``15m``, ``1h``, ``7d`` or a bare number of seconds.

    >>> parse_duration("15m"), parse_duration("250ms"), parse_duration(3)
    (900.0, 0.25, 3.0)
    """
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration; expected a number with a unit, e.g. 250ms, 10s, 15m, 1h, 7d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


ALLOWED_SOURCES_FORM = (
    "expected comma-separated IPv4 or IPv6 CIDRs, e.g. 10.0.0.0/8,192.0.2.7,2001:db8::/32 "
    "(a bare address is a /32 or /128; empty allows every source)"
)


def allowed_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a comma-separated source allowlist; ValueError names the bad entry and the form.

    >>> allowed_networks("10.0.0.0/8, 192.0.2.7")
    (IPv4Network('10.0.0.0/8'), IPv4Network('192.0.2.7/32'))
    """
    networks = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" (host bits set: did you mean {ipaddress.ip_network(entry, strict=False)}?)"
            raise ValueError(f"{entry!r} is not an address or CIDR{hint}; {ALLOWED_SOURCES_FORM}") from None
    return tuple(networks)


class Settings(BaseSettings):
    """Every setting of Vigil, from the environment (prefix ``VIGIL_``) or keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="forbid", validate_default=True)

    # VIGIL_CLICKHOUSE_URL: `chdb://PATH` opens an embedded ClickHouse in PATH;
    # `http(s)://user:pass@host:8123/db` talks to a server (the path, if any, names the database).
    clickhouse_url: str = _DEFAULT_CLICKHOUSE_URL
    # VIGIL_CLICKHOUSE_DATABASE: database for Vigil's tables when the URL names none.
    clickhouse_database: str = _DEFAULT_DATABASE
    # VIGIL_CLICKHOUSE_CLUSTER: cluster name; when set, DDL uses Replicated/Distributed engines ON CLUSTER.
    clickhouse_cluster: str = ""

    # VIGIL_BIND: the address every listener binds.
    bind: str = "127.0.0.1"
    # VIGIL_HTTP_PORT: web UI and JSON API.
    http_port: Port = 8080
    # VIGIL_OTLP_GRPC_PORT / VIGIL_OTLP_HTTP_PORT: OTLP receivers (0 picks a free port).
    otlp_grpc_port: Port = 4317
    otlp_http_port: Port = 4318

    # VIGIL_STATSD_PORT: StatsD / DogStatsD on UDP and TCP (newline-delimited; 0 picks a port free on
    # both); VIGIL_STATSD_ENABLED=false turns it off (when another StatsD daemon owns the port).
    statsd_port: Port = 8125
    statsd_enabled: bool = True
    # VIGIL_STATSD_FLUSH_INTERVAL: StatsD lines are aggregated over this interval, then stored.
    statsd_flush_interval: float = Field(default=10.0, gt=0)
    # VIGIL_STATSD_PERCENTILES: percentiles of timers, histograms and distributions (comma-separated).
    statsd_percentiles: str = "50,90,95,99"
    # VIGIL_STATSD_SERVICE_SEGMENTS: without a `service` tag, the first N dot-separated segments of
    # the metric name are its service (0: VIGIL_STATSD_DEFAULT_SERVICE).
    statsd_service_segments: int = Field(default=0, ge=0, le=8)
    statsd_default_service: str = Field(default="statsd", min_length=1)
    # VIGIL_STATSD_ALLOWED_SOURCES: comma-separated CIDRs (IPv4/IPv6; a bare address is a /32 or
    # /128) that StatsD datagrams and TCP connections may come from; others are dropped and counted.
    # Empty: every source.
    statsd_allowed_sources: str = ""

    # VIGIL_NETFLOW_PORT / VIGIL_IPFIX_PORT: UDP ports for flow records (0 picks a free one); both take
    # NetFlow v5, v9 and IPFIX (the ports are conventions of exporters). VIGIL_NETFLOW_ENABLED=false
    # turns both off.
    netflow_port: Port = 2055
    ipfix_port: Port = 4739
    netflow_enabled: bool = True
    # VIGIL_NETFLOW_TEMPLATE_TIMEOUT: a v9/IPFIX template not re-sent for this long is forgotten.
    netflow_template_timeout: float = Field(default=1800.0, gt=0)
    # VIGIL_NETFLOW_ALLOWED_SOURCES: comma-separated CIDRs exporters may send from (both flow ports);
    # other datagrams are dropped before decoding and counted per source. Empty: every source.
    netflow_allowed_sources: str = ""

    @field_validator("statsd_allowed_sources", "netflow_allowed_sources")
    @classmethod
    def _allowed_sources(cls, value: str) -> str:
        allowed_networks(value)
        return value

    # VIGIL_PREFIX_FILE: CSV (cidr,customer,site) or YAML naming the customer and site of address
    # ranges; flows are tagged at both ends by longest-prefix match. Re-read when it changes.
    prefix_file: str = ""

    # VIGIL_DETECTORS_ENABLED: run the streaming detectors inside `vigil serve`; turn off when a
    # separate `vigil detect` process runs them (a ClickHouse server or cluster).
    detectors_enabled: bool = True
    # VIGIL_DETECTOR_GRACE: how long after a minute ends its bucket is considered complete; data
    # arriving later than this is stored but not seen by the detectors.
    detector_grace: float = Field(default=30.0, ge=0)
    # VIGIL_DETECTOR_INTERVAL: how often the detectors look for newly closed buckets.
    detector_interval: float = Field(default=10.0, gt=0)
    # VIGIL_LEASE_TTL: how long a `vigil detect` replica leads after its last renewal (renewed at a
    # third of this); a standby takes over at most this long after the leader dies.
    lease_ttl: float = Field(default=30.0, gt=0)
    # VIGIL_REPLICATION_LAG_METRICS: gauges (comma-separated names) that report replication lag in
    # seconds, one series per service and attribute set (e.g. a `replica` tag).
    replication_lag_metrics: str = "db.replication.lag_seconds"
    # VIGIL_REPLICATION_LAG_THRESHOLD: lag that is a problem by itself, in seconds.
    replication_lag_threshold: float = Field(default=30.0, gt=0)
    # VIGIL_SLO_FILE: YAML defining SLOs (``slos:`` mapping names to service, objective, window,
    # kind ...; see vigil.store.slos); read at start, an invalid file stops start-up.
    slo_file: str = ""
    # VIGIL_CANARY_MIN_REQUESTS: fewer requests than this in either version makes a canary check
    # INCONCLUSIVE (with the counts), never a guess.
    canary_min_requests: int = Field(default=50, ge=1)

    # VIGIL_TRACES_RETENTION_DAYS / VIGIL_LOGS_RETENTION_DAYS / VIGIL_METRICS_RETENTION_DAYS /
    # VIGIL_FLOWS_RETENTION_DAYS: rows older than this are dropped by ClickHouse TTL.
    traces_retention_days: int = Field(default=7, ge=1, le=3650)
    logs_retention_days: int = Field(default=7, ge=1, le=3650)
    metrics_retention_days: int = Field(default=30, ge=1, le=3650)
    flows_retention_days: int = Field(default=7, ge=1, le=3650)

    # VIGIL_MAX_BATCH_ROWS: requests are appended to the write-ahead log (and acknowledged) in
    # groups, once this many rows wait ...
    max_batch_rows: int = Field(default=_DEFAULT_MAX_BATCH_ROWS, ge=1)
    # VIGIL_MAX_BATCH_AGE: ... or once the oldest waiting row is this old (e.g. 10ms).
    max_batch_age: float = Field(default=parse_duration(_DEFAULT_MAX_BATCH_AGE), gt=0)
    # VIGIL_MAX_QUEUE_ROWS: rows in memory waiting for the log; past it receivers answer 429 + Retry-After.
    max_queue_rows: int = Field(default=_DEFAULT_MAX_QUEUE_ROWS, ge=1)
    # VIGIL_WAL_DIR: the write-ahead log; empty means beside the embedded data (PATH-wal), or ./vigil-wal.
    wal_dir: str = ""
    # VIGIL_WAL_FSYNC: fsync each log append before acknowledging (off survives a crash of
    # Vigil, but not of the machine).
    wal_fsync: bool = True
    # VIGIL_MAX_WAL_BYTES: the log's bound; while ClickHouse is down it holds up to this much,
    # then receivers answer 503 + Retry-After.
    max_wal_bytes: int = Field(default=_DEFAULT_MAX_WAL_BYTES, ge=1024)
    # VIGIL_INSERT_ROWS / VIGIL_INSERT_INTERVAL: rows go from the log into ClickHouse in inserts
    # of up to this many rows, at least this often (so they are queryable within it).
    insert_rows: int = Field(default=_DEFAULT_INSERT_ROWS, ge=1)
    insert_interval: float = Field(default=parse_duration(_DEFAULT_INSERT_INTERVAL), gt=0)
    # VIGIL_MAX_REQUEST_BYTES: largest OTLP/HTTP body after decompression (413 over it).
    max_request_bytes: int = Field(default=_DEFAULT_MAX_REQUEST_BYTES, ge=1024)
    # VIGIL_MAX_GRPC_MESSAGE_BYTES: largest OTLP/gRPC message (RESOURCE_EXHAUSTED over it).
    max_grpc_message_bytes: int = Field(default=_DEFAULT_MAX_GRPC_MESSAGE_BYTES, ge=1024)
    # VIGIL_COLLECTOR_PROCESSES: collector processes (OTLP receivers and decoding) sharing the
    # OTLP ports beside the process that owns the store; -1 means one per core, 0 runs the
    # collector inside that process (least memory).
    collector_processes: int = Field(default=-1, ge=-1, le=64)
    # VIGIL_COLLECTOR_NICE: collector processes run this much nicer than the process that owns the
    # store (0-19; 0: the same priority), so that when ingest keeps every core busy, page loads and
    # the inserts that drain the write-ahead logs come first. Received data waits in the
    # collectors' queues meanwhile; nothing is lost. No effect with VIGIL_COLLECTOR_PROCESSES=0.
    collector_nice: int = Field(default=10, ge=0, le=19)
    # VIGIL_DEDUP_WINDOW: an OTLP request whose exact body (same signal, decompressed) was already
    # written within this window is an exporter's retry: answered with success, not stored again
    # (0 turns this off). VIGIL_DEDUP_MAX_REQUESTS: at most this many remembered per collector
    # (about 250 bytes each), the oldest forgotten first.
    dedup_window: float = Field(default=parse_duration(_DEFAULT_DEDUP_WINDOW), ge=0)
    dedup_max_requests: int = Field(default=_DEFAULT_DEDUP_MAX_REQUESTS, ge=1)

    # VIGIL_AUTH: "auto" requires a token on every route and receiver once any token is
    # configured, and refuses a non-loopback VIGIL_BIND without one; "on" requires tokens (start
    # fails without any); "off" requires none (a trusted network only).
    auth: Literal["auto", "on", "off"] = "auto"
    # VIGIL_TOKENS: API tokens as name:scope+scope:secret, comma-separated; scopes are ingest,
    # read, ci and admin (see vigil.auth). `vigil token new` makes one.
    tokens: str = Field(default="", repr=False)
    # VIGIL_TOKENS_FILE: YAML ``tokens:`` list of {name, scopes, sha256 or token}; re-read when it
    # changes, so tokens rotate without a restart.
    tokens_file: str = ""
    # VIGIL_SESSION_SECRET: signs dashboard login cookies; empty means a random key per process
    # (logins then end on restart, and api replicas behind one address need a shared secret).
    session_secret: str = Field(default="", repr=False)
    # VIGIL_SESSION_TTL: how long a dashboard login lasts.
    session_ttl: float = Field(default=12 * 3600.0, gt=0)
    # VIGIL_MAX_API_BODY_BYTES: largest body the API and pages accept (413 over it).
    max_api_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # VIGIL_PUBLIC_URL: base of links Vigil puts in alerts and messages.
    public_url: str = "http://127.0.0.1:8080"

    # VIGIL_SLACK_TOKEN: a bot token (xoxb-...) with chat:write; alerts are posted, updated on
    # resolve and answered in their thread. VIGIL_SLACK_WEBHOOK_URL: an incoming webhook instead
    # (every notification a new message). Neither: alerts are tracked but not sent.
    slack_token: str = Field(default="", repr=False)
    slack_webhook_url: str = Field(default="", repr=False)
    # VIGIL_SLACK_BASE_URL: Slack's Web API (tests point it at a local server).
    slack_base_url: str = "https://slack.com/api/"
    # VIGIL_SLACK_CHANNEL: where rules without channels send.
    slack_channel: str = "#alerts"
    # VIGIL_ALERT_RULES_FILE: YAML alert rules (``rules:``; see vigil.alerts.rules), read at start;
    # an invalid file stops start-up with its line. Without rules, every warning or worse finding
    # goes to VIGIL_SLACK_CHANNEL.
    alert_rules_file: str = ""
    # VIGIL_ALERT_GROUP_WINDOW: alerts of one service firing within this window share a message.
    alert_group_window: float = Field(default=300.0, gt=0)
    # VIGIL_ALERT_INTERVAL: how often alerts are evaluated and the Slack outbox delivered.
    alert_interval: float = Field(default=10.0, gt=0)
    # VIGIL_LOG_LEVEL: Vigil's own log level.
    log_level: str = "INFO"

    # VIGIL_SELF_TRACES_ENDPOINT: Vigil's own spans (API and page requests, ClickHouse inserts,
    # detector rounds) go to this OTLP/HTTP base URL (e.g. http://otel-collector:4318); "self" sends
    # them to this Vigil's own receiver, as service "vigil". Empty: no spans.
    self_traces_endpoint: str = ""
    # VIGIL_SELF_METRICS_INTERVAL: how often the collector role writes its own ingest lag and refused,
    # dropped and rejected items as metrics of service "vigil", which detectors turn into findings; 0: never.
    self_metrics_interval: float = Field(default=10.0, ge=0)
    # VIGIL_SELF_INGEST_LAG_THRESHOLD: acknowledged data waiting longer than this for ClickHouse is a
    # finding on service "vigil" (warning; critical past five times this).
    self_ingest_lag_threshold: float = Field(default=60.0, gt=0)

    @field_validator(
        "max_batch_age",
        "insert_interval",
        "dedup_window",
        "statsd_flush_interval",
        "netflow_template_timeout",
        "detector_grace",
        "detector_interval",
        "lease_ttl",
        "replication_lag_threshold",
        "alert_group_window",
        "alert_interval",
        "session_ttl",
        "self_metrics_interval",
        "self_ingest_lag_threshold",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("self_traces_endpoint")
    @classmethod
    def _self_traces_endpoint(cls, value: str) -> str:
        if value and value != "self" and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(
                f"{value!r} is not an OTLP/HTTP endpoint; expected an http(s) base URL such as "
                'http://otel-collector:4318, "self" (this Vigil\'s own receiver), or empty (off)'
            )
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("chdb", "http", "https"):
            raise ValueError(
                f"{redacted_url(value)!r} is not a ClickHouse URL; expected chdb://PATH (embedded) or "
                "http(s)://user:pass@host:8123/db (a server)"
            )
        return value

    @field_validator("statsd_percentiles")
    @classmethod
    def _percentiles(cls, value: str) -> str:
        try:
            numbers = [float(part) for part in value.split(",") if part.strip()]
        except ValueError:
            numbers = []
        if not numbers or not all(0 < n < 100 for n in numbers):
            raise ValueError(
                f"{value!r} is not a list of percentiles; expected numbers between 0 and 100, e.g. 50,90,99"
            )
        return value

    @property
    def replication_lag_metric_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.replication_lag_metrics.split(",") if name.strip())

    @property
    def statsd_percentile_values(self) -> tuple[float, ...]:
        return tuple(sorted({float(part) for part in self.statsd_percentiles.split(",") if part.strip()}))

    @field_validator("clickhouse_database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} is not a database name; expected letters, digits and _")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"{value!r} is not a log level; expected DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _wal_path_has_no_glob(self) -> Settings:
        # Embedded ClickHouse reads log segments by a glob pattern built on this path.
        if any(ch in self.wal_path for ch in "{}*?[]"):
            field = "VIGIL_WAL_DIR" if self.wal_dir else "VIGIL_CLICKHOUSE_URL"
            raise ValueError(
                f"the write-ahead log path {self.wal_path!r} (from {field}) contains one of {{}}*?[]; "
                "choose a directory without them"
            )
        return self

    def validate_batching(self) -> None:
        """Reject batcher settings that cannot work together (the names in the message are the variables)."""
        if self.max_queue_rows < self.max_batch_rows:
            raise ConfigError(
                f"VIGIL_MAX_QUEUE_ROWS ({self.max_queue_rows}) is smaller than VIGIL_MAX_BATCH_ROWS "
                f"({self.max_batch_rows}); the queue must hold at least one batch"
            )

    @property
    def embedded(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    @property
    def wal_path(self) -> str:
        """VIGIL_WAL_DIR, or its default beside the embedded data directory."""
        if self.wal_dir:
            return self.wal_dir
        if self.embedded:
            return self.clickhouse_url.removeprefix("chdb://").rstrip("/") + "-wal"
        return "./vigil-wal"


def redacted_url(url: str) -> str:
    """`url` with its password replaced, for logs and messages.

    >>> redacted_url("http://vigil:s3cret@ch.internal:8123/obs")
    'http://vigil:***@ch.internal:8123/obs'
    >>> redacted_url("chdb:///var/lib/vigil")
    'chdb:///var/lib/vigil'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def _shown(field: str, value: Any) -> str:
    """A refused setting's value as an error message may show it: never a secret."""
    info = Settings.model_fields.get(field)
    if info is not None and info.repr is False:
        return "(hidden)"
    if field == "clickhouse_url" and isinstance(value, str):
        return repr(redacted_url(value))
    return repr(value)


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings`, turning validation failures into one `ConfigError` that names each variable."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"VIGIL_{field.upper()}={_shown(field, error.get('input'))}: {message}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
    settings.validate_batching()
    return settings


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return load_settings()
