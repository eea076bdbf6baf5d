"""The critical path on hand-made span trees: each span's own sections, exactly."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.dashboards.critical_path import critical_path


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_span_id: str
    start_time_unix_nano: int
    end: int

    @property
    def duration_ns(self) -> int:
        return self.end - self.start_time_unix_nano


def sections(*spans: Span) -> dict[str, list[tuple[int, int]]]:
    return critical_path(spans).sections


def test_a_lone_span_is_the_whole_path() -> None:
    assert sections(Span("a", "", 0, 10)) == {"a": [(0, 10)]}


def test_no_spans_no_path() -> None:
    assert sections() == {}


def test_sequential_children_are_all_on_the_path_with_the_gaps_in_the_parent() -> None:
    assert sections(
        Span("p", "", 0, 100),
        Span("a", "p", 10, 40),
        Span("b", "p", 50, 90),
    ) == {"p": [(90, 100), (40, 50), (0, 10)], "b": [(50, 90)], "a": [(10, 40)]}


def test_of_overlapping_children_only_the_last_to_finish_is_on_the_path() -> None:
    # a ran alongside b and finished first: the parent was waiting for b, not a.
    assert sections(
        Span("p", "", 0, 100),
        Span("a", "p", 10, 60),
        Span("b", "p", 20, 90),
    ) == {"p": [(90, 100), (0, 20)], "b": [(20, 90)]}


def test_a_child_that_finished_before_the_next_one_started_is_on_the_path_again() -> None:
    # c overlaps b (not on the path), a finished before b started (on it).
    assert sections(
        Span("p", "", 0, 100),
        Span("a", "p", 0, 20),
        Span("c", "p", 25, 70),
        Span("b", "p", 30, 80),
    ) == {"p": [(80, 100), (20, 30)], "b": [(30, 80)], "a": [(0, 20)]}


def test_a_request_through_two_services_nests_the_path() -> None:
    # checkout_trace's shape: server 0-30, its client call 5-25, the callee's server 6-24.
    assert sections(
        Span("root", "", 0, 30),
        Span("client", "root", 5, 25),
        Span("server", "client", 6, 24),
    ) == {"root": [(25, 30), (0, 5)], "client": [(24, 25), (5, 6)], "server": [(6, 24)]}


def test_an_async_child_outliving_its_parent_counts_only_while_the_parent_ran() -> None:
    assert sections(
        Span("p", "", 0, 100),
        Span("a", "p", 10, 50),
        Span("async", "p", 60, 300),
    ) == {"p": [(50, 60), (0, 10)], "async": [(60, 100)], "a": [(10, 50)]}


def test_a_child_entirely_after_its_parent_and_its_descendants_are_left_out() -> None:
    assert sections(
        Span("p", "", 0, 100),
        Span("a", "p", 10, 50),
        Span("late", "p", 150, 200),
        Span("later", "late", 160, 190),
    ) == {"p": [(50, 100), (0, 10)], "a": [(10, 50)]}


def test_a_child_starting_before_its_parent_is_clipped_to_the_parent_start() -> None:
    assert sections(Span("p", "", 10, 50), Span("skewed", "p", 5, 30)) == {"p": [(30, 50)], "skewed": [(10, 30)]}


def test_back_to_back_children_are_both_on_the_path() -> None:
    # The parent passed through with no time of its own.
    assert sections(
        Span("p", "", 0, 20),
        Span("a", "p", 0, 10),
        Span("b", "p", 10, 20),
    ) == {"p": [], "b": [(10, 20)], "a": [(0, 10)]}


def test_spans_whose_parent_is_missing_form_the_path_together() -> None:
    assert sections(
        Span("x", "gone", 0, 10),
        Span("y", "gone", 20, 50),
        Span("z", "y", 25, 40),
    ) == {"y": [(40, 50), (20, 25)], "z": [(25, 40)], "x": [(0, 10)]}


def test_self_times_on_the_path_add_up_to_the_trace_duration_even_when_deep() -> None:
    # 3000 nested spans, deeper than Python's default recursion limit.
    depth = 3000
    spans = [Span(f"s{i}", f"s{i - 1}" if i else "", i, 2 * depth - i) for i in range(depth)]
    path = critical_path(spans)
    assert len(path.sections) == depth
    assert path.self_ns("s0") == 2
    assert path.self_ns(f"s{depth - 1}") == 2
    assert sum(path.self_ns(s.span_id) for s in spans) == 2 * depth
    assert "s5" in path and "nope" not in path and path.self_ns("nope") == 0
