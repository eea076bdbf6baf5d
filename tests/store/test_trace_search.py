"""Trace search over SDK spans stored through the real decoder: exact traces for each filter,
and exact histogram counts."""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.trace_spans import S, build_trace
from vigil.collector.decode.otlp_traces import decode_traces_protobuf
from vigil.store.client import Client
from vigil.store.migrate import migrate
from vigil.store.read import StoreReader
from vigil.store.schema import DdlContext
from vigil.store.trace_search import (
    BadTraceSearch,
    SpanNames,
    StatusFilter,
    TraceSearch,
    TraceSummary,
    duration_histogram,
    parse_attribute,
    search_traces,
    span_names,
)
from vigil.store.write import StoreWriter

NOW = time.time()
BASE_NS = int((NOW - 1800) * 1e9)  # half an hour ago: inside a one-hour window
SECOND = 1_000_000_000
MS = 1_000_000


def store(writer: StoreWriter, spans: list[ReadableSpan]) -> str:
    """Stores `spans` as Vigil's collector would and returns their trace id."""
    (batch,) = decode_traces_protobuf(encode_spans(spans).SerializeToString()).batches
    writer.insert("spans", batch.rows)
    return format(spans[0].context.trace_id, "032x")


class Traces:
    """Five traces in the last hour and one from two hours ago; ids by letter."""

    def __init__(self, writer: StoreWriter) -> None:
        resources = {"shop": {"deployment.environment": "prod"}}
        self.a = store(
            writer,
            build_trace(
                [
                    S(
                        "shop",
                        "GET /checkout",
                        0,
                        30,
                        attributes={"http.route": "/checkout", "http.response.status_code": 502},
                        children=[
                            S(
                                "shop",
                                "POST payments",
                                5,
                                25,
                                kind=SpanKind.CLIENT,
                                children=[S("payments", "charge", 6, 24, status="error", message="card declined")],
                            )
                        ],
                    ),
                ],
                start_ns=BASE_NS,
                resources=resources,
            ),
        )
        self.b = store(
            writer,
            build_trace(
                [
                    S("shop", "GET /cart", 0, 3, status="ok", attributes={"http.route": "/cart", "cache.key": ""}),
                ],
                start_ns=BASE_NS + 10 * SECOND,
                resources=resources,
            ),
        )
        self.c = store(
            writer,
            build_trace(
                [
                    S(
                        "search",
                        "GET /search",
                        0,
                        1500,
                        attributes={"http.route": "/search", "user.tier": "gold"},
                        children=[S("search", "query index", 10, 1400, kind=SpanKind.INTERNAL)],
                    ),
                ],
                start_ns=BASE_NS + 20 * SECOND,
            ),
        )
        self.d = store(
            writer,
            build_trace(
                [
                    S("payments", "refund", 0, 0.5, attributes={"http.route": "/checkout"}),
                ],
                start_ns=BASE_NS + 30 * SECOND,
            ),
        )
        self.f = store(
            writer,
            build_trace(
                [
                    S("batch", "nightly export", 0, 45_000),
                ],
                start_ns=BASE_NS + 40 * SECOND,
            ),
        )
        self.old = store(writer, build_trace([
            S("shop", "GET /checkout", 0, 30, attributes={"http.route": "/checkout"}),
        ], start_ns=BASE_NS - 5400 * SECOND, resources=resources))  # fmt: skip

    def summary(self, letter: str) -> TraceSummary:
        trace_id = getattr(self, letter)
        return {
            "a": TraceSummary(trace_id, "shop", "GET /checkout", BASE_NS, 30_000_000, 3, 1, ["payments", "shop"]),
            "b": TraceSummary(trace_id, "shop", "GET /cart", BASE_NS + 10 * SECOND, 3_000_000, 1, 0, ["shop"]),
            "c": TraceSummary(trace_id, "search", "GET /search", BASE_NS + 20 * SECOND, 1500 * MS, 2, 0, ["search"]),
            "d": TraceSummary(trace_id, "payments", "refund", BASE_NS + 30 * SECOND, 500_000, 1, 0, ["payments"]),
            "f": TraceSummary(trace_id, "batch", "nightly export", BASE_NS + 40 * SECOND, 45 * SECOND, 1, 0, ["batch"]),
        }[letter]  # fmt: skip


