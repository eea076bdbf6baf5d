"""StatsD aggregation: streams through `StatsdAggregator`, checked against values computed here."""

from __future__ import annotations

import logging
import math
import random
import statistics
import threading
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.statsd_streams import render_metric
from vigil.collector import statsd_aggregate
from vigil.collector.statsd_aggregate import LineCounts, StatsdAggregator, StatsdConfig
from vigil.errors import ConfigError
from vigil.store.schema import LOGS_ARROW_SCHEMA, METRIC_ARROW_SCHEMAS
from vigil.types import RowBatch

T0 = 1_700_000_000.0
NS = 1_000_000_000
SCHEMAS = {**METRIC_ARROW_SCHEMAS, "logs": LOGS_ARROW_SCHEMA}


def flush(agg: StatsdAggregator, now: float) -> dict[str, list[dict[str, Any]]]:
    """One flush as rows per table, timestamps as int nanoseconds; every batch must have its table's schema."""
    batches = agg.flush(now)
    assert len({b.table for b in batches}) == len(batches)
    out: dict[str, list[dict[str, Any]]] = {}
    for batch in batches:
        assert isinstance(batch, RowBatch)
        assert batch.rows.schema.equals(SCHEMAS[batch.table]), batch.table
        assert batch.num_rows > 0
        table = batch.rows
        for i, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type):
                table = table.set_column(i, field.name, table.column(i).cast(pa.int64()))
        out[batch.table] = table.to_pylist()
    return out


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    named = {row["MetricName"]: row for row in rows}
    assert len(named) == len(rows)
    return named


