"""The critical path of a trace: the spans whose own work made the trace as long as it is.

Jaeger's algorithm: start at the end of the root, walk back in time. At each span, the child
that finished last (before the point reached) is what the span was waiting for: the time
after that child's end is the span's own time on the path, and the walk continues inside that
child from its end. A span without such a child owns the rest of the way back to its start,
and the walk returns to its parent at that start, where only children that had finished by
then can be on the path (concurrent siblings overlapping the child just walked are not).

As in Jaeger, children are first clipped to their parent's interval (async work that
outlives its parent counts only while the parent ran) and a child entirely outside its
parent, with its descendants, is left out. Spans whose parent is not in the trace are roots;
the walk starts from a virtual root spanning all of them, so a trace missing its root still
has a path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CriticalPath", "TimedSpan", "critical_path"]

_ROOT = ""  # the virtual root's id: no span id is empty


class TimedSpan(Protocol):
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str: ...
    @property
    def start_time_unix_nano(self) -> int: ...
    @property
    def duration_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CriticalPath:
    """Per span on the path, its own sections ``(start_ns, end_ns)``, latest first."""

    sections: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def __contains__(self, span_id: object) -> bool:
        return span_id in self.sections

    def self_ns(self, span_id: str) -> int:
        """How long `span_id` itself was on the path (0 when it is not, or only passed through)."""
        return sum(end - start for start, end in self.sections.get(span_id, ()))


@dataclass(slots=True)
class _Node:
    span_id: str
    start: int
    end: int
    parent: str
    children: list[_Node] = field(default_factory=list)


def _clipped_tree(spans: Iterable[TimedSpan]) -> dict[str, _Node]:
    """Nodes under the virtual root, each child clipped to its (clipped) parent, top down."""
    spans = list(spans)
    ids = {s.span_id for s in spans}
    by_parent: dict[str, list[TimedSpan]] = {}
    for span in spans:
        parent_id = span.parent_span_id if span.parent_span_id in ids and span.parent_span_id != span.span_id else _ROOT
        by_parent.setdefault(parent_id, []).append(span)
    roots = by_parent.get(_ROOT, [])
    if not roots:
        return {}
    root = _Node(
        _ROOT,
        min(s.start_time_unix_nano for s in roots),
        max(s.start_time_unix_nano + s.duration_ns for s in roots),
        _ROOT,
    )
    nodes = {_ROOT: root}
    pending = [root]
    while pending:
        parent = pending.pop()
        for span in by_parent.get(parent.span_id, []):
            start = max(span.start_time_unix_nano, parent.start)
            end = min(span.start_time_unix_nano + span.duration_ns, parent.end)
            # Outside the parent altogether: not something the parent waited for.
            if end < start or (end == start and span.duration_ns > 0):
                continue
            node = _Node(span.span_id, start, end, parent.span_id)
            parent.children.append(node)
            nodes[node.span_id] = node
            pending.append(node)
    return nodes


def critical_path(spans: Iterable[TimedSpan]) -> CriticalPath:
    """The critical path of one trace's spans (any order); see the module's description.

    >>> from types import SimpleNamespace as S
    >>> path = critical_path([S(span_id="a", parent_span_id="", start_time_unix_nano=0, duration_ns=10),
    ...                       S(span_id="b", parent_span_id="a", start_time_unix_nano=2, duration_ns=5)])
    >>> path.sections
    {'a': [(7, 10), (0, 2)], 'b': [(2, 7)]}
    """
    nodes = _clipped_tree(spans)
    if not nodes:
        return CriticalPath()
    sections: dict[str, list[tuple[int, int]]] = {}
    walked: set[str] = set()
    current, until = nodes[_ROOT], nodes[_ROOT].end
    # Iterative rather than recursive: a trace may nest deeper than Python's recursion limit.
    # Each step either enters an unwalked child or returns to a parent, so the walk ends.
    while True:
        candidates = [c for c in current.children if c.end <= until and c.span_id not in walked]
        if current.span_id != _ROOT:
            sections.setdefault(current.span_id, [])
        if candidates:
            # The last to finish; on a tie the longer one, then the id, so the path is stable.
            child = max(candidates, key=lambda c: (c.end, -c.start, c.span_id))
            if until > child.end and current.span_id != _ROOT:
                sections[current.span_id].append((child.end, until))
            walked.add(child.span_id)
            current, until = child, child.end
            continue
        if until > current.start and current.span_id != _ROOT:
            sections[current.span_id].append((current.start, until))
        if current.span_id == _ROOT:
            break
        current, until = nodes[current.parent], current.start
    return CriticalPath(sections)
