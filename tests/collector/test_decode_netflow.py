"""The NetFlow v5/v9/IPFIX decoder: scapy-built packets with exact rows, malformed input, and real softflowd."""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.netflow import (
    GetNetflowRecordV9,
    NetflowDataflowsetV9,
    NetflowFlowsetV9,
    NetflowHeader,
    NetflowHeaderV9,
    NetflowTemplateV9,
)
from scapy.layers.netflow import NetflowTemplateFieldV9 as ScapyField

from tests.netflow_packets import (
    SOFTFLOWD_ICMP,
    SOFTFLOWD_V4_UPTIME,
    SOFTFLOWD_V6,
    VARIABLE,
    Field,
    PcapFlow,
    V5Record,
    Value,
    data_set,
    flow_rows,
    ipfix_packet,
    options_template_set,
    softflowd_datagrams,
    template_set,
    v5_packet,
    v9_packet,
    withdrawal_set,
    write_flows_pcap,
)
from vigil.collector.decode.netflow import (
    PROBLEM_CATEGORIES,
    ExporterStatus,
    FlowBatch,
    NetflowConfig,
    NetflowDecoder,
    exporter_key,
)
from vigil.store.schema import FLOWS_ARROW_SCHEMA

NOW = 1_700_000_000  # 2023-11-14T22:13:20Z
S = 1_000_000_000  # ns per second
MS = 1_000_000
RECEIVED = NOW * S + 500 * MS
HOST = "192.0.2.1"
EXPORTER = exporter_key(HOST)
# A small v9/IPFIX template: addresses, ports, protocol and 4-byte counters.
SMALL: tuple[Field, ...] = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4))


class Clock:
    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def row(**values: Any) -> dict[str, Any]:
    """A whole flows row: what an exporter leaves out is 0, "" or the unspecified address."""
    base: dict[str, Any] = {
        "TimeReceived": RECEIVED,
        "FlowStart": NOW * S,
        "FlowEnd": NOW * S,
        "Exporter": HOST,
        "FlowVersion": 9,
        "ObservationDomain": 0,
        "SrcAddr": "::",
        "DstAddr": "::",
        "SrcPort": 0,
        "DstPort": 0,
        "Protocol": 0,
        "TcpFlags": 0,
        "Tos": 0,
        "InputInterface": 0,
        "OutputInterface": 0,
        "Bytes": 0,
        "Packets": 0,
        "SamplingRate": 1,
        "SrcAs": 0,
        "DstAs": 0,
        **dict.fromkeys(("SrcPrefix", "SrcCustomer", "SrcSite", "DstPrefix", "DstCustomer", "DstSite"), ""),
    }
    unknown = set(values) - set(base)
    assert not unknown, unknown
    return base | values


def small(src: str, dst: str, nbytes: int, packets: int = 1, **values: Any) -> dict[str, Any]:
    """The row of a SMALL record (TCP 1234 -> 80)."""
    values = {"SrcPort": 1234, "DstPort": 80, "Protocol": 6, **values}
    return row(SrcAddr=src, DstAddr=dst, Bytes=nbytes, Packets=packets, **values)


def decode(decoder: NetflowDecoder, packet: bytes, received_ns: int = RECEIVED, host: str = HOST) -> FlowBatch:
    batch = decoder.decode(packet, exporter_key(host), received_ns)
    assert batch.flows.schema.equals(FLOWS_ARROW_SCHEMA)
    return batch


def v9(*sets: bytes, source_id: int = 0, uptime_ms: int = 100_000, sequence: int = 0) -> bytes:
    return v9_packet(sets, uptime_ms=uptime_ms, unix_secs=NOW, source_id=source_id, sequence=sequence)


def ipfix(*sets: bytes, domain: int = 0, sequence: int = 0) -> bytes:
    return ipfix_packet(sets, export_time=NOW, domain=domain, sequence=sequence)


def small_records(*records: tuple[str, str, int]) -> list[list[Value]]:
    return [[src, dst, 1234, 80, 6, nbytes, 1] for src, dst, nbytes in records]


def status(decoder: NetflowDecoder, version: int, domain: int = 0) -> ExporterStatus:
    (found,) = [s for s in decoder.exporters() if s.version == version and s.domain == domain]
    return found


# ---- basics --------------------------------------------------------------------------------------


def test_exporter_key_maps_ipv4_into_ipv6_and_keeps_ipv6() -> None:
    assert exporter_key("192.0.2.1") == bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    assert exporter_key("2001:db8::7") == bytes.fromhex("20010db8000000000000000000000007")


def test_a_4_byte_exporter_is_mapped_like_exporter_key() -> None:
    decoder = NetflowDecoder()
    packet = v5_packet([V5Record(src="10.0.0.1", dst="10.0.0.2")], uptime_ms=1000, unix_secs=NOW)
    batch = decoder.decode(packet, bytes([192, 0, 2, 1]), RECEIVED)
    assert flow_rows(batch.flows)[0]["Exporter"] == HOST
    with pytest.raises(ValueError, match="16-byte address"):
        decoder.decode(packet, b"\x01\x02", RECEIVED)


def test_an_empty_batch_has_the_flows_schema() -> None:
    batch = decode(NetflowDecoder(), v9(template_set(9, [(260, SMALL)])))
    assert (batch.num_flows, batch.problems, batch.given_up) == (0, [], 0)


# ---- v5 ------------------------------------------------------------------------------------------


def test_v5_times_sampling_ases_and_interfaces() -> None:
    records = [
        V5Record(src="192.0.2.10", dst="198.51.100.7", sport=1234, dport=443, proto=6, tcp_flags=0x1B, tos=0x10,
                 packets=10, bytes=5000, first=90_000, last=99_000, input=3, output=65535, src_as=64500,
                 dst_as=65535),
        # First switched before the exporter's boot: modular arithmetic makes it 100.296 s old.
        V5Record(src="10.0.0.1", dst="10.0.0.2", proto=17, packets=1, bytes=60, first=2**32 - 296, last=50_000),
    ]  # fmt: skip
    packet = v5_packet(records, uptime_ms=100_000, unix_secs=NOW, unix_nsecs=250 * MS, sequence=41, engine_type=1,
                       engine_id=2, sampling=0x4000 | 100)  # fmt: skip
    batch = decode(NetflowDecoder(), packet)
    export = NOW * S + 250 * MS
    common = {"FlowVersion": 5, "ObservationDomain": 1 << 8 | 2, "SamplingRate": 100}
    assert flow_rows(batch.flows) == [
        row(FlowStart=export - 10 * S, FlowEnd=export - 1 * S, SrcAddr="192.0.2.10", DstAddr="198.51.100.7",
            SrcPort=1234, DstPort=443, Protocol=6, TcpFlags=0x1B, Tos=0x10, InputInterface=3, OutputInterface=65535,
            Bytes=5000, Packets=10, SrcAs=64500, DstAs=65535, **common),
        row(FlowStart=export - 100_296 * MS, FlowEnd=export - 50 * S, SrcAddr="10.0.0.1", DstAddr="10.0.0.2",
            Protocol=17, Bytes=60, Packets=1, **common),
    ]  # fmt: skip
    assert batch.problems == []


