"""The NetFlow receiver on real UDP sockets: datagrams are decoded a flush at a time, as one batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.collector.test_source_filter import Flows, netflow, send_from
from tests.collector.test_statsd_receiver import eventually
from tests.netflow_packets import flow_rows, softflowd_like
from vigil.collector.decode.netflow import NetflowDecoder, exporter_key
from vigil.collector.enrich import ReloadingPrefixMap, enrich
from vigil.collector.netflow_receiver import DATAGRAM_OVERHEAD_BYTES


def kept_bytes(datagrams: list[bytes]) -> int:
    """What `datagrams` count against `max_batch_bytes` while they wait for a flush."""
    return sum(len(d) + DATAGRAM_OVERHEAD_BYTES for d in datagrams)


def flow_batches(consumer: Flows) -> list[int]:
    """Record batches of each `flows` batch handed on."""
    return [len(b.rows.to_batches()) for b in consumer.batches if b.table == "flows"]


def test_a_flush_of_many_datagrams_reaches_the_batcher_as_one_enriched_record_batch(tmp_path: Path) -> None:
    template, data = softflowd_like(9, records=3)
    consumer = Flows()
    (tmp_path / "prefixes.csv").write_text("cidr,customer,site\n10.0.0.0/8,acme,paris\n192.0.2.0/24,example,\n")
    prefixes = ReloadingPrefixMap(str(tmp_path / "prefixes.csv"))
    # The byte bound is reached by the last datagram; the timer would flush only after a minute.
    options = {"max_batch_bytes": kept_bytes([template, *[data] * 20]), "batch_interval_s": 60.0}
    with netflow(consumer, prefixes=prefixes, **options) as receiver:
        send_from("127.0.0.1", receiver.ports[0], template, *[data] * 20)
        eventually(lambda: assert_equal(flow_batches(consumer), [1]))
        assert receiver.forwarded() == 60
    datagrams = [(packet, exporter_key("127.0.0.1"), 0) for packet in [template, *[data] * 20]]
    expected = flow_rows(enrich(NetflowDecoder().decode_many(datagrams).flows, prefixes.current()))
    assert [without_receipt(r) for r in consumer.flows()] == [without_receipt(r) for r in expected]
    assert {(r["SrcCustomer"], r["SrcSite"], r["DstCustomer"], r["DstSite"]) for r in expected} == {
        ("acme", "paris", "example", "")
    }


def test_a_malformed_datagram_in_a_flush_is_counted_for_its_exporter_and_the_others_kept() -> None:
    template, data = softflowd_like(9, records=3)
    consumer = Flows()
    datagrams = [template, data, b"\x00\x07junk", data[:30], data]
    options = {"max_batch_bytes": kept_bytes(datagrams), "batch_interval_s": 60.0}
    with netflow(consumer, **options) as receiver:
        send_from("127.0.0.1", receiver.ports[0], *datagrams)
        eventually(lambda: assert_equal(flow_batches(consumer), [1]))
    # stop() sent the last exporter report.
    assert len(consumer.flows()) == 6
    assert consumer.exporters() == [
        ("127.0.0.1", 0, 0, 0, [("bad_version", 1)], []),
        ("127.0.0.1", 9, 4, 6, [("set_length", 1)], [1024]),
    ]


def without_receipt(row: dict[str, Any]) -> dict[str, Any]:
    """A row less the time it was received (the receiver's clock)."""
    return {k: v for k, v in row.items() if k != "TimeReceived"}


def assert_equal(got: object, expected: object) -> None:
    assert got == expected