def nearest_rank(values: list[float], pct: float) -> float | None:
    """Etsy's upper_<pct>, written out independently: rank = floor(pct/100 * n + 0.5)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = math.floor(pct / 100 * len(ordered) + 0.5)
    return ordered[rank - 1] if rank else None


def identity(name: str, service: str = "statsd", attributes: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return {
        "ServiceName": service,
        "ServiceVersion": "",
        "ResourceAttributes": [("service.name", service)],
        "ResourceAttributeTypes": [],
        "ScopeName": "vigil.statsd",
        "ScopeVersion": "",
        "MetricName": name,
        "MetricDescription": "",
        "MetricUnit": "",
        "Attributes": attributes or [],
        "AttributeTypes": [],
        "StartTimeUnix": int(T0 * NS),
        "TimeUnix": int((T0 + 10) * NS),
        "Flags": 0,
    }


EXEMPLARS = {
    "Exemplars.FilteredAttributes": [],
    "Exemplars.FilteredAttributeTypes": [],
    "Exemplars.TimeUnix": [],
    "Exemplars.Value": [],
    "Exemplars.SpanId": [],
    "Exemplars.TraceId": [],
}


def test_the_example_from_the_python_statsd_client() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    counts = agg.ingest(
        b"py.hits:1|c\npy.hits:4|c|@0.5\npy.temp:20|g\npy.temp:-3|g\npy.lat:12.500000|ms\npy.users:alice|s"
    )
    assert counts == LineCounts(good=6, bad=0)
    rows = flush(agg, T0 + 10)
    assert rows["metrics_sum"] == [
        {**identity("py.hits"), "Value": 9.0, "AggregationTemporality": 1, "IsMonotonic": True, **EXEMPLARS}
    ]
    assert rows["metrics_gauge"] == [
        {**identity("py.temp"), "Value": 17.0, **EXEMPLARS},
        {**identity("py.users"), "Value": 1.0, **EXEMPLARS},
    ]
    assert rows["metrics_summary"] == [
        {
            **identity("py.lat"),
            "MetricUnit": "ms",
            "Count": 1,
            "Sum": 12.5,
            "ValueAtQuantiles.Quantile": [0.0, 0.5, 0.9, 0.95, 0.99, 1.0],
            "ValueAtQuantiles.Value": [12.5] * 6,
            "AggregationTemporality": 1,
        }
    ]


def test_counters_add_value_over_rate_and_reset_every_interval() -> None:
    rng = random.Random(3)
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    sent = [(rng.randrange(1, 50), rng.choice([1.0, 0.5, 0.25, 0.125])) for _ in range(500)]
    for value, rate in sent:
        agg.ingest(render_metric("req", [str(value)], "c", rate=None if rate == 1.0 else rate))
    [row] = flush(agg, T0 + 10)["metrics_sum"]
    assert row["Value"] == sum(value / rate for value, rate in sent)
    assert (row["StartTimeUnix"], row["TimeUnix"]) == (int(T0 * NS), int((T0 + 10) * NS))
    agg.ingest(b"req:2|c")
    [row] = flush(agg, T0 + 25)["metrics_sum"]
    assert (row["Value"], row["StartTimeUnix"], row["TimeUnix"]) == (2.0, int((T0 + 10) * NS), int((T0 + 25) * NS))
    assert flush(agg, T0 + 30) == {}


def test_a_negative_increment_makes_the_interval_non_monotonic() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.ingest(b"up:5|c\ndown:5|c\ndown:-7|c\npacked:1:-1:3|c")
    rows = by_name(flush(agg, T0 + 10)["metrics_sum"])
    assert {name: (row["Value"], row["IsMonotonic"]) for name, row in rows.items()} == {
        "up": (5.0, True),
        "down": (-2.0, False),
        "packed": (3.0, False),
    }
    agg.ingest(b"down:1|c")
    assert flush(agg, T0 + 20)["metrics_sum"][0]["IsMonotonic"] is True


def test_gauges_keep_their_value_across_flushes_but_are_written_only_when_updated() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.ingest(b"temp:20|g\ntemp:-3|g\nfresh:+5|g\nneg:0|g\nneg:-3|g\npacked:1:+2:-0.5|g")
    first = by_name(flush(agg, T0 + 10)["metrics_gauge"])
    assert {name: row["Value"] for name, row in first.items()} == {
        "temp": 17.0,
        "fresh": 5.0,
        "neg": -3.0,
        "packed": 2.5,
    }
    agg.ingest(b"temp:+1|g")
    assert [(r["MetricName"], r["Value"]) for r in flush(agg, T0 + 20)["metrics_gauge"]] == [("temp", 18.0)]
    assert flush(agg, T0 + 30) == {}
    agg.ingest(b"fresh:-1|g\ntemp:4|g")
    assert {r["MetricName"]: r["Value"] for r in flush(agg, T0 + 40)["metrics_gauge"]} == {"fresh": 4.0, "temp": 4.0}


def test_a_gauge_idle_for_an_hour_is_forgotten() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.ingest(b"g:10|g\nkept:1|g")
    flush(agg, T0 + 10)
    agg.ingest(b"kept:+1|g")
    flush(agg, T0 + 3000)
    flush(agg, T0 + 3700)  # g was last written at T0 + 10
    agg.ingest(b"g:+1|g\nkept:+1|g")
    assert {r["MetricName"]: r["Value"] for r in flush(agg, T0 + 3710)["metrics_gauge"]} == {"g": 1.0, "kept": 3.0}


@pytest.mark.parametrize(("metric_type", "unit"), [("ms", "ms"), ("h", ""), ("d", "")])
def test_timers_histograms_and_distributions_become_summaries(metric_type: str, unit: str) -> None:
    rng = random.Random(metric_type)
    config = StatsdConfig(percentiles=(50, 75, 90, 99.9))
    agg = StatsdAggregator(config, start=T0)
    values = [rng.randrange(0, 100_000) / 8 for _ in range(997)]
    lines = [render_metric("lat", [repr(v)], metric_type, tags=[("env", "prod")]) for v in values]
    for start in range(0, len(lines), 40):
        agg.ingest(b"\n".join(lines[start : start + 40]))
    [row] = flush(agg, T0 + 10)["metrics_summary"]
    assert (row["MetricUnit"], row["Attributes"], row["Count"]) == (unit, [("env", "prod")], len(values))
    assert row["Sum"] == math.fsum(values)
    assert row["Sum"] / row["Count"] == pytest.approx(statistics.fmean(values), rel=1e-12)
    expected = [min(values), *(nearest_rank(values, p) for p in (50, 75, 90, 99.9)), max(values)]
    assert row["ValueAtQuantiles.Quantile"] == [0.0, 0.5, 0.75, 0.9, 0.999, 1.0]
    assert row["ValueAtQuantiles.Value"] == expected
    assert row["ValueAtQuantiles.Value"][1] == statistics.median_low(values) == statistics.median(values)


def test_sample_rates_scale_a_summarys_count_and_sum_but_not_its_quantiles() -> None:
    agg = StatsdAggregator(StatsdConfig(percentiles=(50,)), start=T0)
    agg.ingest(b"lat:10|ms|@0.5\nlat:20|ms|@0.5\nlat:30|ms\nlat:40|ms|@0.1\nhist:1:2|h|@0.25")
    rows = by_name(flush(agg, T0 + 10)["metrics_summary"])
    lat, hist = rows["lat"], rows["hist"]
    # 10 and 20 count twice each, 30 once, 40 ten times: 15 values summing to 10*2 + 20*2 + 30 + 40*10.
    assert (lat["Count"], lat["Sum"]) == (15, 490.0)
    assert lat["ValueAtQuantiles.Value"] == [10.0, 20.0, 40.0]
    assert (hist["Count"], hist["Sum"], hist["ValueAtQuantiles.Value"]) == (8, 12.0, [1.0, 1.0, 2.0])
    agg.ingest(b"t:1|ms|@0.3\nt:1|ms|@0.3")
    [row] = flush(agg, T0 + 20)["metrics_summary"]
    assert (row["Count"], row["Sum"]) == (round(2 / 0.3), 2 / 0.3)


def test_percentiles_follow_etsy_rounding_and_omit_rank_zero() -> None:
    agg = StatsdAggregator(StatsdConfig(percentiles=(10, 50, 90)), start=T0)
    agg.ingest(b"one:7|d\ntwo:1|d\ntwo:2|d\nfive:5:1:4:2:3|d\nfour:4:3:2:1|d")
    rows = by_name(flush(agg, T0 + 10)["metrics_summary"])
    got = {
        name: list(zip(r["ValueAtQuantiles.Quantile"], r["ValueAtQuantiles.Value"], strict=True))
        for name, r in rows.items()
    }
    assert got == {
        "one": [(0.0, 7.0), (0.1, 7.0), (0.5, 7.0), (0.9, 7.0), (1.0, 7.0)],
        # 10% of 2 rounds to rank 0: no 0.1 quantile; 50% of 2 is rank 1.
        "two": [(0.0, 1.0), (0.5, 1.0), (0.9, 2.0), (1.0, 2.0)],
        # 10% of 5 = 0.5 rounds up to rank 1; 50% = 2.5 -> 3; 90% = 4.5 -> 5.
        "five": [(0.0, 1.0), (0.1, 1.0), (0.5, 3.0), (0.9, 5.0), (1.0, 5.0)],
        # 50% of 4 = rank 2 (Etsy's median would be 2.5); 90% = 3.6 -> 4.
        "four": [(0.0, 1.0), (0.5, 2.0), (0.9, 4.0), (1.0, 4.0)],
    }


def test_sets_count_distinct_members_per_interval() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    members = [f"user{i % 37}" for i in range(500)]
    agg.ingest(b"\n".join(f"users:{m}|s".encode() for m in members) + b"\nusers:a:b|s\nusers:|s\nusers:\xff|s")
    [row] = flush(agg, T0 + 10)["metrics_gauge"]
    assert (row["MetricName"], row["Value"]) == ("users", len(set(members)) + 3)
    agg.ingest(b"users:user1|s")
    assert flush(agg, T0 + 20)["metrics_gauge"][0]["Value"] == 1.0


def test_service_and_version_tags_become_resource_attributes() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.ingest(b"req:1|c|#env:prod,service:checkout,version:1.4.2,route:/pay")
    [row] = flush(agg, T0 + 10)["metrics_sum"]
    assert {k: row[k] for k in ("ServiceName", "ServiceVersion", "ResourceAttributes", "Attributes")} == {
        "ServiceName": "checkout",
        "ServiceVersion": "1.4.2",
        "ResourceAttributes": [("service.name", "checkout"), ("service.version", "1.4.2")],
        "Attributes": [("env", "prod"), ("route", "/pay")],
    }


def test_service_name_from_name_segments_or_the_default() -> None:
    agg = StatsdAggregator(StatsdConfig(service_segments=2, default_service="fallback"), start=T0)
    agg.ingest(b"shop.checkout.req:1|c\nshort:1|c\nshop.cart.req:1|c|#service:cart-svc\nx.y.z:1|c|#service:")
    got = {r["MetricName"]: r["ServiceName"] for r in flush(agg, T0 + 10)["metrics_sum"]}
    assert got == {"shop.checkout.req": "shop.checkout", "short": "short", "shop.cart.req": "cart-svc", "x.y.z": "x.y"}
    plain = StatsdAggregator(StatsdConfig(default_service="fallback"), start=T0)
    plain.ingest(b"shop.checkout.req:1|c")
    assert flush(plain, T0 + 10)["metrics_sum"][0]["ServiceName"] == "fallback"


def test_a_series_is_its_set_of_tags_in_any_order_and_telegraf_tags_count_too() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.ingest(b"r:1|c|#a:1,b:2\nr:2|c|#b:2,a:1\nr,b=2:4|c|#a:1\nr:8|c|#a:1,b:3,b:2\nr:16|c|#a:1\nr:32|c|@0.5|#a:1,b:2")
    rows = flush(agg, T0 + 10)["metrics_sum"]
    got = sorted((row["Attributes"], row["Value"]) for row in rows)
    assert got == [([("a", "1")], 16.0), ([("a", "1"), ("b", "2")], 1 + 2 + 4 + 8 + 64)]


def test_types_of_one_name_are_separate_series_in_their_tables() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.ingest(b"x:1|c\nx:2|g\nx:3|ms\nx:4|h\nx:a|s")
    rows = flush(agg, T0 + 10)
    assert [r["Value"] for r in rows["metrics_sum"]] == [1.0]
    assert [r["Value"] for r in rows["metrics_gauge"]] == [2.0, 1.0]
    assert [(r["MetricUnit"], r["Sum"]) for r in rows["metrics_summary"]] == [("ms", 3.0), ("", 4.0)]


def _log(**columns: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Timestamp": int((T0 + 3.5) * NS),
        "ObservedTimestamp": int((T0 + 3.5) * NS),
        "TraceId": "",
        "SpanId": "",
        "TraceFlags": 0,
        "SeverityText": "INFO",
        "SeverityNumber": 9,
        "ServiceName": "statsd",
        "ServiceVersion": "",
        "Body": "",
        "BodyType": "",
        "EventName": "",
        "ResourceAttributes": [("service.name", "statsd")],
        "ResourceAttributeTypes": [],
        "ScopeName": "vigil.statsd",
        "ScopeVersion": "",
        "LogAttributes": [],
        "LogAttributeTypes": [],
    }
    return {**base, **columns}


def test_events_and_service_checks_become_log_rows_at_the_next_flush() -> None:
    agg = StatsdAggregator(StatsdConfig(service_segments=1), start=T0)
    agg.ingest(
        b"_e{6,10}:Deploy|v1 shipped|t:error|h:web-1|k:dep|p:low|s:ci|#env:dev,service:shop,version:2\n"
        b"_e{4,5}:Note|a\\nb.|d:1700000001\n"
        b"_e{4,2}:Warn|no|t:warning\n_e{2,2}:Ok|ok|t:success\n"
        b"_sc|app.ok|0|#env:dev|m:fine\n_sc|app.db|1\n_sc|app.disk|2|d:1700000002|h:db-1\n_sc|app.x|3|#service:x",
        now=T0 + 3.5,
    )
    assert flush(agg, T0 + 10)["logs"] == [
        _log(
            SeverityText="ERROR",
            SeverityNumber=17,
            ServiceName="shop",
            ServiceVersion="2",
            Body="v1 shipped",
            EventName="Deploy",
            ResourceAttributes=[("service.name", "shop"), ("service.version", "2")],
            LogAttributes=[
                ("env", "dev"),
                ("event.aggregation_key", "dep"),
                ("event.alert_type", "error"),
                ("event.priority", "low"),
                ("event.source_type", "ci"),
                ("host.name", "web-1"),
            ],
        ),
        _log(Timestamp=1700000001 * NS, Body="a\nb.", EventName="Note", LogAttributes=[("event.alert_type", "info")]),
        _log(
            SeverityText="WARN",
            SeverityNumber=13,
            Body="no",
            EventName="Warn",
            LogAttributes=[("event.alert_type", "warning")],
        ),
        _log(Body="ok", EventName="Ok", LogAttributes=[("event.alert_type", "success")]),
        # Service checks have dotted names like metrics: service_segments applies to them.
        _log(
            ServiceName="app",
            ResourceAttributes=[("service.name", "app")],
            Body="fine",
            EventName="app.ok",
            LogAttributes=[("check.status", "0"), ("env", "dev")],
        ),
        _log(
            SeverityText="WARN",
            SeverityNumber=13,
            ServiceName="app",
            ResourceAttributes=[("service.name", "app")],
            EventName="app.db",
            LogAttributes=[("check.status", "1")],
        ),
        _log(
            Timestamp=1700000002 * NS,
            SeverityText="ERROR",
            SeverityNumber=17,
            ServiceName="app",
            ResourceAttributes=[("service.name", "app")],
            EventName="app.disk",
            LogAttributes=[("check.status", "2"), ("host.name", "db-1")],
        ),
        _log(
            SeverityText="WARN",
            SeverityNumber=13,
            ServiceName="x",
            ResourceAttributes=[("service.name", "x")],
            EventName="app.x",
            LogAttributes=[("check.status", "3")],
        ),
    ]
    assert flush(agg, T0 + 20) == {}


def test_events_beyond_the_per_interval_cap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statsd_aggregate, "MAX_PENDING_LOGS", 2)
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    assert agg.ingest(b"_sc|a|0\n_sc|b|0\n_sc|c|0\nm:1|c") == LineCounts(good=3, bad=1)
    assert agg.stats().last_bad_line == '"_sc|c|0": more than 2 events and service checks in one flush interval'
    assert len(flush(agg, T0 + 10)["logs"]) == 2
    assert agg.ingest(b"_sc|c|0") == LineCounts(good=1, bad=0)


def test_good_lines_of_a_packet_survive_its_bad_lines_and_stats_count_both() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    assert agg.ingest(b"ok:1|c\npy.hits:abc|c\n\nok:2|c\r\nlat:1|x\nok:4|c") == LineCounts(good=3, bad=2)
    assert agg.ingest(b"") == LineCounts(good=0, bad=0)
    stats = agg.stats()
    assert (stats.packets, stats.lines, stats.bad_lines) == (2, 5, 2)
    assert stats.last_bad_line == "\"lat:1|x\": unknown type 'x' (expected c, g, ms, h, s, d)"
    assert flush(agg, T0 + 10)["metrics_sum"][0]["Value"] == 7.0


def test_a_known_series_with_a_bad_value_is_still_refused() -> None:
    # The fast path knows "ok|c" after the first line; a bad value must still fall back to the parser.
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    counts = agg.ingest(b"ok:1|c\nok:x|c\nok:nan|c\nok:1:2|c\nlat:1|ms\nlat:-1|ms\ng:1|g\ng:inf|g")
    assert counts == LineCounts(good=4, bad=4)
    rows = flush(agg, T0 + 10)
    assert rows["metrics_sum"][0]["Value"] == 4.0
    assert rows["metrics_summary"][0]["Count"] == 1
    assert rows["metrics_gauge"][0]["Value"] == 1.0


def test_bad_lines_are_logged_at_most_every_ten_seconds_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    agg = StatsdAggregator(StatsdConfig(), start=T0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="vigil.collector.statsd_aggregate")
    agg.ingest(b"a:x|c")
    agg.ingest(b"b:1|q\nc:1|c")
    now[0] += 9.9
    agg.ingest(b"d|c")
    now[0] += 0.2
    agg.ingest(b"e:1|c\n" + b"f" * 500)
    agg.ingest(b"g:1|c")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "dropped 1 bad StatsD line(s) since the last report; the latest: \"a:x|c\": value 'x' is not a number",
        'dropped 3 bad StatsD line(s) since the last report; the latest: "'
        + "f" * 120
        + "...\": missing ':' between the metric name and the value",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_reject_counts_lines_refused_before_parsing() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    agg.reject(b"x" * 10, "line longer than 8 bytes")
    stats = agg.stats()
    assert (stats.lines, stats.bad_lines, stats.last_bad_line) == (1, 1, '"xxxxxxxxxx": line longer than 8 bytes')


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (StatsdConfig(flush_interval=0), "flush_interval must be a positive number of seconds, got 0"),
        (StatsdConfig(percentiles=(50, 100)), "between 0 and 100 (exclusive; min and max are always kept), got 100"),
        (StatsdConfig(percentiles=(0,)), "got 0"),
        (StatsdConfig(service_segments=-1), "service_segments must be 0 or more, got -1"),
        (StatsdConfig(default_service=""), "default_service must not be empty"),
    ],
)
def test_config_is_validated(config: StatsdConfig, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        StatsdAggregator(config)


def test_ingest_and_flush_from_two_threads_lose_nothing() -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    packets = [
        b"\n".join(b"c%d:%d|c\nt:%d|ms\ng:%d|g" % (i % 7, i % 5 + 1, i, i) for i in range(j, j + 10))
        for j in range(3000)
    ]
    expected_sum = sum(i % 5 + 1 for j in range(3000) for i in range(j, j + 10))
    done = threading.Event()

    def send() -> None:
        for packet in packets:
            agg.ingest(packet)
        done.set()

    sender = threading.Thread(target=send)
    sender.start()
    total = count = 0.0
    now = T0
    while not done.is_set() or now == T0:
        now += 1
        rows = flush(agg, now)
        total += sum(r["Value"] for r in rows.get("metrics_sum", []))
        count += sum(r["Count"] for r in rows.get("metrics_summary", []))
    sender.join()
    rows = flush(agg, now + 1)
    total += sum(r["Value"] for r in rows.get("metrics_sum", []))
    count += sum(r["Count"] for r in rows.get("metrics_summary", []))
    assert (total, count) == (expected_sum, 30_000)


# A stream model written independently of the aggregator: per series, the expected aggregates.
_series_names = st.sampled_from(["a", "b.c", "d.e.f"])
_tag_lists = st.lists(
    st.sampled_from([("env", "dev"), ("env", "prod"), ("az", "1"), ("k", "")]), max_size=2, unique_by=lambda t: t[0]
)


@st.composite
def _records(draw: st.DrawFn) -> tuple[str, str, list[str], float | None, list[tuple[str, str]]]:
    metric_type = draw(st.sampled_from(["c", "g", "ms", "h", "d", "s"]))
    if metric_type == "s":
        values = [draw(st.sampled_from(["u1", "u2", "u3", "x:y"]))]
    elif metric_type == "g":
        values = draw(st.lists(st.sampled_from(["1", "+2", "-3", "4.5", "-0.25"]), min_size=1, max_size=3))
    else:
        values = [str(draw(st.integers(0, 64)) / 4) for _ in range(draw(st.integers(1, 3)))]
    rate = draw(st.sampled_from([None, 0.5, 0.25])) if metric_type in ("c", "ms", "h", "d") else None
    # The type is part of the name, so that a set and a gauge (or a timer and a histogram) stay apart in a table.
    return f"{draw(_series_names)}.{metric_type}", metric_type, values, rate, draw(_tag_lists)


def _model(
    records: list[tuple[str, str, list[str], float | None, list[tuple[str, str]]]],
) -> dict[tuple[Any, ...], Any]:
    series: dict[tuple[Any, ...], Any] = {}
    gauges: dict[tuple[Any, ...], float] = defaultdict(float)
    for name, metric_type, values, rate, tags in records:
        key = (metric_type, name, tuple(sorted(tags)))
        scale = 1 / (rate or 1.0)
        if metric_type == "c":
            series[key] = series.get(key, 0.0) + sum(float(v) * scale for v in values)
        elif metric_type == "g":
            for v in values:
                gauges[key] = gauges[key] + float(v) if v[0] in "+-" else float(v)
            series[key] = gauges[key]
        elif metric_type == "s":
            series.setdefault(key, set()).add(values[0])
        else:
            got = series.setdefault(key, [0.0, 0.0, []])
            got[0] += len(values) * scale
            got[1] += sum(float(v) for v in values) * scale
            got[2].extend(float(v) for v in values)
    return series


def _observed(rows: dict[str, list[dict[str, Any]]]) -> dict[tuple[Any, ...], Any]:
    out: dict[tuple[Any, ...], Any] = {}
    for table, table_rows in rows.items():
        for row in table_rows:
            key = (row["MetricName"], tuple(row["Attributes"]))
            if table == "metrics_summary":
                out[(table, *key)] = (row["Count"], row["Sum"], row["ValueAtQuantiles.Value"])
            else:
                out[(table, *key)] = row["Value"]
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(_records(), max_size=60), st.randoms(use_true_random=False))
def test_any_valid_stream_in_any_packets_aggregates_like_the_model(
    records: list[tuple[str, str, list[str], float | None, list[tuple[str, str]]]], rng: random.Random
) -> None:
    lines = [render_metric(n, v, t, rate=r, tags=tags) for n, t, v, r, tags in records]
    agg = StatsdAggregator(StatsdConfig(percentiles=(50, 90)), start=T0)
    position = 0
    while position < len(lines):
        size = rng.randrange(1, 8)
        agg.ingest(b"\n".join(lines[position : position + size]))
        position += size
    expected: dict[tuple[Any, ...], Any] = {}
    for (metric_type, name, tags), value in _model(records).items():
        if metric_type == "c":
            expected[("metrics_sum", name, tags)] = pytest.approx(value)
        elif metric_type == "g":
            expected[("metrics_gauge", name, tags)] = pytest.approx(value)
        elif metric_type == "s":
            expected[("metrics_gauge", name, tags)] = len(value)
        else:
            count, total, values = value
            quantiles = [min(values), nearest_rank(values, 50), nearest_rank(values, 90), max(values)]
            expected[("metrics_summary", name, tags)] = (
                math.floor(count + 0.5),
                pytest.approx(total),
                [q for q in quantiles if q is not None],
            )
    assert _observed(flush(agg, T0 + 10)) == expected


def test_the_same_stream_gives_the_same_rows_however_it_is_packed_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    lines = [
        render_metric(
            f"m{rng.randrange(5)}",
            [str(rng.randrange(-5, 50))],
            rng.choice(["c", "g", "h", "d"]),
            tags=[("t", str(rng.randrange(3)))],
        )
        for _ in range(400)
    ]

    def aggregate(packet_size: int) -> list[dict[str, list[dict[str, Any]]]]:
        agg = StatsdAggregator(StatsdConfig(), start=T0)
        out = []
        for interval in range(4):
            chunk = lines[interval * 100 : (interval + 1) * 100]
            for start in range(0, len(chunk), packet_size):
                agg.ingest(b"\n".join(chunk[start : start + packet_size]))
            out.append(flush(agg, T0 + 10 * (interval + 1)))
        return out

    one_packet, one_line_each = aggregate(100), aggregate(1)
    monkeypatch.setattr(statsd_aggregate, "_MAX_CACHED_KEYS", 0)  # no cache survives a flush
    assert one_packet == one_line_each == aggregate(7)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.binary(max_size=200) | st.sampled_from([b"a:1|c", b"a:1|g", b"a:+1|g", b"s:x|s", b"t:1|ms", b"_sc|x|0"]),
        max_size=8,
    )
)
def test_arbitrary_packets_never_raise_and_flush_schema_valid_rows(packets: list[bytes]) -> None:
    agg = StatsdAggregator(StatsdConfig(), start=T0)
    for packet in packets:
        counts = agg.ingest(packet)
        assert counts.good >= 0 and counts.bad >= 0
    flush(agg, T0 + 10)
    stats = agg.stats()
    assert stats.packets == len(packets)
