"""The flow receiver: NetFlow v5/v9 and IPFIX over UDP, decoded, enriched and handed to the batcher.

Both ports (2055 and 4739 by convention) take every version; the version is in each packet. One
`NetflowDecoder` keeps the templates of every exporter. Datagrams gather for a short interval (or up
to `max_batch_bytes`), are decoded together (`NetflowDecoder.decode_many`: one set of column
operations for all their records), tagged with customer, site and prefix from the prefix file, and
go to the batcher as one `flows` batch of one Arrow record batch. Both halves matter: decoding
packet by packet cost about 80 µs each, and a table of one small record batch per packet made the
write-ahead log and ClickHouse's reading of it 10-40 times slower than one large one. Every
`status_interval_s` the decoder's view of each exporter (last seen, templates, sampling, malformed
counts) is written to `flow_exporters`, and expired templates and held data sets are dropped.

With an allowlist (`allowed_sources`, ``VIGIL_NETFLOW_ALLOWED_SOURCES``), datagrams from other
sources are dropped before decoding, so a forged source never creates template state. Each refused
source appears in `flow_exporters` as version 0, domain 0, with its refused datagrams as `Packets`
and as ``Malformed['refused']`` (the per-exporter problem counts the network health API shows).

Wiring, on the collector's loop::

    receiver = NetflowReceiver("127.0.0.1", [2055, 4739], NetflowConfig(), ReloadingPrefixMap(path), batcher)
    await receiver.start()      # receiver.ports
    ...
    await receiver.stop()       # then batcher.shutdown()
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping, Sequence

import pyarrow as pa

from vigil.collector.decode.netflow import ExporterStatus, NetflowConfig, NetflowDecoder, exporter_key
from vigil.collector.enrich import ReloadingPrefixMap, enrich
from vigil.collector.forwarding import BatchSubmitter, DatagramReader, Forwarder, udp_socket
from vigil.collector.source_filter import Refusals, SourceFilter
from vigil.store.schema import FLOW_EXPORTERS_ARROW_SCHEMA
from vigil.types import RowBatch, rows_table

__all__ = [
    "DATAGRAM_OVERHEAD_BYTES",
    "MAX_BATCH_BYTES",
    "REFUSED",
    "NetflowReceiver",
    "bind_flow_ports",
    "exporter_rows",
]

logger = logging.getLogger(__name__)

# About 1,250 datagrams of softflowd's size, 37k flows: large inserts, and a decode pass short
# enough (~20 ms) for the socket buffer to absorb what arrives meanwhile.
MAX_BATCH_BYTES = 2 * 1024 * 1024
# What a kept datagram costs beyond its payload (its tuple, bytes header and list slot): counted
# against MAX_BATCH_BYTES too, so a flood of tiny datagrams cannot pile up between flushes.
DATAGRAM_OVERHEAD_BYTES = 150
MAX_RETAINED_FLOWS = 1_000_000
FINAL_FLUSH_TIMEOUT_S = 5.0
_PROBLEM_LOG_INTERVAL_S = 10.0
# The `Malformed` key under which refused datagrams are reported (beside the decoder's categories).
REFUSED = "refused"


def exporter_rows(
    statuses: Sequence[ExporterStatus], now_ns: int, refused: Mapping[str, Refusals] | None = None
) -> pa.Table:
    """`flow_exporters` rows for the decoder's view of each exporter at `now_ns`, and one per refused source."""
    rows: list[dict[str, object]] = [
        {
            "Time": now_ns,
            "Exporter": status.exporter,
            "FlowVersion": status.version,
            "ObservationDomain": status.domain,
            "FirstSeen": int(status.first_seen * 1e9),
            "LastSeen": int(status.last_seen * 1e9),
            "Packets": status.packets,
            "Flows": status.flows,
            "Malformed": sorted(status.malformed.items()),
            "Templates": sorted({*status.templates, *status.options_templates}),
            "SamplingRate": status.sampling_rate or 0,  # 0: never announced
            "GivenUp": status.given_up,
        }
        for status in statuses
    ]
    # A refused source never reaches the decoder, so its (exporter, 0, 0) row is its own.
    rows += [
        {
            "Time": now_ns,
            "Exporter": exporter_key(source),
            "FlowVersion": 0,
            "ObservationDomain": 0,
            "FirstSeen": int(refusals.first * 1e9),
            "LastSeen": int(refusals.last * 1e9),
            "Packets": refusals.count,
            "Flows": 0,
            "Malformed": [(REFUSED, refusals.count)],
            "Templates": [],
            "SamplingRate": 0,
            "GivenUp": 0,
        }
        for source, refusals in sorted((refused or {}).items())
    ]
    return rows_table(FLOW_EXPORTERS_ARROW_SCHEMA, rows)