def test_v5_unsampled_is_rate_1_and_sequence_gaps_are_counted() -> None:
    decoder = NetflowDecoder()
    record = V5Record(src="10.0.0.1", dst="10.0.0.2")
    for sequence in (10, 11, 20):  # 10 + 1 flow = 11 expected next; 20 is a gap
        batch = decode(decoder, v5_packet([record], uptime_ms=1000, unix_secs=NOW, sequence=sequence))
        assert flow_rows(batch.flows)[0]["SamplingRate"] == 1
    assert (status(decoder, 5).sequence_gaps, status(decoder, 5).sampling_rate) == (1, 1)


def test_v5_records_beyond_the_packet_are_reported_and_whole_ones_kept() -> None:
    records = [V5Record(src="10.0.0.1", dst="10.0.0.2", bytes=100), V5Record(src="10.0.0.3", dst="10.0.0.4")]
    packet = v5_packet(records, uptime_ms=1000, unix_secs=NOW, count=3)[:-10]
    batch = decode(NetflowDecoder(), packet)
    assert [(r["SrcAddr"], r["Bytes"]) for r in flow_rows(batch.flows)] == [("10.0.0.1", 100)]
    assert batch.problems == [f"{HOST} v5: the header counts 3 records but 110 bytes hold 1"]


# ---- v9 templates and data -----------------------------------------------------------------------

FULL_V9: tuple[Field, ...] = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (5, 1), (10, 2), (14, 2), (16, 2),
                              (17, 4), (1, 4), (2, 4), (22, 4), (21, 4))  # fmt: skip


def test_v9_template_and_data_in_one_packet() -> None:
    values: list[Value] = ["192.0.2.10", "198.51.100.7", 5353, 53, 17, 0, 0xB8, 3, 4, 64500, 4_200_000_000, 700, 7,
                           95_000, 99_500]  # fmt: skip
    packet = v9(template_set(9, [(260, FULL_V9)]), data_set(260, FULL_V9, [values]), source_id=7)
    batch = decode(NetflowDecoder(), packet)
    assert flow_rows(batch.flows) == [
        row(FlowStart=NOW * S - 5 * S, FlowEnd=NOW * S - 500 * MS, ObservationDomain=7, SrcAddr="192.0.2.10",
            DstAddr="198.51.100.7", SrcPort=5353, DstPort=53, Protocol=17, Tos=0xB8, InputInterface=3,
            OutputInterface=4, Bytes=700, Packets=7, SrcAs=64500, DstAs=4_200_000_000)
    ]  # fmt: skip
    assert batch.problems == []


def test_v9_templates_apply_to_later_packets_of_their_own_source_id_only() -> None:
    decoder = NetflowDecoder()
    assert decode(decoder, v9(template_set(9, [(260, SMALL)]), source_id=7)).num_flows == 0
    data = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 100), ("10.0.0.3", "10.0.0.4", 200)))
    batch = decode(decoder, v9(data, source_id=7))
    assert flow_rows(batch.flows) == [
        small("10.0.0.1", "10.0.0.2", 100, ObservationDomain=7),
        small("10.0.0.3", "10.0.0.4", 200, ObservationDomain=7),
    ]
    assert decode(decoder, v9(data, source_id=8)).num_flows == 0  # another source: held, not decoded
    assert decode(decoder, v9(data, source_id=7), host="192.0.2.2").num_flows == 0  # another exporter
    assert [(s.host, s.domain, s.templates, s.pending_sets) for s in decoder.exporters()] == [
        (HOST, 7, (260,), 0),
        (HOST, 8, (), 1),
        ("192.0.2.2", 7, (), 1),
    ]


def test_v9_uptime_times_wrap_modulo_2_32_to_just_before_the_export() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4), (22, 4), (21, 4))
    # softflowd replaying a pcap: flows from before its boot have "negative" uptimes.
    values: list[Value] = ["10.0.0.1", "10.0.0.2", 100, 2**32 - 5_000, 500]
    batch = decode(
        NetflowDecoder(), v9(template_set(9, [(260, fields)]), data_set(260, fields, [values]), uptime_ms=1000)
    )
    assert flow_rows(batch.flows) == [
        row(FlowStart=NOW * S - 6 * S, FlowEnd=NOW * S - 500 * MS, SrcAddr="10.0.0.1", DstAddr="10.0.0.2", Bytes=100)
    ]


def test_the_peers_scapy_recipe_decodes() -> None:
    """PEERS.md §3.2's packet, built by scapy's own record class."""
    f = [ScapyField(fieldType=t, fieldLength=n) for t, n in [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4),
                                                             (22, 4), (21, 4)]]  # fmt: skip
    tmpl = NetflowFlowsetV9(flowSetID=0, templates=[NetflowTemplateV9(templateID=260, template_fields=f, fieldCount=9)])
    record = GetNetflowRecordV9(tmpl)
    packet = NetflowHeader(version=9) / NetflowHeaderV9(count=2, sysUptime=100000, unixSecs=NOW, SourceID=7)
    packet = packet / tmpl / NetflowDataflowsetV9(templateID=260, records=[
        record(IPV4_SRC_ADDR="192.0.2.2", IPV4_DST_ADDR="198.51.100.8", L4_SRC_PORT=5353, L4_DST_PORT=53, PROTOCOL=17,
               IN_BYTES=700, IN_PKTS=7, FIRST_SWITCHED=95000, LAST_SWITCHED=99500)])  # fmt: skip
    batch = decode(NetflowDecoder(), bytes(packet))
    assert flow_rows(batch.flows) == [
        row(FlowStart=NOW * S - 5 * S, FlowEnd=NOW * S - 500 * MS, ObservationDomain=7, SrcAddr="192.0.2.2",
            DstAddr="198.51.100.8", SrcPort=5353, DstPort=53, Protocol=17, Bytes=700, Packets=7)
    ]  # fmt: skip


def test_padding_after_the_records_of_a_set_is_ignored() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4), (4, 1))  # 13-byte records
    data = data_set(260, fields, [["10.0.0.1", "10.0.0.2", 5, 6], ["10.0.0.3", "10.0.0.4", 7, 17]])
    assert len(data) == 4 + 26 + 2  # scapy pads to 4 bytes
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(260, fields)]), data + struct.pack("!HH", 260, 4 + 12)
                                           + bytes(12)))  # fmt: skip
    assert [(r["SrcAddr"], r["Bytes"], r["Protocol"]) for r in flow_rows(batch.flows)] == [
        ("10.0.0.1", 5, 6),
        ("10.0.0.3", 7, 17),
    ]
    assert batch.problems == []


