"""The StatsD/DogStatsD line grammar: every feature, every reason a line is refused, and properties."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.statsd_streams import render_metric
from vigil.collector.statsd_parse import (
    MAX_UNIX_SECONDS,
    BadLine,
    EventLine,
    MetricLine,
    ServiceCheckLine,
    fast_key,
    parse_line,
    parse_packet,
)


def metric(line: bytes) -> MetricLine:
    parsed = parse_line(line)
    assert isinstance(parsed, MetricLine), parsed
    return parsed


def test_a_counter_with_a_sample_rate_and_tags() -> None:
    assert parse_line(b"py.hits:4|c|@0.5|#env:dev,route:/x") == MetricLine(
        name=b"py.hits",
        type=b"c",
        raw_values=(b"4",),
        values=(4.0,),
        rate=0.5,
        tags=((b"env", b"dev"), (b"route", b"/x")),
    )


@pytest.mark.parametrize(
    ("line", "metric_type", "values"),
    [
        (b"a:1|c", b"c", (1.0,)),
        (b"a:-2.5|c", b"c", (-2.5,)),
        (b"a:20|g", b"g", (20.0,)),
        (b"a:12.500000|ms", b"ms", (12.5,)),
        (b"a:0|ms", b"ms", (0.0,)),
        (b"a:-7|h", b"h", (-7.0,)),
        (b"a:3.3|d", b"d", (3.3,)),
        (b"a:1e3|c", b"c", (1000.0,)),
    ],
)
def test_each_numeric_type(line: bytes, metric_type: bytes, values: tuple[float, ...]) -> None:
    parsed = metric(line)
    assert (parsed.type, parsed.values, parsed.rate, parsed.tags) == (metric_type, values, 1.0, ())


def test_gauge_values_with_a_sign_are_deltas() -> None:
    assert metric(b"t:+5|g").deltas == (True,)
    assert metric(b"t:-3|g").deltas == (True,)
    assert metric(b"t:17|g").deltas == (False,)
    assert metric(b"t:-3|g").values == (-3.0,)


def test_a_set_member_is_kept_whole_as_bytes_colons_included() -> None:
    parsed = metric(b"users:alice:admin|s|#env:dev")
    assert (parsed.type, parsed.raw_values, parsed.values) == (b"s", (b"alice:admin",), ())
    assert metric(b"users:|s").raw_values == (b"",)
    assert metric(b"users:\xff\xfe|s").raw_values == (b"\xff\xfe",)


def test_packed_values() -> None:
    parsed = metric(b"lat:1:2.5:3|h|#env:dev")
    assert (parsed.raw_values, parsed.values) == ((b"1", b"2.5", b"3"), (1.0, 2.5, 3.0))
    assert metric(b"g:+1:7:-2|g").deltas == (True, False, True)


def test_tags_bare_keys_values_with_colons_and_empty_entries() -> None:
    parsed = metric(b"a:1|c|#canary,url:http://x:80/p,,env:")
    assert parsed.tags == ((b"canary", b""), (b"url", b"http://x:80/p"), (b"env", b""))
    assert metric(b"a:1|c|#").tags == ()


def test_telegraf_tags_come_before_dogstatsd_tags() -> None:
    parsed = metric(b"hs.tg,k=v,flag,eq=a=b:1|c|#env:dev")
    assert parsed.name == b"hs.tg"
    assert parsed.tags == ((b"k", b"v"), (b"flag", b""), (b"eq", b"a=b"), (b"env", b"dev"))


def test_dogstatsd_extensions_are_accepted() -> None:
    parsed = metric(b"a:1|c|#env:dev|c:abc123|T1700000000|e:it-false,cn-x|card:high|future:thing")
    assert (parsed.tags, parsed.container, parsed.timestamp) == (((b"env", b"dev"),), b"abc123", 1700000000)


def test_blanks_and_crlf_around_a_line_are_ignored() -> None:
    assert metric(b"  a:1|c\r").name == b"a"
    assert parse_line(b"") is None
    assert parse_line(b" \r") is None


def test_a_packet_of_lines_with_crlf_and_blank_lines() -> None:
    parsed = parse_packet(b"a:1|c\r\n\nb:2|g\r\n\r\nc:x|c\n")
    assert [type(p).__name__ for p in parsed] == ["MetricLine", "MetricLine", "BadLine"]
    assert [p.name for p in parsed if isinstance(p, MetricLine)] == [b"a", b"b"]


def test_an_event_with_every_field() -> None:
    line = b"_e{6,10}:Deploy|v1 shipped|d:1700000000|h:web-1|k:deploys|p:low|s:ci|t:success|#env:dev,canary"
    assert parse_line(line) == EventLine(
        title="Deploy",
        text="v1 shipped",
        timestamp=1700000000,
        hostname="web-1",
        aggregation_key="deploys",
        priority="low",
        source_type="ci",
        alert_type="success",
        tags=(("env", "dev"), ("canary", "")),
    )


def test_event_lengths_are_utf8_bytes_and_newlines_are_unescaped() -> None:
    title, text = "Déploiement ✓", "ligne 1\\nligne 2 | fin"
    line = f"_e{{{len(title.encode())},{len(text.encode())}}}:{title}|{text}".encode()
    parsed = parse_line(line)
    assert isinstance(parsed, EventLine)
    assert (parsed.title, parsed.text, parsed.alert_type) == (title, "ligne 1\nligne 2 | fin", "info")


def test_a_service_check_with_every_field() -> None:
    line = b"_sc|app.ok|2|d:1700000000|h:web-1|#env:dev|m:disk | full\\nsee m\\: runbook"
    assert parse_line(line) == ServiceCheckLine(
        name="app.ok",
        status=2,
        timestamp=1700000000,
        hostname="web-1",
        message="disk | full\nsee m: runbook",
        tags=(("env", "dev"),),
    )
    assert parse_line(b"_sc|app.ok|0") == ServiceCheckLine("app.ok", 0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"py.hits:abc|c", "value 'abc' is not a number"),
        (b"py.hits:|c", "value '' is not a number"),
        (b"py.hits:nan|c", "value 'nan' is not a finite number"),
        (b"py.hits:1:inf|h", "value 'inf' is not a finite number"),
        (b"py.hits:1:x|h", "value 'x' is not a number"),
        (b"py.hits:1|x", "unknown type 'x' (expected c, g, ms, h, s, d)"),
        (b"py.hits:1|C", "unknown type 'C' (expected c, g, ms, h, s, d)"),
        (b"py.hits:1|", "unknown type '' (expected c, g, ms, h, s, d)"),
        (b"py.hits:1", "missing '|<type>' after the value"),
        (b"py.hits|c", "missing ':' between the metric name and the value"),
        (b":1|c", "empty metric name"),
        (b",k=v:1|c", "empty metric name"),
        (b"a|b:1|c", "metric name 'a|b' contains '|'"),
        (b"py.hits:1|c|@2", "sample rate '@2' must be in (0, 1]"),
        (b"py.hits:1|c|@0", "sample rate '@0' must be in (0, 1]"),
        (b"py.hits:1|c|@-0.5", "sample rate '@-0.5' must be in (0, 1]"),
        (b"py.hits:1|c|@nan", "sample rate '@nan' must be in (0, 1]"),
        (b"py.hits:1|c|@", "sample rate '@' is not a number"),
        (b"py.hits:1|c|@fast", "sample rate '@fast' is not a number"),
        (b"lat:-5|ms", "timer value '-5' must not be negative"),
        (b"a:1|c|#:v", "tag ':v' has an empty key"),
        (b"a,=v:1|c", "tag '=v' has an empty key"),
        (b"a:1|c|Tsoon", "timestamp 'Tsoon' is not a unix time in whole seconds (up to 2262)"),
        (b"a:1|c|T-1", "timestamp 'T-1' is not a unix time in whole seconds (up to 2262)"),
        (
            b"a:1|c|T" + str(MAX_UNIX_SECONDS + 1).encode(),
            f"timestamp 'T{MAX_UNIX_SECONDS + 1}' is not a unix time in whole seconds (up to 2262)",
        ),
        (b"caf\xc3:1|c", "metric name is not valid UTF-8 (byte 0xc3 at offset 3)"),
        (b"a:1|c|#env:\xff", "tags are not valid UTF-8 (byte 0xff at offset 5)"),
        (b"_e{5,4}:Deploy|text", "event lengths 5,4 (UTF-8 bytes) do not match the title and text that follow"),
        (b"_e{6,40}:Deploy|text", "event lengths 6,40 (UTF-8 bytes) do not match the title and text that follow"),
        (b"_e{x,4}:title|text", "event must start with _e{<title length>,<text length>}:"),
        (b"_e{5,4}title|text", "event must start with _e{<title length>,<text length>}:"),
        (b"_e{0,4}:|text", "event title is empty"),
        (b"_e{1,1}:\xc3\xa9|x", "event lengths 1,1 (UTF-8 bytes) do not match the title and text that follow"),
        (b"_e{1,1}:t|\xff", "event is not valid UTF-8 (byte 0xff at offset 10)"),
        (b"_e{1,1}:t|x|t:fatal", "unknown event alert type 'fatal' (expected error, warning, info, success)"),
        (b"_e{1,1}:t|x|d:yesterday", "event timestamp 'd:yesterday' is not a unix time in whole seconds (up to 2262)"),
        (b"_sc|app.ok", "service check must start with _sc|<name>|<status>"),
        (b"_sc||0", "service check must start with _sc|<name>|<status>"),
        (b"_sc|app.ok|4", "service check status '4' must be 0, 1, 2 or 3"),
        (b"_sc|app.ok|OK", "service check status 'OK' must be 0, 1, 2 or 3"),
        (b"_sc|app.ok|0|d:x", "service check timestamp 'd:x' is not a unix time in whole seconds (up to 2262)"),
        (b"_sc|app.\xff|0", "service check is not valid UTF-8 (byte 0xff at offset 8)"),
    ],
)
def test_each_reason_a_line_is_refused(line: bytes, reason: str) -> None:
    assert parse_line(line) == BadLine(line, reason)


def test_a_bad_line_message_quotes_the_line() -> None:
    bad = parse_line(b"py.hits:abc|c")
    assert isinstance(bad, BadLine)
    assert bad.message == "\"py.hits:abc|c\": value 'abc' is not a number"


def test_a_long_bad_line_is_quoted_short_and_bytes_that_are_not_text_are_escaped() -> None:
    bad = parse_line(b"x" * 300 + b"\xff")
    assert isinstance(bad, BadLine)
    assert bad.message == '"' + "x" * 120 + "...\": missing ':' between the metric name and the value"
    short = parse_line(b"\xff\xfe")
    assert isinstance(short, BadLine)
    assert short.message == "\"\\xff\\xfe\": missing ':' between the metric name and the value"


def test_fast_key_is_the_line_without_its_value() -> None:
    assert fast_key(b"a.b:12|ms|@0.5|#env:dev") == b"a.b|ms|@0.5|#env:dev"
    assert fast_key(b"a:1:2:3|h") == b"a|h"
    assert fast_key(b"a:x:y|s") == b"a|s"
    assert fast_key(b"a|c") is None
    assert fast_key(b":1|c") is None
    assert fast_key(b"a:1") is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
@example(b"_e{99999999999999999999999,1}:a|b")
@example(b"a:" + b"9" * 5000 + b"|c|T" + b"9" * 5000)
@example(b"_e{" + b"9" * 5000 + b",1}:a|b")
@example(b"_sc|\xff|0|m:\xff")
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for parsed in parse_packet(data):
        assert isinstance(parsed, MetricLine | EventLine | ServiceCheckLine | BadLine)
        if isinstance(parsed, BadLine):
            assert parsed.reason
            assert isinstance(parsed.message, str)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"a", b":", b"|", b"c", b"g", b"s", b"#", b"@", b"_e{", b"_sc", b",", b"1", b"\n"])))
def test_grammar_shaped_bytes_never_raise(pieces: list[bytes]) -> None:
    for parsed in parse_packet(b"".join(pieces)):
        assert isinstance(parsed, MetricLine | EventLine | ServiceCheckLine | BadLine)


# Text that survives the grammar: no separators, no blanks at the ends of a line.
_SEPARATORS = ":|,#@=\n\r"


def _text(extra: str = "", min_size: int = 1) -> st.SearchStrategy[str]:
    return st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=_SEPARATORS + extra),
        min_size=min_size,
        max_size=12,
    )


_names = _text().filter(lambda name: not name.startswith("_e{"))
# DogStatsD tag values may hold ':' (the first one splits key from value).
_dogstatsd_tag_values = st.none() | st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters=",|\n\r"), max_size=12
)
_telegraf_tag_values = st.none() | _text(min_size=0)
_numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**12), 10**12)


@st.composite
def _metric_lines(draw: st.DrawFn) -> tuple[bytes, bytes, dict[str, object]]:
    """A rendered line, the same line with other values, and the fields the parser must find."""
    metric_type = draw(st.sampled_from(["c", "g", "ms", "h", "s", "d"]))
    if metric_type == "s":
        member = draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="|\n"), max_size=12))
        raw_values, other_values = [member], [member + "x"]
    else:
        numbers = draw(st.lists(_numbers, min_size=1, max_size=4))
        raw_values = [repr(abs(n) if metric_type == "ms" else n) for n in numbers]
        other_values = ["0"]
    options = {
        "rate": draw(st.none() | st.floats(min_value=0.0, max_value=1.0, exclude_min=True)),
        "tags": draw(st.lists(st.tuples(_text(), _dogstatsd_tag_values), max_size=3)),
        "telegraf_tags": draw(st.lists(st.tuples(_text(), _telegraf_tag_values), max_size=3)),
        "timestamp": draw(st.none() | st.integers(0, MAX_UNIX_SECONDS)),
        "container": draw(st.none() | _text()),
    }
    name = draw(_names)
    line = render_metric(name, raw_values, metric_type, **options)
    other = render_metric(name, other_values, metric_type, **options)
    tags = [*options["telegraf_tags"], *options["tags"]]
    expected = {
        "name": name.encode(),
        "type": metric_type.encode(),
        "raw_values": tuple(v.encode() for v in raw_values),
        "values": () if metric_type == "s" else tuple(float(v) for v in raw_values),
        "rate": 1.0 if options["rate"] is None else options["rate"],
        "tags": tuple((k.encode(), (v or "").encode()) for k, v in tags),
        "timestamp": options["timestamp"],
        "container": (options["container"] or "").encode(),
    }
    return line, other, expected


@settings(max_examples=300, deadline=None)
@given(_metric_lines())
def test_rendered_metric_lines_parse_back_to_the_same_fields(case: tuple[bytes, bytes, dict[str, object]]) -> None:
    line, other, expected = case
    parsed = metric(line)
    assert {field: getattr(parsed, field) for field in expected} == expected
    # Lines that differ only in their values share the fast path's key.
    assert fast_key(line) == fast_key(other) is not None


@settings(max_examples=200, deadline=None)
@given(
    title=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1, max_size=20),
    text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=40),
    alert=st.sampled_from(["error", "warning", "info", "success"]),
    tags=st.lists(st.tuples(_text(), _text(min_size=0)), max_size=3),
)
def test_rendered_events_parse_back(title: str, text: str, alert: str, tags: list[tuple[str, str]]) -> None:
    # As the datadog client does: escape newlines, measure the escaped UTF-8.
    title_wire, text_wire = title.replace("\n", "\\n"), text.replace("\n", "\\n")
    line = f"_e{{{len(title_wire.encode())},{len(text_wire.encode())}}}:{title_wire}|{text_wire}|t:{alert}"
    if tags:
        line += "|#" + ",".join(f"{k}:{v}" for k, v in tags)
    expected = EventLine(title.replace("\\n", "\n"), text.replace("\\n", "\n"), alert_type=alert, tags=tuple(tags))
    assert parse_line(line.encode()) == expected