def bind_flow_ports(host: str, ports: Sequence[int]) -> list[socket.socket]:
    """UDP sockets bound to `ports` of `host` (0: a free one), with a large receive buffer."""
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sock = udp_socket(host)
            sockets.append(sock)
            try:
                sock.bind((host, port))
            except OSError as exc:
                problem = f"cannot listen for NetFlow/IPFIX on UDP {host}:{port}: {exc.strerror}"
                raise OSError(exc.errno, problem) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class NetflowReceiver:
    """NetFlow/IPFIX on UDP `ports` of `host` (0 picks a free port; see `ports`).

    `allowed_sources` is a comma-separated list of CIDRs (empty: every source); a malformed one
    raises `ConfigError` here. `sockets`, from `bind_flow_ports`, are used instead of binding at `start`.
    """

    def __init__(
        self,
        host: str,
        ports: Sequence[int],
        config: NetflowConfig,
        prefixes: ReloadingPrefixMap,
        consumer: BatchSubmitter,
        *,
        batch_interval_s: float = 0.1,
        status_interval_s: float = 5.0,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        allowed_sources: str = "",
        sockets: Sequence[socket.socket] | None = None,
    ) -> None:
        self.allowlist = SourceFilter.parse(allowed_sources, "VIGIL_NETFLOW_ALLOWED_SOURCES", "NetFlow")
        self.host = host
        self.requested_ports = list(ports)
        self.prefixes = prefixes
        self.batch_interval_s = batch_interval_s
        self.status_interval_s = status_interval_s
        self.max_batch_bytes = max_batch_bytes
        self.decoder = NetflowDecoder(config)
        self._evictions_logged = 0
        self._forwarder = Forwarder(consumer, "NetFlow", MAX_RETAINED_FLOWS)
        # Bound by the owner (`bind_flow_ports`), so the ports are held from the moment they are chosen.
        self._bound = sockets
        self._sockets: list[socket.socket] = []
        self._datagrams: list[tuple[bytes, bytes, int]] = []  # (packet, exporter, received ns), in arrival order
        self._buffered_bytes = 0
        self._senders: dict[str, bytes] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._problems_since_log = 0
        self._next_problem_log = 0.0
        # Malformed packets and sets since start, for Vigil's own metrics (per exporter: `flow_exporters`).
        self.problems = 0

    @property
    def ports(self) -> list[int]:
        return [int(sock.getsockname()[1]) for sock in self._sockets]

    def forwarded(self) -> int:
        """Flows handed to the batcher so far (exporter reports not counted)."""
        return self._forwarder.stats().rows_submitted

    def dropped(self) -> int:
        """Flows lost so far: refused by the batcher for longer than the receiver may hold them."""
        return self._forwarder.stats().rows_dropped

    def refused(self) -> dict[str, int]:
        """Datagrams refused by the allowlist so far, by source address."""
        if self.allowlist is None:
            return {}
        return {source: r.count for source, r in self.allowlist.refused().items()}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._bound is not None:
            self._sockets, self._bound = list(self._bound), None
        else:
            self._sockets = bind_flow_ports(self.host, self.requested_ports)
        for sock in self._sockets:
            sock.setblocking(False)  # a socket handed to a child process arrives blocking
            loop.add_reader(sock.fileno(), DatagramReader(sock, self._packet, "NetFlow", with_sender=True))
        self._stopping.clear()
        self._flusher = asyncio.create_task(self._flush_loop(), name="vigil-netflow-flush")

    async def stop(self) -> None:
        """Stop listening, then hand on every decoded flow and a last exporter report. Idempotent."""
        if not self._sockets:
            return
        self._close_sockets()
        if self._flusher is not None:
            self._stopping.set()
            await self._flusher  # not cancelled: a flush in progress must finish
            self._flusher = None
        self.flush_now(report=True)
        await self._forwarder.drain(FINAL_FLUSH_TIMEOUT_S)

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []

    def _packet(self, data: bytes, sender: tuple[str, int] | None) -> None:
        host = sender[0] if sender is not None else "::"
        if self.allowlist is not None and not self.allowlist.allows(host):
            return
        exporter = self._senders.get(host)
        if exporter is None:
            exporter = self._senders[host] = exporter_key(host.split("%", 1)[0])
        self._datagrams.append((data, exporter, time.time_ns()))
        self._buffered_bytes += len(data) + DATAGRAM_OVERHEAD_BYTES
        if self._buffered_bytes >= self.max_batch_bytes:
            self.flush_now()

    def _log_problems(self, problems: list[str]) -> None:
        """Malformed input is counted per exporter (see `flow_exporters`); the log gets a sample."""
        self._problems_since_log += len(problems)
        self.problems += len(problems)
        now = time.monotonic()
        if now >= self._next_problem_log:
            logger.warning(
                "NetFlow: %d malformed packets or sets since the last report, e.g. %s",
                self._problems_since_log,
                problems[0],
            )
            self._problems_since_log = 0
            self._next_problem_log = now + _PROBLEM_LOG_INTERVAL_S

    def flush_now(self, *, report: bool = False) -> None:
        """Decode, enrich and hand on the datagrams received so far (and, with `report`, the exporters' status)."""
        try:
            batches: list[RowBatch] = []
            if self._datagrams:
                datagrams, self._datagrams, self._buffered_bytes = self._datagrams, [], 0
                decoded = self.decoder.decode_many(datagrams)
                if decoded.problems:
                    self._log_problems(decoded.problems)
                if decoded.num_flows:
                    batches.append(RowBatch("flows", enrich(decoded.flows, self.prefixes.current())))
            if report:
                self.decoder.expire()
                if self.decoder.evicted_domains > self._evictions_logged:
                    # Many exporters or forged sources: VIGIL_NETFLOW_ALLOWED_SOURCES keeps the latter out.
                    logger.warning(
                        "flow exporter state reached its cap of %d (exporter, domain) pairs: %d least recently "
                        "seen forgotten so far",
                        self.decoder.config.max_domains, self.decoder.evicted_domains,
                    )  # fmt: skip
                    self._evictions_logged = self.decoder.evicted_domains
                statuses = self.decoder.exporters()
                refused = self.allowlist.refused() if self.allowlist is not None else {}
                if statuses or refused:
                    batches.append(RowBatch("flow_exporters", exporter_rows(statuses, time.time_ns(), refused)))
            self._forwarder.submit(batches)
        except Exception:  # the receiver must survive a bad flush; the next one starts afresh
            logger.exception("NetFlow flush failed")

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self.status_interval_s
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self.batch_interval_s)
                return
            except TimeoutError:
                pass
            report = loop.time() >= next_report
            if report:
                next_report = loop.time() + self.status_interval_s
            self.flush_now(report=report)