# ---- held data -----------------------------------------------------------------------------------


def test_data_before_its_template_is_held_then_decoded_with_the_template() -> None:
    clock = Clock()
    decoder = NetflowDecoder(clock=clock)
    data = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 100)))
    first = decode(decoder, v9(data, uptime_ms=50_000, source_id=7), received_ns=RECEIVED - 3 * S)
    assert (first.num_flows, first.problems, first.given_up, status(decoder, 9, 7).pending_sets) == (0, [], 0, 1)
    clock.now += 3
    later = decode(decoder, v9(template_set(9, [(260, SMALL)]), uptime_ms=53_000, source_id=7))
    # The held records keep their own packet's receive time.
    assert flow_rows(later.flows) == [small("10.0.0.1", "10.0.0.2", 100, TimeReceived=RECEIVED - 3 * S,
                                            ObservationDomain=7)]  # fmt: skip
    assert (later.problems, later.given_up, status(decoder, 9, 7).pending_sets) == ([], 0, 0)
    assert status(decoder, 9, 7).flows == 1


def test_held_data_keeps_the_times_of_its_own_packet() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4), (22, 4), (21, 4))
    decoder = NetflowDecoder()
    decode(decoder, v9(data_set(260, fields, [["10.0.0.1", "10.0.0.2", 1, 40_000, 49_000]]), uptime_ms=50_000))
    batch = decode(decoder, v9(template_set(9, [(260, fields)]), uptime_ms=99_999_000))
    assert [(r["FlowStart"], r["FlowEnd"]) for r in flow_rows(batch.flows)] == [(NOW * S - 10 * S, NOW * S - 1 * S)]


def test_held_data_is_given_up_after_the_pending_timeout() -> None:
    clock = Clock()
    decoder = NetflowDecoder(NetflowConfig(pending_timeout_s=10.0), clock=clock)
    data = data_set(261, SMALL, small_records(("10.0.0.1", "10.0.0.2", 100), ("10.0.0.3", "10.0.0.4", 100)))
    decode(decoder, v9(data, source_id=7))
    decode(decoder, v9(data, source_id=7))
    clock.now += 9
    assert decoder.expire() == 0
    clock.now += 2
    batch = decode(decoder, v9(source_id=7))
    # The template was never seen, so its record length is unknown: each set counts as one.
    assert batch.given_up == 2
    message = f"{HOST} v9 domain 7: gave up a held data set for template 261: the template did not arrive within 10 s"
    assert batch.problems == [message, message]
    got = status(decoder, 9, 7)
    assert (got.given_up, got.pending_sets, got.malformed) == (2, 0, {"template_missing": 2})


def test_expire_estimates_given_up_records_from_a_template_seen_before() -> None:
    clock = Clock()
    decoder = NetflowDecoder(NetflowConfig(template_timeout_s=60.0, pending_timeout_s=10.0), clock=clock)
    decode(decoder, v9(template_set(9, [(260, SMALL)])))
    clock.now += 61
    assert decoder.expire() == 0
    assert status(decoder, 9).templates == ()
    records = small_records(*[("10.0.0.1", "10.0.0.2", n) for n in range(3)])
    assert decode(decoder, v9(data_set(260, SMALL, records))).num_flows == 0  # expired: held again
    assert decoder.expire(clock.now + 11) == 3  # 64 held bytes hold 3 records of SMALL's 21 bytes


def test_held_data_is_bounded_by_bytes_oldest_first() -> None:
    decoder = NetflowDecoder(NetflowConfig(max_pending_bytes=100))
    three = small_records(*[("10.0.0.1", "10.0.0.2", n) for n in range(3)])  # 63 bytes + 1 of padding
    assert decode(decoder, v9(data_set(300, SMALL, three))).given_up == 0
    batch = decode(decoder, v9(data_set(301, SMALL, three)))
    assert batch.given_up == 1
    assert batch.problems == [
        f"{HOST} v9: gave up a held data set for template 300: held data sets exceeded max_pending_bytes (100)"
    ]
    big = small_records(*[("10.0.0.1", "10.0.0.2", n) for n in range(7)])  # 147 bytes + 1
    batch = decode(decoder, v9(data_set(302, SMALL, big)))
    assert batch.problems == [
        f"{HOST} v9: gave up a held data set for template 302: its 148 bytes exceed max_pending_bytes (100)"
    ]
    # Template 301's set is still held and decodes when its template comes.
    assert decode(decoder, v9(template_set(9, [(301, SMALL)]))).num_flows == 3
    assert status(decoder, 9).given_up == 2


# ---- template refresh, withdrawal and expiry -----------------------------------------------------


def test_a_re_sent_template_with_other_fields_changes_decoding() -> None:
    decoder = NetflowDecoder()
    first: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4))
    second: tuple[Field, ...] = ((12, 4), (8, 4), (2, 4), (1, 8))
    a = decode(decoder, v9(template_set(9, [(260, first)]), data_set(260, first, [["10.0.0.1", "10.0.0.2", 10]])))
    b = decode(
        decoder, v9(template_set(9, [(260, second)]), data_set(260, second, [["10.0.0.2", "10.0.0.1", 3, 2**40]]))
    )
    assert flow_rows(a.flows) == [row(SrcAddr="10.0.0.1", DstAddr="10.0.0.2", Bytes=10)]
    assert flow_rows(b.flows) == [row(SrcAddr="10.0.0.1", DstAddr="10.0.0.2", Bytes=2**40, Packets=3)]
    assert status(decoder, 9).templates == (260,)


def test_ipfix_withdrawal_removes_a_template_and_id_2_removes_all() -> None:
    decoder = NetflowDecoder()
    decode(decoder, ipfix(template_set(10, [(300, SMALL), (301, SMALL), (302, SMALL)]), domain=1))
    assert status(decoder, 10, 1).templates == (300, 301, 302)
    decode(decoder, ipfix(withdrawal_set([300]), domain=1))
    assert status(decoder, 10, 1).templates == (301, 302)
    data = data_set(300, SMALL, small_records(("10.0.0.1", "10.0.0.2", 1)))
    assert decode(decoder, ipfix(data, domain=1)).num_flows == 0
    assert status(decoder, 10, 1).pending_sets == 1
    decode(decoder, ipfix(withdrawal_set([2]), domain=1))
    assert status(decoder, 10, 1).templates == ()


