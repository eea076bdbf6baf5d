"""A leader lease in ClickHouse: which of several `vigil detect` replicas runs detectors and alerts.

ClickHouse has no compare-and-swap, so the lease is claim-and-settle over the `leases` table
(ReplacingMergeTree(Version) ORDER BY Name, read with FINAL: the highest Version per name wins):

- **acquire**: read the current row; if it has expired or already names us, insert our claim
  with a Version above the one read, wait `settle`, and read again. We lead iff the row names
  us. Two candidates that both saw the lease free both claim, but after settling both read
  the same winner (the higher Version), so exactly one leads.
- **renew** (every ttl/3): read; if the row still names us and has not expired, insert a
  claim with a later expiry and a higher Version. Anything else (another holder, an expired
  row, an error) means we no longer lead, and the caller stops its work at once.
- **release**: write an already-expired claim, so a standby takes over without waiting.

Expiry is compared with ClickHouse's clock (`now64()`), never a replica's own, so clock skew
between Vigil hosts does not matter. Versions are `max(read + 1, wall-clock ns)`: each claim
supersedes the row its writer read, whatever the writers' clocks.

Why this is safe enough: a leader that stalls past its expiry (a pause, a slow renewal) can
overlap briefly with its successor until its next renewal fails. Both then run the same
detector rounds and alert evaluations, but finding ids derive from the series and onset, and
alert outbox ids from (group, what changed), so both write the same rows and ReplacingMergeTree
keeps one: the overlap does not duplicate findings or queue a Slack message twice. On a cluster,
the settle time also covers replication between the replicas of the shard holding the lease.

A stronger lease would use ClickHouse Keeper directly (its ZooKeeper-style ephemeral nodes and
versioned writes give real compare-and-swap) or a KeeperMap table, whose inserts with
`keeper_map_strict_mode` fail when the key exists; both need Keeper, which a single
ClickHouse server or chDB does not have.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

__all__ = ["Leadership", "Lease", "LeaseRow", "holder_id"]

logger = logging.getLogger(__name__)

_TABLE = "leases"


def holder_id() -> str:
    """This process, unique even when two replicas share a hostname and pid (containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    holder: str
    live: bool  # not expired by ClickHouse's clock
    version: int


class Lease:
    """One named lease for one holder; not thread-safe (one `Leadership` thread drives it)."""

    def __init__(
        self,
        client: Client,
        database: str,
        name: str,
        *,
        ttl: float,
        settle: float | None = None,
        holder: str | None = None,
        cluster: bool = False,
    ) -> None:
        self.client = client
        self.database = database
        self.name = name
        self.ttl = ttl
        # Long enough for a competing claim (and on a cluster, its replication) to land; short
        # against the TTL so a takeover is not much slower than the expiry.
        self.settle = min(ttl / 10, 1.0) if settle is None else settle
        self.holder = holder or holder_id()
        # On a cluster, inserts into the Distributed table are forwarded in the background by
        # default; a claim must be on its shard before we settle and read.
        self._insert_settings = {"insert_distributed_sync": 1} if cluster else {}

    def read(self) -> LeaseRow | None:
        rows = self.client.query(
            f"SELECT Holder, ExpiresAt > now64(3), Version FROM {self.database}.{_TABLE} FINAL "
            "WHERE Name = {n:String}",
            parameters={"n": self.name},
        ).result_rows
        if not rows:
            return None
        holder, live, version = rows[0]
        return LeaseRow(str(holder), bool(live), int(version))

    def _claim(self, current: LeaseRow | None, ttl_ms: int) -> None:
        version = max((current.version + 1) if current else 0, time.time_ns())
        self.client.command(
            f"INSERT INTO {self.database}.{_TABLE} (Name, Holder, ExpiresAt, Version) "
            "SELECT {n:String}, {h:String}, now64(3) + toIntervalMillisecond({ms:Int64}), {v:UInt64}",
            parameters={"n": self.name, "h": self.holder, "ms": ttl_ms, "v": version},
            settings=self._insert_settings,
        )

    def acquire(self) -> bool:
        """Claim the lease if it is free or ours; True iff we lead after settling."""
        current = self.read()
        if current is not None and current.live and current.holder != self.holder:
            return False
        self._claim(current, int(self.ttl * 1000))
        time.sleep(self.settle)
        after = self.read()
        return after is not None and after.holder == self.holder and after.live

    def renew(self) -> bool:
        """Extend a lease we hold; False if it names another holder or has expired."""
        current = self.read()
        if current is None or current.holder != self.holder or not current.live:
            return False
        self._claim(current, int(self.ttl * 1000))
        after = self.read()
        return after is not None and after.holder == self.holder

    def release(self) -> None:
        """Expire the lease now if we hold it, so a standby need not wait for the TTL."""
        current = self.read()
        if current is not None and current.holder == self.holder and current.live:
            # An expiry in the past: the next acquire sees the lease free.
            self._claim(current, -int(self.ttl * 1000) - 1000)


class Leadership:
    """Keeps trying a lease in a thread; runs `on_elected` when it leads and `on_deposed` as soon
    as a renewal fails or shows another holder (and on stop, before releasing the lease)."""

    def __init__(self, lease: Lease, *, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        self.lease = lease
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leading = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"vigil-lease-{self.lease.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _step(self) -> None:
        if not self.leading:
            try:
                elected = self.lease.acquire()
            except Exception:
                logger.exception("claiming the %s lease failed; retrying", self.lease.name)
                return
            if elected:
                logger.info("%s leads %s", self.lease.holder, self.lease.name)
                self.leading = True
                try:
                    self._on_elected()
                except Exception:
                    # Leading without running would hold standbys off for nothing: hand the lease on.
                    logger.exception("starting work under the %s lease failed; releasing it", self.lease.name)
                    self.leading = False
                    self._on_deposed()
                    self.lease.release()
            return
        try:
            kept = self.lease.renew()
        except Exception:
            # Unable to prove we still lead: stop now rather than risk running beside a successor.
            logger.exception("renewing the %s lease failed; stepping down", self.lease.name)
            kept = False
        if not kept:
            logger.warning("%s lost the %s lease; stepping down", self.lease.holder, self.lease.name)
            self.leading = False
            self._on_deposed()

    def _run(self) -> None:
        # Renewing at a third of the TTL leaves two more tries before expiry; standbys poll as
        # often, so a takeover follows an expiry within a third of the TTL.
        period = self.lease.ttl / 3
        while not self._stop.is_set():
            self._step()
            self._stop.wait(period)
        if self.leading:
            self.leading = False
            self._on_deposed()
            try:
                self.lease.release()
            except Exception:
                logger.exception("releasing the %s lease failed; it expires in %.0fs", self.lease.name, self.lease.ttl)
