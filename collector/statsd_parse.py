"""The StatsD / DogStatsD line grammar: bytes in, a parsed line or a reason it is bad. Never raises.

One line of a datagram (or of a TCP stream) is one of::

    name[,k=v...]:value[:value...]|type[|@rate][|#tag,k:v...][|c:container][|T<unix seconds>][|e:...][|card:...]
    _e{<title bytes>,<text bytes>}:title|text[|d:ts][|h:host][|k:key][|p:priority][|s:source][|t:alert][|#tags]
    _sc|name|status[|d:ts][|h:host][|#tags][|m:message]

- Types: Etsy's ``c`` (counter), ``g`` (gauge; a leading ``+``/``-`` makes the value a delta),
  ``ms`` (timer), ``s`` (set); DogStatsD's ``h`` (histogram) and ``d`` (distribution).
- ``name:1:2:3|h`` packs several values in one line (DogStatsD 1.1); a set member is taken whole,
  colons included, because sets are excluded from packing.
- Tags come from ``|#k:v,k2:v2`` (a tag without ``:`` is a key with the value ``""``) and from
  telegraf-style ``name,k=v:...``; both end up in `MetricLine.tags`, telegraf's first.
- A value is what Python's ``float()`` reads, and must be finite; a timer (``ms``) value must not be
  negative (as in Etsy). A sample rate must be in (0, 1].
- Unknown ``|``-sections after the type are ignored, as the Datadog agent does, so that newer client
  extensions (``|e:``, ``|card:``) do not turn good lines into bad ones.
- The metric name and tags must be valid UTF-8. A set member is kept as opaque bytes (only the
  number of distinct members is reported), so it may be any bytes.
- Leading and trailing blanks and a trailing ``\\r`` (``\\r\\n`` line ends) are ignored.

Metric fields stay `bytes`: the aggregator keys its state by raw bytes and decodes text once per
series. Events and service checks are rare and go to the logs table as text, so they are decoded here.

>>> line = parse_line(b"py.hits:4|c|@0.5|#env:dev,canary")
>>> line.name, line.type, line.values, line.rate, line.tags
(b'py.hits', b'c', (4.0,), 0.5, ((b'env', b'dev'), (b'canary', b'')))
>>> parse_line(b"py.hits:abc|c").message
'"py.hits:abc|c": value \\'abc\\' is not a number'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALERT_TYPES",
    "MAX_UNIX_SECONDS",
    "METRIC_TYPES",
    "BadLine",
    "EventLine",
    "MetricLine",
    "ParsedLine",
    "ServiceCheckLine",
    "fast_key",
    "is_delta",
    "parse_line",
    "parse_packet",
]

METRIC_TYPES: tuple[bytes, ...] = (b"c", b"g", b"ms", b"h", b"s", b"d")
ALERT_TYPES: tuple[str, ...] = ("error", "warning", "info", "success")

_EXPECTED_TYPES = "c, g, ms, h, s, d"
_BLANKS = b" \t\r"
# How much of an offending line or field a reason quotes.
_QUOTE_LIMIT = 120
# Python refuses int() of more than 4300 digits; no length or timestamp needs more than this.
_MAX_INT_DIGITS = 18
_NOT_A_TIME = "is not a unix time in whole seconds (up to 2262)"
# The last second a nanosecond timestamp in an Int64 column can hold (2262-04-11).
MAX_UNIX_SECONDS = (2**63 - 1) // 1_000_000_000


@dataclass(frozen=True, slots=True)
class MetricLine:
    """One metric line. `values` holds the numbers (empty for a set); `raw_values` the bytes as sent."""

    name: bytes
    type: bytes
    raw_values: tuple[bytes, ...]
    values: tuple[float, ...]
    rate: float = 1.0
    tags: tuple[tuple[bytes, bytes], ...] = ()
    timestamp: int | None = None
    container: bytes = b""

    @property
    def deltas(self) -> tuple[bool, ...]:
        """Per value: True when a gauge value is a delta (a leading ``+`` or ``-``)."""
        return tuple(is_delta(raw) for raw in self.raw_values)


@dataclass(frozen=True, slots=True)
class EventLine:
    """A DogStatsD event (``_e{...}``); ``\\n`` escapes in the title and text are undone."""

    title: str
    text: str
    timestamp: int | None = None
    hostname: str = ""
    aggregation_key: str = ""
    priority: str = ""
    source_type: str = ""
    alert_type: str = "info"
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceCheckLine:
    """A DogStatsD service check (``_sc|...``): status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""

    name: str
    status: int
    timestamp: int | None = None
    hostname: str = ""
    message: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was refused: `reason` names the problem, `message` quotes the line too."""

    line: bytes
    reason: str

    @property
    def message(self) -> str:
        return f'"{_show(self.line)}": {self.reason}'


ParsedLine = MetricLine | EventLine | ServiceCheckLine | BadLine


def _show(raw: bytes) -> str:
    """`raw` as printable text for a reason, cut short; bytes that are not UTF-8 appear as escapes."""
    text = raw[:_QUOTE_LIMIT].decode("utf-8", "backslashreplace")
    return text + "..." if len(raw) > _QUOTE_LIMIT else text


def is_delta(raw_value: bytes) -> bool:
    """Whether a gauge value is relative: it starts with ``+`` or ``-`` (Etsy's rule)."""
    return raw_value[:1] in (b"+", b"-")


def fast_key(line: bytes) -> bytes | None:
    """The line without its value: name, then everything from the ``|`` after the value.

    The aggregator keys its per-interval state by this, so a line whose key it has seen needs no
    parsing beyond the value. Two lines with the same key differ only in their value, so one full
    parse of the first tells how to treat all. None when the line has no ``name:value|`` shape.

    >>> fast_key(b"a.b:12|ms|@0.5|#env:dev")
    b'a.b|ms|@0.5|#env:dev'
    """
    colon = line.find(b":")
    if colon <= 0:
        return None
    bar = line.find(b"|", colon)
    if bar < 0:
        return None
    return line[:colon] + line[bar:]


def _number(raw: bytes) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    # inf - inf and nan - nan are nan; a finite value gives 0.
    return value if value - value == 0.0 else None


def _value_problem(raw: bytes) -> str:
    try:
        float(raw)
    except ValueError:
        return f"value '{_show(raw)}' is not a number"
    return f"value '{_show(raw)}' is not a finite number"


def _int(raw: bytes) -> int | None:
    if not raw.isdigit() or len(raw) > _MAX_INT_DIGITS:
        return None
    return int(raw)


def _timestamp(raw: bytes) -> int | None:
    seconds = _int(raw)
    return seconds if seconds is not None and seconds <= MAX_UNIX_SECONDS else None


def _utf8_problem(raw: bytes, what: str) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{what} not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    return None


def _dogstatsd_tags(section: bytes) -> tuple[list[tuple[bytes, bytes]], str | None]:
    """Tags of a ``#...`` section (without the ``#``); empty entries are skipped."""
    tags: list[tuple[bytes, bytes]] = []
    for tag in section.split(b","):
        if not tag:
            continue
        key, _, value = tag.partition(b":")
        if not key:
            return tags, f"tag '{_show(tag)}' has an empty key"
        tags.append((key, value))
    return tags, None


def _telegraf_tags(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], str | None]:
    """Split ``name,k=v,k2=v2`` into the name and its tags."""
    name, *pairs = head.split(b",")
    tags: list[tuple[bytes, bytes]] = []
    for pair in pairs:
        if not pair:
            continue
        key, _, value = pair.partition(b"=")
        if not key:
            return name, tags, f"tag '{_show(pair)}' has an empty key"
        tags.append((key, value))
    return name, tags, None