def test_templates_expire_when_not_refreshed() -> None:
    clock = Clock()
    decoder = NetflowDecoder(NetflowConfig(template_timeout_s=100.0), clock=clock)
    data = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 1)))
    decode(decoder, v9(template_set(9, [(260, SMALL)])))
    clock.now += 90
    decode(decoder, v9(template_set(9, [(260, SMALL)])))  # a refresh restarts the lifetime
    clock.now += 90
    assert decode(decoder, v9(data)).num_flows == 1
    clock.now += 11
    assert decode(decoder, v9(data)).num_flows == 0
    assert status(decoder, 9).templates == ()


# ---- sampling and options ------------------------------------------------------------------------


def test_v9_options_sampling_interval_sets_the_domain_rate() -> None:
    decoder = NetflowDecoder()
    # softflowd's options template: scope Interface(2)/4, options 34/4, 35/1, 82/16. The scope type 2
    # must not be read as IE 2, nor the scope value as a packet count.
    options = options_template_set(9, 256, [(2, 4)], [(34, 4), (35, 1), (82, 16)])
    option_data = data_set(256, [(2, 4), (34, 4), (35, 1), (82, 16)], [[0, 100, 1, b"eth0".ljust(16, b"\0")]])
    data = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 5)))
    batch = decode(decoder, v9(template_set(9, [(260, SMALL)]), options, option_data, data, source_id=3))
    assert flow_rows(batch.flows) == [small("10.0.0.1", "10.0.0.2", 5, ObservationDomain=3, SamplingRate=100)]
    got = status(decoder, 9, 3)
    assert (got.sampling_rate, got.options_templates, got.templates, got.flows) == (100, (256,), (260,), 1)


def test_v9_sampler_rates_apply_per_sampler_id_when_data_names_one() -> None:
    decoder = NetflowDecoder()
    options = options_template_set(9, 257, [(1, 4)], [(48, 1), (49, 1), (50, 4)])
    option_data = data_set(257, [(1, 4), (48, 1), (49, 1), (50, 4)], [[0, 1, 2, 10], [0, 2, 2, 1000]])
    fields = (*SMALL, (48, 1))
    data = data_set(270, fields, [[*r, sampler] for r, sampler in zip(small_records(*[("10.0.0.1", "10.0.0.2", 1)] * 3),
                                                                        (1, 2, 3), strict=True)])  # fmt: skip
    batch = decode(decoder, v9(options, option_data, template_set(9, [(270, fields)]), data))
    # An unknown sampler gets the domain's rate: the last one announced.
    assert [r["SamplingRate"] for r in flow_rows(batch.flows)] == [10, 1000, 1000]
    assert status(decoder, 9).sampler_rates == {1: 10, 2: 1000}


@pytest.mark.parametrize(
    ("options", "values", "rate"),
    [
        (((34, 4),), [64], 64),  # samplingInterval
        (((50, 4),), [64], 64),  # samplerRandomInterval
        (((305, 4), (306, 4)), [1, 63], 64),  # samplingPacketInterval and samplingPacketSpace
        (((305, 4), (306, 4)), [4, 4], 2),
        (((305, 4), (306, 4)), [1, 0], 1),  # softflowd's: unsampled
    ],
)
def test_ipfix_options_set_the_sampling_rate(options: tuple[Field, ...], values: list[Value], rate: int) -> None:
    decoder = NetflowDecoder()
    sets = [
        options_template_set(10, 256, [(143, 4)], options),
        data_set(256, [(143, 4), *options], [[1, *values]]),
        template_set(10, [(260, SMALL)]),
        data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 5))),
    ]
    batch = decode(decoder, ipfix(*sets, domain=4))
    assert [r["SamplingRate"] for r in flow_rows(batch.flows)] == [rate]
    assert status(decoder, 10, 4).sampling_rate == rate


def test_ipfix_system_init_time_anchors_uptime_times_even_when_sent_after_the_data() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4), (22, 4), (21, 4))
    init_ms = NOW * 1000 - 3_600_000  # booted an hour before the export
    options: tuple[Field, ...] = ((160, 8), (305, 4), (306, 4), (304, 2), (82, 16))  # softflowd's
    sets = [
        template_set(10, [(260, fields)]),
        options_template_set(10, 256, [(143, 4)], options),
        data_set(260, fields, [["10.0.0.1", "10.0.0.2", 1, 3_590_000, 3_599_000], ["10.0.0.3", "10.0.0.4", 2,
                                                                                   2**32 - 2000, 1000]]),
        data_set(256, [(143, 4), *options], [[7, init_ms, 1, 0, 1, b"flows.pcap".ljust(16, b"\0")]]),
    ]  # fmt: skip
    batch = decode(NetflowDecoder(), ipfix(*sets))
    assert [(r["FlowStart"], r["FlowEnd"]) for r in flow_rows(batch.flows)] == [
        (NOW * S - 10 * S, NOW * S - 1 * S),
        (init_ms * MS - 2 * S, init_ms * MS + 1 * S),  # started 2 s before the boot: a wrapped uptime
    ]


def test_ipfix_uptime_times_without_an_init_time_fall_back_to_the_export_time() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4), (22, 4), (21, 4))
    data = data_set(260, fields, [["10.0.0.1", "10.0.0.2", 1, 1000, 2000]])
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(260, fields)]), data))
    assert [(r["FlowStart"], r["FlowEnd"]) for r in flow_rows(batch.flows)] == [(NOW * S, NOW * S)]


# ---- field encodings -----------------------------------------------------------------------------


def test_ipfix_variable_length_and_enterprise_fields_are_skipped() -> None:
    fields: tuple[Field, ...] = ((8, 4), (82, VARIABLE), (1, 4, 32473), (12, 4), (300, VARIABLE), (7, 2), (11, 2),
                                 (1, 4), (2, 4), (4, 1))  # fmt: skip
    records: list[list[Value]] = [
        ["10.0.0.1", b"eth0", 999_999, "10.0.0.2", b"x" * 300, 1234, 80, 5000, 7, 6],  # 3-byte length prefix
        ["10.0.0.3", b"", 999_999, "10.0.0.4", b"y" * 254, 53, 5353, 100, 1, 17],
    ]
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(400, fields)]), data_set(400, fields, records), domain=9))
    common = {"FlowVersion": 10, "ObservationDomain": 9}
    assert flow_rows(batch.flows) == [
        row(SrcAddr="10.0.0.1", DstAddr="10.0.0.2", SrcPort=1234, DstPort=80, Protocol=6, Bytes=5000, Packets=7,
            **common),
        row(SrcAddr="10.0.0.3", DstAddr="10.0.0.4", SrcPort=53, DstPort=5353, Protocol=17, Bytes=100, Packets=1,
            **common),
    ]  # fmt: skip
    assert batch.problems == []


