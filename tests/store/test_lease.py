"""The claim-and-settle leader lease on real chDB, with a 2 s TTL so expiry takes two seconds.

Not shorter: a renewal and a rival's claim are six queries and two settles, and on a busy machine
running the suite's other workers, a 1 s TTL lapsed between renewals."""

from __future__ import annotations

import threading
import time

from tests.waiting import wait_until
from vigil.store.client import Client
from vigil.store.lease import Leadership, Lease
from vigil.store.migrate import migrate
from vigil.store.schema import DdlContext

TTL = 2.0
SETTLE = 0.1


def lease(client: Client, database: str, holder: str) -> Lease:
    return Lease(client, database, "detect", ttl=TTL, settle=SETTLE, holder=holder)


def migrated(client: Client, database: str) -> tuple[Lease, Lease]:
    migrate(client, DdlContext(database=database))
    return lease(client, database, "a"), lease(client, database, "b")


def test_of_two_holders_claiming_at_once_exactly_one_leads(chdb_client: Client, database: str) -> None:
    a, b = migrated(chdb_client, database)
    results: dict[str, bool] = {}
    # Both read the lease free before either claims: the race the settle step resolves.
    both_read = threading.Barrier(2)

    def claim(candidate: Lease) -> None:
        both_read.wait()
        results[candidate.holder] = candidate.acquire()

    threads = [threading.Thread(target=claim, args=(candidate,)) for candidate in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [holder for holder, won in results.items() if won]
    assert len(winners) == 1
    row = a.read()
    assert row is not None and row.holder == winners[0] and row.live


def test_a_held_lease_is_refused_to_others_and_renewal_keeps_it(chdb_client: Client, database: str) -> None:
    a, b = migrated(chdb_client, database)
    assert a.acquire() is True
    assert b.acquire() is False
    # Renewed at a quarter of the TTL for two TTLs: it never lapses, so b never gets it.
    deadline = time.monotonic() + 2 * TTL
    while time.monotonic() < deadline:
        time.sleep(TTL / 4)
        assert a.renew() is True
        assert b.acquire() is False
    row = a.read()
    assert row is not None and (row.holder, row.live) == ("a", True)


def test_a_lease_no_longer_renewed_passes_to_the_other_after_expiry(chdb_client: Client, database: str) -> None:
    a, b = migrated(chdb_client, database)
    assert a.acquire() is True
    assert b.acquire() is False
    time.sleep(TTL + 0.2)
    assert b.acquire() is True
    # The old leader finds out at its next renewal and must stop.
    assert a.renew() is False
    assert a.acquire() is False
    row = b.read()
    assert row is not None and (row.holder, row.live) == ("b", True)


def test_a_released_lease_passes_at_once(chdb_client: Client, database: str) -> None:
    a, b = migrated(chdb_client, database)
    assert a.acquire() is True
    a.release()
    released = a.read()
    assert released is not None and (released.holder, released.live) == ("a", False)
    assert b.acquire() is True
    # Releasing a lease one does not hold leaves it with its holder.
    a.release()
    row = b.read()
    assert row is not None and (row.holder, row.live) == ("b", True)


def test_leadership_runs_work_on_one_replica_and_hands_it_on_when_that_one_stops(
    chdb_client: Client, database: str
) -> None:
    a, b = migrated(chdb_client, database)
    events: list[str] = []
    lock = threading.Lock()

    def record(event: str) -> None:
        with lock:
            events.append(event)

    first = Leadership(a, on_elected=lambda: record("a elected"), on_deposed=lambda: record("a deposed"))
    second = Leadership(b, on_elected=lambda: record("b elected"), on_deposed=lambda: record("b deposed"))
    try:
        first.start()
        assert wait_until(lambda: first.leading, 5 * TTL)
        second.start()
        # Three of b's polls: none takes the lease from a renewing leader.
        time.sleep(TTL)
        assert (first.leading, second.leading) == (True, False)
        first.stop()
        assert wait_until(lambda: second.leading, 5 * TTL)
    finally:  # a thread left running would claim the lease in the next test's database
        first.stop()
        second.stop()
    assert events == ["a elected", "a deposed", "b elected", "b deposed"]


def test_a_leader_whose_lease_was_taken_steps_down(chdb_client: Client, database: str) -> None:
    a, b = migrated(chdb_client, database)
    deposed = threading.Event()
    leader = Leadership(a, on_elected=lambda: None, on_deposed=deposed.set)
    try:
        leader.start()
        assert wait_until(lambda: leader.leading, 5 * TTL)
        # As if a's renewals had stalled past expiry and b had claimed meanwhile: b's claim supersedes.
        held = a.read()
        assert held is not None
        chdb_client.command(
            f"INSERT INTO {database}.leases (Name, Holder, ExpiresAt, Version) "
            "SELECT 'detect', 'b', now64(3) + toIntervalSecond(60), {v:UInt64}",
            parameters={"v": held.version + 1},
        )
        assert deposed.wait(timeout=2 * TTL)
        assert leader.leading is False
        assert b.renew() is True
    finally:
        leader.stop()
