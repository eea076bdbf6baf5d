"""Source allowlists of the UDP (and StatsD TCP) receivers: who may send, and a count of who was refused.

StatsD and flow exporters send without authentication, and UDP sources are easy to forge, so a
receiver can be limited to the networks its senders live in (``VIGIL_STATSD_ALLOWED_SOURCES``,
``VIGIL_NETFLOW_ALLOWED_SOURCES``). A datagram or connection from elsewhere is dropped before any
decoding, counted per source address, and logged at most once a minute per source, so a flood from
one address costs a counter increment, not a log line.

Matching runs per datagram, so the networks are parsed once and each source's decision is cached
(sources are few; the cache is bounded so forged sources cannot grow it without limit). Refusals
are tracked for up to `MAX_TRACKED_SOURCES` addresses; later new sources (and any without an
address) are counted together under `OVERFLOW_SOURCE`.

>>> allowlist = SourceFilter.parse("10.0.0.0/8, 192.0.2.7", "VIGIL_STATSD_ALLOWED_SOURCES", "StatsD")
>>> allowlist.allows("10.1.2.3"), allowlist.allows("::ffff:192.0.2.7"), allowlist.allows("192.0.2.8")
(True, True, False)
>>> {source: r.count for source, r in allowlist.refused().items()}
{'192.0.2.8': 1}
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vigil.errors import ConfigError
from vigil.settings import allowed_networks

__all__ = [
    "MAX_TRACKED_SOURCES",
    "OVERFLOW_SOURCE",
    "Network",
    "Refusals",
    "SourceFilter",
    "parse_allowed_sources",
]

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_TRACKED_SOURCES = 1024
# The unspecified address never sends, so it cannot be confused with a real source.
OVERFLOW_SOURCE = "::"
_MAX_CACHED_DECISIONS = 4096
_LOG_INTERVAL_S = 60.0


def parse_allowed_sources(text: str, setting: str) -> tuple[Network, ...]:
    """The networks of a comma-separated allowlist; raises `ConfigError` naming `setting` and the bad entry."""
    try:
        return allowed_networks(text)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Refusals:
    """What was refused from one source: how many datagrams or connections, first and last (unix seconds)."""

    count: int
    first: float
    last: float


@dataclass(slots=True)
class _Tracked:
    count: int
    first: float
    last: float
    next_log: float  # monotonic


class SourceFilter:
    """Allows sources inside `networks` and counts (and logs, sparingly) the rest; see the module doc.

    `allows` runs on the receiver's loop only; `refused` may be called from any thread.
    """

    def __init__(
        self,
        networks: Sequence[Network],
        setting: str,
        receiver: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked_sources: int = MAX_TRACKED_SOURCES,
    ) -> None:
        if not networks:
            raise ValueError("an empty allowlist allows everything: use no SourceFilter at all")
        self.setting = setting
        self.receiver = receiver
        self._v4 = tuple(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in networks if isinstance(n, ipaddress.IPv6Network))
        self._clock = clock
        self._max_tracked = max_tracked_sources
        # Host text as the socket reports it -> None (allowed) or the address refusals are counted under.
        self._decisions: dict[str, str | None] = {}
        self._refused: dict[str, _Tracked] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, setting: str, receiver: str) -> SourceFilter | None:
        """A filter for the allowlist `text`, or None when it is empty (every source allowed)."""
        networks = parse_allowed_sources(text, setting)
        return cls(networks, setting, receiver) if networks else None

    def allows(self, host: str, what: str = "a datagram") -> bool:
        """Whether `host` (an address as the socket reports it) may send; a refusal is counted and maybe logged."""
        try:
            refused_as = self._decisions[host]
        except KeyError:
            refused_as = self._decide(host)
        if refused_as is None:
            return True
        self._refuse(refused_as, what)
        return False

    def refused(self) -> dict[str, Refusals]:
        """Refusals so far by source address (normalized text, IPv4-mapped IPv6 shown as IPv4)."""
        with self._lock:
            return {source: Refusals(t.count, t.first, t.last) for source, t in self._refused.items()}

    def _decide(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:  # no address (a socket that reports none): nothing in the list can match it
            refused_as: str | None = OVERFLOW_SOURCE
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped  # an IPv4 sender seen through a dual-stack socket
            networks: tuple[Network, ...] = self._v4 if isinstance(address, ipaddress.IPv4Address) else self._v6
            refused_as = None if any(address in network for network in networks) else str(address)
        if len(self._decisions) >= _MAX_CACHED_DECISIONS:
            self._decisions.clear()  # forged sources churn it; real ones are decided again cheaply
        self._decisions[host] = refused_as
        return refused_as

    def _refuse(self, source: str, what: str) -> None:
        now, wall = self._clock(), time.time()
        with self._lock:
            tracked = self._refused.get(source)
            if tracked is None:
                if len(self._refused) >= self._max_tracked:
                    source = OVERFLOW_SOURCE
                    tracked = self._refused.get(source)
                if tracked is None:
                    tracked = self._refused[source] = _Tracked(0, wall, wall, now)
            tracked.count += 1
            tracked.last = wall
            log = now >= tracked.next_log
            if log:
                tracked.next_log = now + _LOG_INTERVAL_S
            count = tracked.count
        if log:
            sender = "untracked sources" if source == OVERFLOW_SOURCE else source
            logger.warning(
                "%s: refused %s from %s: not in %s (%d refused from it so far; logged at most once a minute)",
                self.receiver,
                what,
                sender,
                self.setting,
                count,
            )