def test_ipfix_enterprise_fields_in_a_fixed_length_template_are_skipped() -> None:
    fields: tuple[Field, ...] = ((8, 4), (1, 4, 32473), (12, 4), (2, 2, 9), (1, 4), (2, 4))
    data = data_set(400, fields, [["10.0.0.1", 999, "10.0.0.2", 888, 5000, 7]])
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(400, fields)]), data))
    assert flow_rows(batch.flows) == [row(FlowVersion=10, SrcAddr="10.0.0.1", DstAddr="10.0.0.2", Bytes=5000,
                                          Packets=7)]  # fmt: skip


def test_ipv6_flows() -> None:
    values: list[Value] = ["2001:db8::1", "2001:db8:0:1::53", NOW * 1000 - 2000, NOW * 1000 - 1000, 900, 3, 1, 2, 0,
                           2, 40000, 53, 17, 0, 6, 0]  # fmt: skip
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(2048, SOFTFLOWD_V6)]), data_set(2048, SOFTFLOWD_V6,
                                                                                            [values])))  # fmt: skip
    assert flow_rows(batch.flows) == [
        row(FlowStart=NOW * S - 2 * S, FlowEnd=NOW * S - 1 * S, FlowVersion=10, SrcAddr="2001:db8::1",
            DstAddr="2001:db8:0:1::53", SrcPort=40000, DstPort=53, Protocol=17, InputInterface=1, OutputInterface=2,
            Bytes=900, Packets=3)
    ]  # fmt: skip


@pytest.mark.parametrize("length", range(1, 9))
def test_reduced_size_integers_of_any_length(length: int) -> None:
    top = 2 ** (8 * length) - 1
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, length), (2, length), (10, length), (16, length), (6, length))
    data = data_set(
        260, fields, [["10.0.0.1", "10.0.0.2", top, top - 1, 0x01020304 % (top + 1), top, 0x0112 % (top + 1)]]
    )
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(260, fields)]), data))
    (got,) = flow_rows(batch.flows)
    # Interfaces and ASes are 32-bit columns; TcpFlags keeps the low byte of a 2-byte field.
    expected = (top, top - 1, 0x01020304 % (top + 1) % 2**32, top % 2**32, 0x12 if length > 1 else 0x0112 % 256)
    assert (got["Bytes"], got["Packets"], got["InputInterface"], got["SrcAs"], got["TcpFlags"]) == expected


def _ntp(unix_ns: int) -> int:
    seconds, ns = divmod(unix_ns, S)
    return ((seconds + 2_208_988_800) % 2**32) << 32 | (ns << 32) // S


@pytest.mark.parametrize(
    ("fields", "start", "end", "start_ns", "end_ns"),
    [
        (((150, 4), (151, 4)), NOW - 2, NOW, NOW * S - 2 * S, NOW * S),  # dateTimeSeconds
        (((152, 8), (153, 8)), NOW * 1000 - 1750, NOW * 1000, NOW * S - 1750 * MS, NOW * S),  # dateTimeMilliseconds
        (((154, 8), (155, 8)), _ntp(NOW * S - 1750 * MS), _ntp(NOW * S + 3000), NOW * S - 1750 * MS, NOW * S + 3000),
        (((156, 8), (157, 8)), _ntp(NOW * S - 1750 * MS), _ntp(NOW * S + 1), NOW * S - 1750 * MS, NOW * S + 1),
    ],
    ids=["seconds", "milliseconds", "NTP microseconds", "NTP nanoseconds"],
)
def test_absolute_time_encodings(fields: tuple[Field, ...], start: int, end: int, start_ns: int, end_ns: int) -> None:
    template: tuple[Field, ...] = ((8, 4), (12, 4), *fields)
    data = data_set(260, template, [["10.0.0.1", "10.0.0.2", start, end]])
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(260, template)]), data))
    (got,) = flow_rows(batch.flows)
    assert (got["FlowStart"], got["FlowEnd"]) == (start_ns, end_ns)


def test_ntp_times_after_2036_use_the_next_era() -> None:
    in_2040 = 2_208_988_800 * S  # 2040-01-01
    template: tuple[Field, ...] = ((8, 4), (12, 4), (156, 8), (157, 8))
    data = data_set(260, template, [["10.0.0.1", "10.0.0.2", _ntp(in_2040), _ntp(in_2040)]])
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(260, template)]), data))
    assert flow_rows(batch.flows)[0]["FlowStart"] == in_2040


def test_icmp_type_and_code_go_in_the_destination_port() -> None:
    icmp: list[Value] = ["10.0.0.9", "10.0.1.10", NOW * 1000, NOW * 1000, 28, 1, 0, 0, 0, 2, 8 * 256, 1, 4, 0]
    ipfix_icmp: tuple[Field, ...] = ((8, 4), (12, 4), (4, 1), (176, 1), (177, 1))
    batch = decode(NetflowDecoder(), v9(template_set(9, [(1025, SOFTFLOWD_ICMP)]), data_set(1025, SOFTFLOWD_ICMP,
                                                                                          [icmp])))  # fmt: skip
    assert [(r["SrcPort"], r["DstPort"], r["Protocol"]) for r in flow_rows(batch.flows)] == [(0, 2048, 1)]
    data = data_set(260, ipfix_icmp, [["10.0.0.9", "10.0.1.10", 1, 3, 1]])
    batch = decode(NetflowDecoder(), ipfix(template_set(10, [(260, ipfix_icmp)]), data))
    assert [r["DstPort"] for r in flow_rows(batch.flows)] == [3 * 256 + 1]


@pytest.mark.parametrize(
    ("counters", "version"),
    [(((85, 8), (86, 8)), 10), (((23, 4), (24, 4)), 9)],  # octet/packetTotalCount; v9 OUT_BYTES/OUT_PKTS
)
def test_counter_fallbacks_when_delta_counts_are_absent(counters: tuple[Field, ...], version: int) -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), *counters)
    sets = (template_set(version, [(260, fields)]), data_set(260, fields, [["10.0.0.1", "10.0.0.2", 4000, 4]]))
    batch = decode(NetflowDecoder(), v9(*sets) if version == 9 else ipfix(*sets))
    assert [(r["Bytes"], r["Packets"]) for r in flow_rows(batch.flows)] == [(4000, 4)]


# ---- malformed input -----------------------------------------------------------------------------

GOOD = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 100)))


def _after_good(version: int, *bad: bytes, **header: int) -> bytes:
    return v9(GOOD, *bad, **header) if version == 9 else ipfix(GOOD, *bad, **header)