@pytest.fixture
def reader_and_traces(chdb_client: Client, database: str) -> tuple[StoreReader, Traces]:
    migrate(chdb_client, DdlContext(database=database))
    return StoreReader(chdb_client, database), Traces(StoreWriter(chdb_client, database))


def found(reader: StoreReader, traces: Traces, limit: int = 50, **filters: object) -> str:
    """The letters of the traces found, in the order found."""
    search = TraceSearch(start_s=NOW - 3600, end_s=NOW + 60, **filters)  # type: ignore[arg-type]
    letters = {getattr(traces, letter): letter for letter in "abcdf"} | {traces.old: "old"}
    return "".join(letters[t.trace_id] for t in search_traces(reader.query, search, limit=limit))


def test_without_filters_the_window_s_traces_come_newest_first_with_their_summaries(
    reader_and_traces: tuple[StoreReader, Traces],
) -> None:
    reader, traces = reader_and_traces
    search = TraceSearch(start_s=NOW - 3600, end_s=NOW + 60)
    assert search_traces(reader.query, search, limit=50) == [traces.summary(x) for x in "fdcba"]
    assert found(reader, traces, limit=2) == "fd"


def test_traces_with_many_matching_spans_each_still_fill_the_limit(chdb_client: Client, database: str) -> None:
    migrate(chdb_client, DdlContext(database=database))
    writer = StoreWriter(chdb_client, database)
    # 60 traces a second apart, each a request fanning out into 30 spans of the same service: the
    # newest 50 traces hold 1,500 matching spans, past the first read of 50 * 20.
    trace_ids = [
        store(writer, build_trace([
            S("chatty", "GET /feed", 0, 40, children=[S("chatty", f"load item {i}", 1, 2) for i in range(29)]),
        ], start_ns=BASE_NS + n * SECOND))
        for n in range(60)
    ]  # fmt: skip
    search = TraceSearch(start_s=NOW - 3600, end_s=NOW + 60, service="chatty")
    newest_first = trace_ids[::-1]
    assert [t.trace_id for t in search_traces(StoreReader(chdb_client, database).query, search, limit=50)] == (
        newest_first[:50]
    )
    assert [t.span_count for t in search_traces(StoreReader(chdb_client, database).query, search, limit=3)] == [30] * 3


def test_an_earlier_window_finds_the_older_trace_only(reader_and_traces: tuple[StoreReader, Traces]) -> None:
    reader, traces = reader_and_traces
    search = TraceSearch(start_s=NOW - 3 * 3600, end_s=NOW - 3600)
    assert [t.trace_id for t in search_traces(reader.query, search, limit=50)] == [traces.old]


@pytest.mark.parametrize(
    ("filters", "letters"),
    [
        ({"service": "shop"}, "ba"),
        ({"service": "payments"}, "da"),
        ({"operation": "charge"}, "a"),
        ({"operation": "GET /checkout"}, "a"),
        ({"service": "shop", "operation": "charge"}, ""),
        ({"min_duration_ms": 1000}, "fc"),
        ({"min_duration_ms": 1000, "max_duration_ms": 45_000}, "c"),
        ({"min_duration_ms": 20, "max_duration_ms": 30}, "a"),  # POST payments, 20 ms; the 30 ms root is not < 30
        ({"min_duration_ms": 3, "max_duration_ms": 5}, "b"),  # 3 ms: the minimum is inclusive
        ({"max_duration_ms": 1}, "d"),
        ({"status": "error"}, "a"),
        ({"status": "ok"}, "b"),
        ({"status": "unset"}, "fdca"),
        ({"service": "shop", "status": "error"}, ""),
        ({"attributes": (("http.route", "/checkout"),)}, "da"),
        ({"attributes": (("http.route", "/checkout"),), "service": "shop"}, "a"),
        ({"attributes": (("http.response.status_code", "502"),)}, "a"),
        ({"attributes": (("http.route", "/search"), ("user.tier", "gold"))}, "c"),
        ({"attributes": (("http.route", "/search"), ("user.tier", "silver"))}, ""),
        ({"attributes": (("deployment.environment", "prod"),)}, "ba"),  # a resource attribute
        ({"attributes": (("cache.key", ""),)}, "b"),  # empty, and present: not every span lacking it
    ],
)  # fmt: skip
def test_each_filter_finds_exactly_the_traces_with_a_matching_span(
    reader_and_traces: tuple[StoreReader, Traces], filters: dict[str, object], letters: str
) -> None:
    reader, traces = reader_and_traces
    assert found(reader, traces, **filters) == letters