def _parse_metric(line: bytes, text: bytes) -> ParsedLine:
    colon = text.find(b":")
    if colon < 0:
        return BadLine(line, "missing ':' between the metric name and the value")
    head = text[:colon]
    if not head:
        return BadLine(line, "empty metric name")
    if b"|" in head:
        return BadLine(line, f"metric name '{_show(head)}' contains '|'")
    problem = _utf8_problem(head, "metric name is")
    if problem:
        return BadLine(line, problem)
    name, tags, problem = _telegraf_tags(head)
    if problem:
        return BadLine(line, problem)
    if not name:
        return BadLine(line, "empty metric name")
    raw_value, *sections = text[colon + 1 :].split(b"|")
    if not sections:
        return BadLine(line, "missing '|<type>' after the value")
    metric_type = sections[0]
    if metric_type not in METRIC_TYPES:
        return BadLine(line, f"unknown type '{_show(metric_type)}' (expected {_EXPECTED_TYPES})")
    rate = 1.0
    timestamp: int | None = None
    container = b""
    for section in sections[1:]:
        first = section[:1]
        if first == b"@":
            try:
                rate = float(section[1:])
            except ValueError:
                return BadLine(line, f"sample rate '{_show(section)}' is not a number")
            if not 0.0 < rate <= 1.0:  # nan fails this too
                return BadLine(line, f"sample rate '{_show(section)}' must be in (0, 1]")
        elif first == b"#":
            problem = _utf8_problem(section, "tags are")
            if problem:
                return BadLine(line, problem)
            more, problem = _dogstatsd_tags(section[1:])
            if problem:
                return BadLine(line, problem)
            tags.extend(more)
        elif first == b"T":
            timestamp = _timestamp(section[1:])
            if timestamp is None:
                return BadLine(line, f"timestamp '{_show(section)}' {_NOT_A_TIME}")
        elif section.startswith(b"c:"):
            container = section[2:]
        # Anything else (|e:, |card:, future extensions) is ignored, as the Datadog agent does.
    if metric_type == b"s":
        return MetricLine(name, metric_type, (raw_value,), (), rate, tuple(tags), timestamp, container)
    raw_values = tuple(raw_value.split(b":"))
    values: list[float] = []
    for raw in raw_values:
        number = _number(raw)
        if number is None:
            return BadLine(line, _value_problem(raw))
        if number < 0.0 and metric_type == b"ms":
            return BadLine(line, f"timer value '{_show(raw)}' must not be negative")
        values.append(number)
    return MetricLine(name, metric_type, raw_values, tuple(values), rate, tuple(tags), timestamp, container)