MALFORMED_SETS = [
    pytest.param(9, struct.pack("!HH", 300, 0), "set_length", "data set 300 has length 0, less than its header",
                 id="zero-length set"),
    pytest.param(9, struct.pack("!HH", 300, 512) + bytes(384), "set_length",
                 "data set 300 is longer than the packet (512 > 388 bytes)", id="set beyond the packet"),
    pytest.param(10, struct.pack("!HH", 2, 3), "set_length", "template set 2 has length 3, less than its header",
                 id="set shorter than its header"),
    pytest.param(9, template_set(9, [(261, [(8, 4), (1, 0)])]), "bad_template", "template 261 gives element 1 length 0",
                 id="zero-length field"),
    pytest.param(9, template_set(9, [(200, SMALL)]), "bad_template", "template id 200 is below 256",
                 id="template id below 256"),
    pytest.param(9, template_set(9, [(261, [(8, VARIABLE)])]), "bad_template",
                 "template 261 gives element 8 length 65535 (variable length is IPFIX only)",
                 id="v9 variable length"),
    pytest.param(9, struct.pack("!HHHH", 0, 12, 261, 5) + struct.pack("!HH", 8, 4), "bad_template",
                 "template 261 runs past the end of its set", id="template past its set"),
    pytest.param(9, struct.pack("!HHHH", 0, 8, 261, 0), "bad_template", "template 261 has no fields",
                 id="v9 template without fields"),
    pytest.param(9, options_template_set(9, 256, [(1, 3)], [(34, 4)])[:6] + struct.pack("!H", 3)
                 + options_template_set(9, 256, [(1, 3)], [(34, 4)])[8:], "bad_template",
                 "options template 256 has scope length 3 and option length 4 (non-zero multiples of 4 expected)",
                 id="v9 options lengths"),
    pytest.param(10, options_template_set(10, 256, [], [(34, 4)]), "bad_template",
                 "options template 256 has 0 scope fields of 1 (1 or more expected)", id="ipfix options scope count"),
    pytest.param(10, struct.pack("!HH", 7, 8) + bytes(4), "reserved_set", "set id 7 is reserved (skipped 8 bytes)",
                 id="reserved set id"),
    pytest.param(9, b"\x01\x02", "truncated", "2 bytes after the last set are too few for a set",
                 id="bytes after the last set"),
]  # fmt: skip


@pytest.mark.parametrize(("version", "bad", "category", "message"), MALFORMED_SETS)
def test_a_malformed_set_is_reported_and_the_valid_set_before_it_kept(
    version: int, bad: bytes, category: str, message: str
) -> None:
    decoder = NetflowDecoder()
    decode(decoder, v9(template_set(9, [(260, SMALL)])) if version == 9 else ipfix(template_set(10, [(260, SMALL)])))
    batch = decode(decoder, _after_good(version, bad))
    assert flow_rows(batch.flows) == [small("10.0.0.1", "10.0.0.2", 100, FlowVersion=version)]
    assert batch.problems == [f"{HOST} v{version}: {message}"]
    assert status(decoder, version).malformed == {category: 1}


def test_a_bad_template_does_not_stop_the_good_ones_after_it_in_its_set() -> None:
    decoder = NetflowDecoder()
    batch = decode(decoder, v9(template_set(9, [(261, [(8, 4), (1, 0)]), (262, SMALL)])))
    assert batch.problems == [f"{HOST} v9: template 261 gives element 1 length 0"]
    assert status(decoder, 9).templates == (262,)


def test_a_variable_length_record_past_its_set_keeps_the_records_before_it() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (82, VARIABLE), (1, 4))
    good = data_set(400, fields, [["10.0.0.1", "10.0.0.2", b"eth0", 5]], pad=False)
    # A second record whose name claims 200 bytes; the set ends first.
    bad = good + bytes([10, 0, 0, 3, 10, 0, 0, 4, 200]) + b"x" * 10
    bad = struct.pack("!HH", 400, len(bad)) + bad[4:]
    decoder = NetflowDecoder()
    batch = decode(decoder, ipfix(template_set(10, [(400, fields)]), bad))
    assert [(r["SrcAddr"], r["Bytes"]) for r in flow_rows(batch.flows)] == [("10.0.0.1", 5)]
    assert batch.problems == [f"{HOST} v10: a record of template 400 runs past its data set"]
    assert status(decoder, 10).malformed == {"bad_record": 1}


def test_an_ipfix_length_beyond_the_packet_keeps_the_whole_sets() -> None:
    decoder = NetflowDecoder()
    decode(decoder, ipfix(template_set(10, [(260, SMALL)])))
    packet = ipfix(GOOD, GOOD)
    batch = decode(decoder, packet[: len(packet) - 4])
    assert batch.num_flows == 1
    assert batch.problems == [
        f"{HOST} v10: the header says {len(packet)} bytes but the packet has {len(packet) - 4}",
        f"{HOST} v10: data set 260 is longer than the packet ({len(GOOD)} > {len(GOOD) - 4} bytes)",
    ]
    assert status(decoder, 10).malformed == {"truncated": 1, "set_length": 1}


def test_an_ipfix_length_shorter_than_its_header_is_reported() -> None:
    decoder = NetflowDecoder()
    decode(decoder, ipfix(template_set(10, [(260, SMALL)])))
    packet = bytearray(ipfix(GOOD))
    packet[2:4] = struct.pack("!H", 12)
    batch = decode(decoder, bytes(packet))
    assert batch.num_flows == 1  # the sets are read to the end of the datagram
    assert batch.problems == [f"{HOST} v10: the message length 12 is shorter than the 16-byte header"]


@pytest.mark.parametrize(
    ("packet", "version", "category", "message"),
    [
        (b"", 0, "truncated", "a 0-byte packet has no version"),
        (b"\x00", 0, "truncated", "a 1-byte packet has no version"),
        (b"\x00\x07" + bytes(30), 0, "bad_version", "unknown version 7 (NetFlow v5, v9 and IPFIX are decoded)"),
        (b"\x00\x05" + bytes(20), 5, "truncated", "22 bytes are shorter than the 24-byte header"),
        (b"\x00\x09" + bytes(10), 9, "truncated", "12 bytes are shorter than the 20-byte header"),
        (b"\x00\x0a" + bytes(10), 10, "truncated", "12 bytes are shorter than the 16-byte header"),
    ],
)
def test_short_packets_and_unknown_versions_are_reported(
    packet: bytes, version: int, category: str, message: str
) -> None:
    decoder = NetflowDecoder()
    batch = decode(decoder, packet)
    assert (batch.num_flows, batch.problems) == (0, [f"{HOST} v{version}: {message}"])
    assert status(decoder, version).malformed == {category: 1}


def test_problem_categories_are_the_documented_ones() -> None:
    assert PROBLEM_CATEGORIES == ("truncated", "bad_version", "bad_length", "set_length", "reserved_set",
                                  "bad_template", "bad_record", "template_missing", "too_many_templates",
                                  "internal")  # fmt: skip


# ---- many datagrams at once ---------------------------------------------------------------------