def test_the_histogram_counts_every_span_per_duration_bucket(reader_and_traces: tuple[StoreReader, Traces]) -> None:
    reader, _ = reader_and_traces
    histogram = duration_histogram(reader.query, TraceSearch(start_s=NOW - 3600, end_s=NOW + 60))
    # <1ms: refund 0.5 | 2-5: cart 3 | 10-20: charge 18 | 20-50: checkout 30, POST payments 20 (edges are
    # inclusive below) | 1-2 s: search 1500, query index 1390 | >=30 s: nightly export 45 s.
    assert histogram.counts == [1, 0, 1, 0, 1, 2, 0, 0, 0, 0, 2, 0, 0, 0, 1]
    assert (histogram.total, histogram.capped) == (8, False)


def test_the_histogram_applies_every_filter_but_the_duration_range(
    reader_and_traces: tuple[StoreReader, Traces],
) -> None:
    reader, _ = reader_and_traces
    shop = TraceSearch(start_s=NOW - 3600, end_s=NOW + 60, service="shop", min_duration_ms=25, max_duration_ms=50)
    assert duration_histogram(reader.query, shop).counts == [0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    errors = TraceSearch(start_s=NOW - 3600, end_s=NOW + 60, status="error")
    assert duration_histogram(reader.query, errors).counts == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    routed = TraceSearch(start_s=NOW - 3600, end_s=NOW + 60, attributes=(("http.route", "/checkout"),))
    assert duration_histogram(reader.query, routed).counts == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_the_histogram_stops_counting_at_its_cap_and_says_so(reader_and_traces: tuple[StoreReader, Traces]) -> None:
    reader, _ = reader_and_traces
    histogram = duration_histogram(reader.query, TraceSearch(start_s=NOW - 3600, end_s=NOW + 60), cap=5)
    assert (histogram.total, histogram.capped) == (5, True)


def test_span_names_offer_the_services_and_entry_operations_of_the_window(
    reader_and_traces: tuple[StoreReader, Traces],
) -> None:
    reader, _ = reader_and_traces
    # POST payments (client) and query index (internal) are not entry spans: not in the rollup.
    assert span_names(reader.query, start_s=NOW - 3600, end_s=NOW + 60) == SpanNames(
        services=["batch", "payments", "search", "shop"],
        operations=["GET /cart", "GET /checkout", "GET /search", "charge", "nightly export", "refund"],
    )
    assert span_names(reader.query, start_s=NOW - 3600, end_s=NOW + 60, service="shop") == SpanNames(
        services=["batch", "payments", "search", "shop"], operations=["GET /cart", "GET /checkout"]
    )


def test_the_reader_s_traces_method_takes_the_same_filters(reader_and_traces: tuple[StoreReader, Traces]) -> None:
    reader, traces = reader_and_traces
    status: StatusFilter = "unset"
    summaries = reader.traces(
        start_s=NOW - 3600, end_s=NOW + 60, max_duration_ms=2000, status=status, attributes=(("http.route", "/search"),)
    )
    assert summaries == [traces.summary("c")]


def test_an_attribute_filter_needs_a_key_and_an_equals_sign() -> None:
    assert parse_attribute(" http.route =/a=b") == ("http.route", "/a=b")
    assert parse_attribute("k=") == ("k", "")
    for text in ("http.route", "=x", " =x"):
        with pytest.raises(BadTraceSearch) as error:
            parse_attribute(text)
        assert str(error.value) == f"attr={text!r} is not valid: expected key=value, e.g. http.route=/checkout"
