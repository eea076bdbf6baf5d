"""A page's reads: run at once while slots are free, in the page's own thread when none is."""

from __future__ import annotations

import contextlib
import threading

import pytest

from tests.store.test_client import max_threads
from vigil.dashboards import reads
from vigil.dashboards.reads import PageReads
from vigil.store.client import Client, query_thread_limit


def read_two_that_wait_for_each_other() -> list[int]:
    """Each read waits for the other: one after another, the first would wait out the timeout."""
    both = threading.Barrier(2, timeout=10)
    with PageReads() as page:
        first = page.start(both.wait)
        second = page.start(both.wait)
    return sorted([first.result(), second.result()])


def test_reads_of_one_page_run_at_the_same_time() -> None:
    assert read_two_that_wait_for_each_other() == [0, 1]


def test_a_read_that_would_wait_for_a_slot_runs_in_the_page_s_thread() -> None:
    release = threading.Event()
    busy = PageReads()
    # Readers take every slot, each waiting until released.
    held = [busy.start(release.wait, 10) for _ in range(reads.READ_SLOTS)]
    try:
        with PageReads() as page:
            where = page.start(lambda: threading.current_thread())
        assert where.result() is threading.current_thread()
    finally:
        release.set()
        with busy:
            pass
    assert [h.result() for h in held] == [True] * reads.READ_SLOTS


def test_while_other_pages_hold_every_slot_a_page_reads_in_its_own_thread() -> None:
    with contextlib.ExitStack() as others:
        for _ in range(reads.READ_SLOTS):
            others.enter_context(PageReads())
        with PageReads() as page:
            where = [page.start(threading.current_thread) for _ in range(3)]
    assert [w.result() for w in where] == [threading.current_thread()] * 3
    # The slots are back: two reads run at once again.
    assert read_two_that_wait_for_each_other() == [0, 1]


def test_a_failed_read_raises_from_its_result_and_the_others_are_kept() -> None:
    def broken() -> int:
        raise ValueError("no such table")

    with PageReads() as page:
        failed = page.start(broken)
        kept = [page.start(sum, [n, 1]) for n in range(5)]
    with pytest.raises(ValueError, match="no such table"):
        failed.result()
    assert [k.result() for k in kept] == [1, 2, 3, 4, 5]


def test_reads_not_yet_taken_are_cancelled_when_the_page_fails() -> None:
    release = threading.Event()
    busy = PageReads()
    held = [busy.start(release.wait, 10) for _ in range(reads.READ_SLOTS)]
    ran: list[str] = []
    try:
        with pytest.raises(KeyError), PageReads() as page:
            never = page.start(ran.append, "read")
            raise KeyError("the page failed before it needed the read")
    finally:
        release.set()
        with busy:
            pass
    assert (never.cancelled(), ran, all(h.result() for h in held)) == (True, [], True)


def test_a_read_alone_keeps_clickhouse_s_threads_and_one_beside_another_gets_one() -> None:
    both = threading.Barrier(2, timeout=10)

    def limit_then_wait() -> int | None:
        limit = query_thread_limit()
        both.wait()  # so that each read is under way while the other starts
        return limit

    with PageReads() as page:
        side_by_side = [page.start(limit_then_wait) for _ in range(2)]
    with PageReads() as page:
        alone = page.start(query_thread_limit)
    assert sorted(str(read.result()) for read in side_by_side) == ["1", "None"]
    assert alone.result() is None


def test_a_page_s_reads_beside_another_run_on_one_clickhouse_thread(chdb_client: Client) -> None:
    default = max_threads(chdb_client)
    both = threading.Barrier(2, timeout=10)

    def max_threads_then_wait() -> int:
        threads = max_threads(chdb_client)
        both.wait()
        return threads

    with PageReads() as page:
        side_by_side = [page.start(max_threads_then_wait) for _ in range(2)]
    assert sorted(read.result() for read in side_by_side) == sorted([1, default])


def test_when_a_page_ends_every_slot_its_helpers_took_is_free_for_the_next_page() -> None:
    # Its helpers give their slots back just after their last read: a page that waited only for
    # the reads could leave the next page (or test) without helpers for a moment.
    for _ in range(200):
        with PageReads() as page:
            for _ in range(2 * reads.READ_SLOTS):
                page.start(int)
        free = [reads._SLOTS.acquire(blocking=False) for _ in range(reads.READ_SLOTS)]
        for taken in free:
            if taken:
                reads._SLOTS.release()
        assert free == [True] * reads.READ_SLOTS