def test_a_batch_of_datagrams_is_one_record_batch_grouped_by_template_and_version() -> None:
    decoder = NetflowDecoder()
    templates = [(v9(template_set(9, [(260, SMALL)])), host) for host in (HOST, "192.0.2.2")]
    for packet, host in [*templates, (ipfix(template_set(10, [(260, SMALL)])), HOST)]:
        decode(decoder, packet, host=host)
    one = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 100)))
    v5 = v5_packet([V5Record(src="10.0.0.5", dst="10.0.0.6", bytes=500, first=1000, last=1000)], uptime_ms=1000,
                   unix_secs=NOW)  # fmt: skip
    batch = decoder.decode_many([
        (v9(one, uptime_ms=1000), EXPORTER, RECEIVED),
        (v5, EXPORTER, RECEIVED + 1),
        (ipfix(one), EXPORTER, RECEIVED + 2),
        (v9(one, uptime_ms=1000), exporter_key("192.0.2.2"), RECEIVED + 3),
    ])  # fmt: skip
    # The records of one template and version become columns together, whichever packet they came in.
    assert flow_rows(batch.flows) == [
        small("10.0.0.1", "10.0.0.2", 100),
        small("10.0.0.1", "10.0.0.2", 100, TimeReceived=RECEIVED + 3, Exporter="192.0.2.2"),
        row(
            TimeReceived=RECEIVED + 1,
            FlowVersion=5,
            SrcAddr="10.0.0.5",
            DstAddr="10.0.0.6",
            Protocol=6,
            Bytes=500,
            Packets=1,
        ),
        small("10.0.0.1", "10.0.0.2", 100, TimeReceived=RECEIVED + 2, FlowVersion=10),
    ]
    assert batch.flows.schema.equals(FLOWS_ARROW_SCHEMA)
    assert len(batch.flows.to_batches()) == 1
    assert (batch.problems, batch.given_up) == ([], 0)


def test_options_later_in_a_batch_apply_only_to_the_packets_after_them() -> None:
    decoder = NetflowDecoder()
    options = options_template_set(9, 256, [(1, 4)], [(34, 4)])
    data = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 5)))
    batch = decoder.decode_many([
        (v9(template_set(9, [(260, SMALL)]), data), EXPORTER, RECEIVED),
        (v9(options, data_set(256, [(1, 4), (34, 4)], [[0, 100]])), EXPORTER, RECEIVED),
        (v9(data), EXPORTER, RECEIVED),
    ])  # fmt: skip
    assert [r["SamplingRate"] for r in flow_rows(batch.flows)] == [1, 100]


def test_an_ipfix_init_time_later_in_a_batch_anchors_only_the_packets_after_it() -> None:
    fields: tuple[Field, ...] = ((8, 4), (12, 4), (1, 4), (22, 4), (21, 4))
    init_ms = NOW * 1000 - 3_600_000
    options = options_template_set(10, 256, [(143, 4)], [(160, 8)])
    data = data_set(260, fields, [["10.0.0.1", "10.0.0.2", 1, 3_590_000, 3_599_000]])
    batch = NetflowDecoder().decode_many([
        (ipfix(template_set(10, [(260, fields)]), options, data), EXPORTER, RECEIVED),
        (ipfix(data_set(256, [(143, 4), (160, 8)], [[1, init_ms]])), EXPORTER, RECEIVED),
        (ipfix(data), EXPORTER, RECEIVED),
    ])  # fmt: skip
    assert [(r["FlowStart"], r["FlowEnd"]) for r in flow_rows(batch.flows)] == [
        (NOW * S, NOW * S),  # no init time yet: the export time
        (NOW * S - 10 * S, NOW * S - 1 * S),
    ]


# ---- exporter status -----------------------------------------------------------------------------


def test_exporters_report_traffic_templates_sampling_and_sequence_gaps() -> None:
    clock = Clock(1000.0)
    decoder = NetflowDecoder(clock=clock)
    options = options_template_set(10, 256, [(143, 4)], [(305, 4), (306, 4)])
    option_data = data_set(256, [(143, 4), (305, 4), (306, 4)], [[1, 1, 9]])
    two = data_set(260, SMALL, small_records(("10.0.0.1", "10.0.0.2", 1), ("10.0.0.3", "10.0.0.4", 2)))
    decode(decoder, ipfix(template_set(10, [(260, SMALL)]), options, option_data, two, domain=5, sequence=100))
    clock.now = 1001.0
    decode(decoder, ipfix(two, domain=5, sequence=103))  # 100 + 1 options record + 2 flows: in order
    clock.now = 1002.0
    decode(decoder, ipfix(two, domain=5, sequence=110))  # 105 expected: a gap
    decode(decoder, ipfix(struct.pack("!HH", 260, 2), domain=5, sequence=112))
    assert decoder.exporters() == [
        ExporterStatus(exporter=EXPORTER, host=HOST, version=10, domain=5, first_seen=1000.0, last_seen=1002.0,
                       packets=4, flows=6, malformed={"set_length": 1}, templates=(260,), options_templates=(256,),
                       pending_sets=0, given_up=0, sampling_rate=10, sampler_rates={}, sequence_gaps=1)
    ]  # fmt: skip


# ---- never raises --------------------------------------------------------------------------------


def _valid_packets() -> list[bytes]:
    fields: tuple[Field, ...] = ((8, 4), (82, VARIABLE), (1, 4, 32473), (12, 4), (1, 3), (2, 5), (22, 4), (21, 4))
    options = options_template_set(10, 256, [(143, 4)], [(160, 8), (305, 4), (306, 4)])
    return [
        v5_packet([V5Record(src="10.0.0.1", dst="10.0.0.2")] * 3, uptime_ms=1000, unix_secs=NOW, sampling=7),
        v9(template_set(9, [(260, SMALL), (1024, SOFTFLOWD_V4_UPTIME)]), GOOD,
           options_template_set(9, 257, [(1, 4)], [(48, 1), (50, 4)]), data_set(257, [(1, 4), (48, 1), (50, 4)],
                                                                              [[0, 1, 10]])),
        ipfix(template_set(10, [(400, fields), (260, SMALL)]), options,
              data_set(256, [(143, 4), (160, 8), (305, 4), (306, 4)], [[1, NOW * 1000, 1, 1]]),
              data_set(400, fields, [["10.0.0.1", b"eth0", 1, "10.0.0.2", 5, 6, 100, 200]] * 2), GOOD),
    ]  # fmt: skip


VALID = _valid_packets()