def _text_tags(section: bytes) -> tuple[tuple[tuple[str, str], ...], str | None]:
    raw_tags, problem = _dogstatsd_tags(section)
    return tuple((k.decode(), v.decode()) for k, v in raw_tags), problem


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n")


def _parse_event(line: bytes, text: bytes) -> ParsedLine:
    close = text.find(b"}:")
    title_len = text_len = None
    if close > 3:
        raw_title_len, _, raw_text_len = text[3:close].partition(b",")
        title_len, text_len = _int(raw_title_len), _int(raw_text_len)
    if title_len is None or text_len is None:
        return BadLine(line, "event must start with _e{<title length>,<text length>}:")
    body = text[close + 2 :]
    end = title_len + 1 + text_len
    if len(body) < end or body[title_len : title_len + 1] != b"|" or body[end : end + 1] not in (b"", b"|"):
        return BadLine(
            line, f"event lengths {title_len},{text_len} (UTF-8 bytes) do not match the title and text that follow"
        )
    problem = _utf8_problem(text, "event is")
    if problem:
        return BadLine(line, problem)
    # Both end where a '|' or the line ends, so a valid line never splits a character here.
    title = _unescape(body[:title_len].decode())
    event_text = _unescape(body[title_len + 1 : end].decode())
    if not title:
        return BadLine(line, "event title is empty")
    fields: dict[str, str] = {}
    timestamp: int | None = None
    tags: tuple[tuple[str, str], ...] = ()
    for section in body[end + 1 :].split(b"|") if len(body) > end else ():
        if section.startswith(b"d:"):
            timestamp = _timestamp(section[2:])
            if timestamp is None:
                return BadLine(line, f"event timestamp '{_show(section)}' {_NOT_A_TIME}")
        elif section[:1] == b"#":
            tags, problem = _text_tags(section[1:])
            if problem:
                return BadLine(line, problem)
        elif section[1:2] == b":" and section[:1] in (b"h", b"k", b"p", b"s", b"t"):
            fields[section[:1].decode()] = section[2:].decode()
    alert_type = fields.get("t", "info")
    if alert_type not in ALERT_TYPES:
        return BadLine(line, f"unknown event alert type '{alert_type}' (expected {', '.join(ALERT_TYPES)})")
    return EventLine(
        title,
        event_text,
        timestamp,
        hostname=fields.get("h", ""),
        aggregation_key=fields.get("k", ""),
        priority=fields.get("p", ""),
        source_type=fields.get("s", ""),
        alert_type=alert_type,
        tags=tags,
    )