def _check(decoder: NetflowDecoder, packet: bytes) -> None:
    batch = decoder.decode(packet, EXPORTER, RECEIVED)
    assert batch.flows.schema.equals(FLOWS_ARROW_SCHEMA)
    assert all(" decoder error " not in p for p in batch.problems), batch.problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from([b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a"]))
def test_arbitrary_bytes_never_raise(data: bytes, version: bytes) -> None:
    decoder = NetflowDecoder()
    for packet in VALID:  # with templates known, garbage reaches the data set decoders too
        _check(decoder, packet)
    _check(decoder, version + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(VALID))),
    st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)), max_size=6),
    st.integers(0, 1500),
)
def test_mutated_valid_packets_never_raise(which: int, changes: list[tuple[int, int]], keep: int) -> None:
    decoder = NetflowDecoder(NetflowConfig(max_pending_bytes=200))
    packet = bytearray(VALID[which])
    for offset, value in changes:
        if offset < len(packet):
            packet[offset] = value
    mutated = bytes(packet[: max(keep, 2)])
    _check(decoder, mutated)  # the templates may be the mutated ones
    for valid in VALID:
        _check(decoder, valid)
    _check(decoder, mutated)
    decoder.expire(time.time() + 3600)
    assert all("internal" not in s.malformed for s in decoder.exporters())


def _row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(v) for v in r.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(range(len(VALID))), st.lists(st.tuples(st.integers(0, 1500),
                                                                                 st.integers(0, 255)), max_size=3),
                          st.sampled_from([HOST, "192.0.2.2"])), max_size=8))  # fmt: skip
def test_a_batch_decodes_to_the_rows_and_problems_of_its_datagrams_one_at_a_time(
    picks: list[tuple[int, list[tuple[int, int]], str]],
) -> None:
    datagrams = []
    for i, (which, changes, host) in enumerate(picks):
        packet = bytearray(VALID[which])
        for at, value in changes:
            if at < len(packet):
                packet[at] = value
        datagrams.append((bytes(packet), exporter_key(host), RECEIVED + i))
    one_by_one, batched = NetflowDecoder(clock=Clock()), NetflowDecoder(clock=Clock())
    singles = [one_by_one.decode(*datagram) for datagram in datagrams]
    batch = batched.decode_many(datagrams)
    # Rows come grouped by template and version, so compare them as multisets.
    expected = sorted((r for single in singles for r in flow_rows(single.flows)), key=_row_key)
    assert sorted(flow_rows(batch.flows), key=_row_key) == expected
    assert batch.problems == [p for single in singles for p in single.problems]
    assert batched.exporters() == one_by_one.exporters()


# ---- real softflowd ------------------------------------------------------------------------------

needs_softflowd = pytest.mark.skipif(
    shutil.which("softflowd") is None or shutil.which("softflowctl") is None,
    reason="softflowd is not installed (apt-get install softflowd)",
)


@pytest.fixture(scope="module")
def pcap_flows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PcapFlow]]:
    path = tmp_path_factory.mktemp("pcap") / "flows.pcap"
    return path, write_flows_pcap(path, int(time.time()) - 120)


@needs_softflowd
@pytest.mark.slow
@pytest.mark.parametrize(
    ("version", "args"),
    [(5, ()), (9, ("-A", "milli")), (10, ("-A", "milli")), (9, ())],
    ids=["v5", "v9 absolute ms", "ipfix absolute ms", "v9 uptime"],
)
def test_softflowd_flows_match_the_pcap(
    pcap_flows: tuple[Path, list[PcapFlow]], version: int, args: tuple[str, ...]
) -> None:
    pcap, expected = pcap_flows
    datagrams = softflowd_datagrams(pcap, version, *args)
    decoder = NetflowDecoder()
    rows: list[dict[str, Any]] = []
    for datagram in datagrams:
        batch = decoder.decode(datagram, exporter_key("127.0.0.1"), time.time_ns())
        assert batch.problems == []
        rows += flow_rows(batch.flows)

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["SrcAddr"], r["DstAddr"], r["SrcPort"], r["DstPort"], r["Protocol"])

    got = sorted((*key(r), r["Bytes"], r["Packets"], r["TcpFlags"]) for r in rows)
    assert got == sorted((f.src, f.dst, f.sport, f.dport, f.proto, f.bytes, f.packets, f.tcp_flags) for f in expected)
    assert {(r["FlowVersion"], r["Exporter"], r["SamplingRate"]) for r in rows} == {(version, "127.0.0.1", 1)}
    # softflowd keeps a conversation as one flow and gives both directions its first and last times.
    times: dict[frozenset[tuple[str, int]], tuple[int, int]] = {}
    for f in expected:
        ends = frozenset({(f.src, f.sport), (f.dst, f.dport)})
        first, last = times.get(ends, (f.first_ns, f.last_ns))
        times[ends] = (min(first, f.first_ns), max(last, f.last_ns))
    for r in rows:
        first, last = times[frozenset({(r["SrcAddr"], r["SrcPort"]), (r["DstAddr"], r["DstPort"])})]
        if args:  # absolute milliseconds: the pcap's times, exactly
            assert (r["FlowStart"], r["FlowEnd"]) == (first // MS * MS, last // MS * MS)
        else:
            # sysUptime-relative: the export header has whole seconds, so within a second or so, and
            # in any case not 49.7 days away (the wrap of a uint32 of milliseconds).
            assert abs(r["FlowStart"] - first) < 2 * S
            assert abs(r["FlowStart"] - r["TimeReceived"]) < 86_400 * S
            assert abs((r["FlowEnd"] - r["FlowStart"]) - (last - first)) <= 1 * MS


def test_the_least_recently_seen_domain_makes_room_at_the_domain_cap() -> None:
    decoder = NetflowDecoder(NetflowConfig(max_domains=2), clock=iter([1.0, 2.0, 3.0, 4.0]).__next__)
    for source_id in (1, 2):
        decode(decoder, v9(template_set(9, [(260, SMALL)]), source_id=source_id))
    decode(decoder, v9(template_set(9, [(260, SMALL)]), source_id=1))  # domain 1 seen again: 2 is the oldest
    decode(decoder, v9(template_set(9, [(260, SMALL)]), source_id=3))
    assert [(s.domain, s.templates) for s in decoder.exporters()] == [(1, (260,)), (3, (260,))]
    assert decoder.evicted_domains == 1


def test_a_new_template_beyond_the_per_domain_cap_is_refused_and_counted() -> None:
    decoder = NetflowDecoder(NetflowConfig(max_templates_per_domain=2))
    batch = decode(decoder, v9(template_set(9, [(260, SMALL), (261, SMALL), (262, SMALL)])))
    assert batch.problems == [f"{HOST} v9: template 262 refused: the domain already has 2"]
    # A template already held may still be refreshed or replaced at the cap.
    assert decode(decoder, v9(template_set(9, [(261, FULL_V9)]))).problems == []
    (status,) = decoder.exporters()
    assert (status.templates, status.malformed) == ((260, 261), {"too_many_templates": 1})