def _parse_service_check(line: bytes, text: bytes) -> ParsedLine:
    problem = _utf8_problem(text, "service check is")
    if problem:
        return BadLine(line, problem)
    # The message comes last and runs to the end of the line, '|' included.
    head, found, raw_message = text.partition(b"|m:")
    message = raw_message.decode().replace("\\n", "\n").replace("m\\:", "m:") if found else ""
    parts = head.split(b"|")
    if len(parts) < 3 or not parts[1]:
        return BadLine(line, "service check must start with _sc|<name>|<status>")
    status = parts[2]
    if status not in (b"0", b"1", b"2", b"3"):
        return BadLine(line, f"service check status '{_show(status)}' must be 0, 1, 2 or 3")
    timestamp: int | None = None
    hostname = ""
    tags: tuple[tuple[str, str], ...] = ()
    for section in parts[3:]:
        if section.startswith(b"d:"):
            timestamp = _timestamp(section[2:])
            if timestamp is None:
                return BadLine(line, f"service check timestamp '{_show(section)}' {_NOT_A_TIME}")
        elif section.startswith(b"h:"):
            hostname = section[2:].decode()
        elif section[:1] == b"#":
            tags, problem = _text_tags(section[1:])
            if problem:
                return BadLine(line, problem)
    return ServiceCheckLine(parts[1].decode(), int(status), timestamp, hostname, message, tags)


def parse_line(line: bytes) -> ParsedLine | None:
    """One line (without its ``\\n``): a metric, event, service check or `BadLine`; None when blank.

    Never raises, whatever the bytes.

    >>> parse_line(b"_sc|app.ok|0|#env:dev|m:fine")
    ServiceCheckLine(name='app.ok', status=0, timestamp=None, hostname='', message='fine', tags=(('env', 'dev'),))
    >>> parse_line(b"x:1|zz").reason
    "unknown type 'zz' (expected c, g, ms, h, s, d)"
    """
    try:
        text = line.strip(_BLANKS)
        if not text:
            return None
        if text.startswith(b"_e{"):
            return _parse_event(line, text)
        if text.startswith(b"_sc|"):
            return _parse_service_check(line, text)
        return _parse_metric(line, text)
    except Exception as exc:  # a parser bug must cost one line, never the receiver
        return BadLine(bytes(line), f"unparseable line ({type(exc).__name__})")


def parse_packet(packet: bytes) -> list[ParsedLine]:
    """Every non-blank line of a datagram (lines end with ``\\n``; ``\\r\\n`` is tolerated).

    >>> [type(p).__name__ for p in parse_packet(b"a:1|c\\r\\n\\nb:x|g\\n")]
    ['MetricLine', 'BadLine']
    """
    parsed = (parse_line(line) for line in packet.split(b"\n"))
    return [p for p in parsed if p is not None]
