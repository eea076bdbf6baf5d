"""Flow enrichment: prefix files, longest-prefix lookups, enriched flow batches, and reloading."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import logging
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.collector.enrich import Match, PrefixFileError, PrefixMap, ReloadingPrefixMap, enrich
from vigil.errors import ConfigError
from vigil.store.schema import FLOWS_ARROW_SCHEMA

ENRICHED = ("SrcPrefix", "SrcCustomer", "SrcSite", "DstPrefix", "DstCustomer", "DstSite")

NESTED_CSV = """\
cidr,customer,site
10.0.0.0/8,acme,
10.1.0.0/16,acme,paris
10.1.2.0/24,globex,lyon
2001:db8::/32,initech,berlin
2001:db8:1::/48,initech,munich
"""


def addr(text: str) -> bytes:
    """An address as flows store it: 16 bytes, IPv4 mapped as ::ffff:a.b.c.d."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def csv_map(text: str) -> PrefixMap:
    return PrefixMap.from_text(text, fmt="csv", source="p.csv")


def flows(src: list[bytes | None], dst: list[bytes | None], enriched: str = "") -> pa.Table:
    """Flow rows with the given addresses; every other column a fixed value, enrichment columns `enriched`."""
    n = len(src)
    columns: list[pa.Array] = []
    for field in FLOWS_ARROW_SCHEMA:
        if field.name == "SrcAddr":
            columns.append(pa.array(src, field.type))
        elif field.name == "DstAddr":
            columns.append(pa.array(dst, field.type))
        elif field.name == "Exporter":
            columns.append(pa.array([addr("192.0.2.1")] * n, field.type))
        elif pa.types.is_string(field.type):
            columns.append(pa.array([enriched] * n, field.type))
        else:
            columns.append(pa.array([i % 200 for i in range(n)], pa.int64()).cast(field.type))
    return pa.Table.from_arrays(columns, schema=FLOWS_ARROW_SCHEMA)


def tags(table: pa.Table) -> list[tuple[str, ...]]:
    return list(zip(*(table.column(name).to_pylist() for name in ENRICHED), strict=True))


# Lookups


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.1.2.3", Match("10.1.2.0/24", "globex", "lyon")),
        ("10.1.2.255", Match("10.1.2.0/24", "globex", "lyon")),
        ("10.1.3.0", Match("10.1.0.0/16", "acme", "paris")),
        ("10.1.255.255", Match("10.1.0.0/16", "acme", "paris")),
        ("10.2.0.1", Match("10.0.0.0/8", "acme", "")),
        ("10.0.0.0", Match("10.0.0.0/8", "acme", "")),
        ("11.0.0.0", None),
        ("9.255.255.255", None),
    ],
)
def test_longest_prefix_wins(address: str, expected: Match | None) -> None:
    assert csv_map(NESTED_CSV).lookup(addr(address)) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("2001:db8:1::1", Match("2001:db8:1::/48", "initech", "munich")),
        ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", Match("2001:db8:1::/48", "initech", "munich")),
        ("2001:db8:2::1", Match("2001:db8::/32", "initech", "berlin")),
        ("2001:db9::1", None),
        ("::1", None),
    ],
)
def test_ipv6_prefixes(address: str, expected: Match | None) -> None:
    assert csv_map(NESTED_CSV).lookup(addr(address)) == expected


def test_prefixes_are_shown_normalised() -> None:
    prefixes = csv_map("cidr,customer,site\n2001:0DB8:0000::/32,a,b\n10.0.0.0/255.255.0.0,c,d\n")
    assert prefixes.lookup(addr("2001:db8::5")) == Match("2001:db8::/32", "a", "b")
    assert prefixes.lookup(addr("10.0.1.1")) == Match("10.0.0.0/16", "c", "d")


def test_ipv4_prefixes_match_ipv4_mapped_addresses_only() -> None:
    prefixes = csv_map("cidr,customer,site\n0.0.0.0/0,any4,\n::/0,any6,\n10.0.0.0/8,ten,\n")
    assert prefixes.lookup(addr("10.9.9.9")) == Match("10.0.0.0/8", "ten", "")
    assert prefixes.lookup(addr("192.0.2.1")) == Match("0.0.0.0/0", "any4", "")
    # IPv6 ::/0 holds ::ffff:0:0/96 as bytes, but IPv6 prefixes are for IPv6 traffic.
    assert prefixes.lookup(addr("::ffff:192.0.2.1")) == Match("0.0.0.0/0", "any4", "")
    # The deprecated IPv4-compatible form is IPv6, not IPv4.
    assert prefixes.lookup(addr("::10.9.9.9")) == Match("::/0", "any6", "")
    assert prefixes.lookup(addr("2001:db8::1")) == Match("::/0", "any6", "")


def test_host_prefixes() -> None:
    prefixes = csv_map("cidr,customer,site\n10.0.0.0/8,net,\n10.0.0.7/32,host,\n2001:db8::7/128,host6,\n")
    assert prefixes.lookup(addr("10.0.0.7")) == Match("10.0.0.7/32", "host", "")
    assert prefixes.lookup(addr("10.0.0.8")) == Match("10.0.0.0/8", "net", "")
    assert prefixes.lookup(addr("2001:db8::7")) == Match("2001:db8::7/128", "host6", "")
    assert prefixes.lookup(addr("2001:db8::8")) is None


def test_lookup_takes_16_bytes() -> None:
    with pytest.raises(ValueError, match="addresses are 16 bytes \\(IPv4 mapped into IPv6\\), got 4"):
        csv_map(NESTED_CSV).lookup(bytes([10, 1, 2, 3]))


def test_len_and_empty() -> None:
    assert len(csv_map(NESTED_CSV)) == 5
    assert len(PrefixMap.empty()) == 0
    assert PrefixMap.empty().lookup(addr("10.0.0.1")) is None
    assert repr(csv_map(NESTED_CSV)) == "<PrefixMap of 5 prefixes>"


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Bases near which generated prefixes and addresses cluster, so that prefixes nest and share ends.
_V4_BASES = (0, 0x0A000000, 0x0A010200, 0xC0000200, 0xFFFFFF00)
_V6_BASES = (0, 0x20010DB8 << 96, (0x20010DB8 << 96) | (1 << 80), 0xFFFF << 32, 2**128 - 256)


@st.composite
def _networks(draw: st.DrawFn) -> _Network:
    if draw(st.booleans()):
        base, length = draw(st.sampled_from(_V4_BASES)), draw(st.integers(0, 32))
        return ipaddress.IPv4Network((base ^ draw(st.integers(0, 255)), length), strict=False)
    base, length = draw(st.sampled_from(_V6_BASES)), draw(st.integers(0, 128))
    network = ipaddress.IPv6Network((base ^ draw(st.integers(0, 2**16)), length), strict=False)
    # The prefix file refuses IPv4-mapped IPv6 prefixes (write them as IPv4); so does this.
    return ipaddress.IPv6Network("2001:db8::/32") if network.network_address.ipv4_mapped else network


def _longest(entries: list[tuple[_Network, Match]], address16: bytes) -> Match | None:
    """Every prefix tried in turn: IPv4 prefixes hold IPv4-mapped addresses, IPv6 prefixes the others."""
    address = ipaddress.IPv6Address(address16)
    v4 = address.ipv4_mapped
    held = [(n.prefixlen, m) for n, m in entries if (v4 is None) == (n.version == 6) and (v4 or address) in n]
    return max(held, key=lambda found: found[0])[1] if held else None


@settings(max_examples=300, deadline=None)
@given(st.lists(_networks(), max_size=12), st.lists(st.integers(0, 2**128 - 1), max_size=20))
def test_lookups_and_batch_tags_agree_with_trying_every_prefix(networks: list[_Network], numbers: list[int]) -> None:
    unique = list(dict.fromkeys(networks))
    entries = [(n, Match(str(n), f"c{i}", f"s{i}")) for i, n in enumerate(unique)]
    prefixes = PrefixMap(entries)
    # Both ends of every prefix and their neighbours, as IPv4-mapped and IPv6 addresses, and random ones.
    edges = [int(n.network_address) for n in unique] + [int(n.broadcast_address) for n in unique]
    candidates = {x for e in edges for x in (e - 1, e, e + 1)} | set(numbers)
    addresses = [x.to_bytes(16, "big") for x in sorted(candidates) if 0 <= x < 2**128]
    addresses += [(0xFFFF << 32 | x).to_bytes(16, "big") for x in sorted(candidates) if 0 <= x < 2**32]
    expected = [_longest(entries, a) for a in addresses]
    assert [prefixes.lookup(a) for a in addresses] == expected
    prefix, customer, site = prefixes.tag(pa.array(addresses, pa.binary(16)))
    assert list(zip(prefix.to_pylist(), customer.to_pylist(), site.to_pylist(), strict=True)) == [
        ("", "", "") if m is None else (m.prefix, m.customer, m.site) for m in expected
    ]


# Enriching flows


def test_enrich_tags_both_ends() -> None:
    table = flows(
        [addr("10.1.2.3"), addr("10.1.9.9"), addr("192.0.2.1"), addr("2001:db8:1::1"), None],
        [addr("2001:db8:9::1"), addr("10.1.2.3"), addr("10.200.0.1"), addr("198.51.100.1"), addr("10.1.2.4")],
    )
    out = enrich(table, csv_map(NESTED_CSV))
    assert out.schema.equals(FLOWS_ARROW_SCHEMA)
    assert tags(out) == [
        ("10.1.2.0/24", "globex", "lyon", "2001:db8::/32", "initech", "berlin"),
        ("10.1.0.0/16", "acme", "paris", "10.1.2.0/24", "globex", "lyon"),
        ("", "", "", "10.0.0.0/8", "acme", ""),
        ("2001:db8:1::/48", "initech", "munich", "", "", ""),
        ("", "", "", "10.1.2.0/24", "globex", "lyon"),
    ]
    untouched = [f.name for f in FLOWS_ARROW_SCHEMA if f.name not in ENRICHED]
    assert out.select(untouched).equals(table.select(untouched))


def test_enrich_replaces_previous_values_and_keeps_chunks_apart() -> None:
    prefixes = csv_map(NESTED_CSV)
    first = flows([addr("10.1.2.3")] * 3, [addr("11.0.0.1")] * 3, enriched="stale")
    second = flows([addr("11.0.0.1"), addr("10.1.2.3")], [addr("10.5.0.0"), addr("10.1.2.3")], enriched="stale")
    out = enrich(pa.concat_tables([first, second]), prefixes)
    assert out.schema.equals(FLOWS_ARROW_SCHEMA)
    assert tags(out) == [
        *[("10.1.2.0/24", "globex", "lyon", "", "", "")] * 3,
        ("", "", "", "10.0.0.0/8", "acme", ""),
        ("10.1.2.0/24", "globex", "lyon", "10.1.2.0/24", "globex", "lyon"),
    ]


def test_enrich_with_no_prefixes_or_no_rows() -> None:
    table = flows([addr("10.1.2.3"), None], [addr("2001:db8::1"), addr("10.0.0.1")], enriched="stale")
    out = enrich(table, PrefixMap.empty())
    assert out.schema.equals(FLOWS_ARROW_SCHEMA)
    assert tags(out) == [("",) * 6] * 2
    empty = enrich(flows([], []), csv_map(NESTED_CSV))
    assert empty.schema.equals(FLOWS_ARROW_SCHEMA)
    assert empty.num_rows == 0


def test_enrich_takes_flow_rows_only() -> None:
    with pytest.raises(ValueError, match="enrich takes flow rows in FLOWS_ARROW_SCHEMA"):
        enrich(flows([addr("10.0.0.1")], [addr("10.0.0.2")]).drop_columns(["Tos"]), PrefixMap.empty())


def test_enrich_many_rows_few_addresses() -> None:
    pool = [addr(f"10.1.{i % 4}.{i}") for i in range(50)] + [addr(f"2001:db8:1::{i:x}") for i in range(50)]
    src = [pool[(i * 7) % len(pool)] for i in range(5000)]
    dst = [pool[(i * 13) % len(pool)] for i in range(5000)]
    prefixes = csv_map(NESTED_CSV)
    out = enrich(flows(list(src), list(dst)), prefixes)

    def expected(address: bytes) -> tuple[str, str, str]:
        match = prefixes.lookup(address)
        return ("", "", "") if match is None else (match.prefix, match.customer, match.site)

    assert tags(out) == [expected(s) + expected(d) for s, d in zip(src, dst, strict=True)]


# File formats


def test_csv_format() -> None:
    text = (
        "\ufeff# customers and sites\n"
        "\n"
        "Site, CIDR ,customer\n"
        "  # indented comment\n"
        'lyon,10.1.0.0/16,"Acme, Inc."\n'
        ",10.2.0.0/16,\n"
        '"paris #2",2001:db8::/32,initech\n'
    )
    prefixes = csv_map(text)
    assert len(prefixes) == 3
    assert prefixes.lookup(addr("10.1.0.1")) == Match("10.1.0.0/16", "Acme, Inc.", "lyon")
    assert prefixes.lookup(addr("10.2.0.1")) == Match("10.2.0.0/16", "", "")
    assert prefixes.lookup(addr("2001:db8::1")) == Match("2001:db8::/32", "initech", "paris #2")


def test_csv_header_only_is_an_empty_map() -> None:
    assert len(csv_map("# nothing yet\ncidr,customer,site\n")) == 0


YAML_LIST = """\
# customers and sites
- cidr: 10.0.0.0/8
  customer: acme
  site: paris
- {cidr: 10.1.0.0/16, customer: globex}
- cidr: 2001:db8::/32
  site: 42
- cidr: 192.0.2.0/24
  customer: ~
  site: "yes"
"""


@pytest.mark.parametrize("text", [YAML_LIST, "prefixes:\n" + "".join(f"  {line}\n" for line in YAML_LIST.splitlines())])
def test_yaml_format(text: str) -> None:
    prefixes = PrefixMap.from_text(text, fmt="yaml")
    assert len(prefixes) == 4
    assert prefixes.lookup(addr("10.2.0.1")) == Match("10.0.0.0/8", "acme", "paris")
    assert prefixes.lookup(addr("10.1.0.1")) == Match("10.1.0.0/16", "globex", "")
    assert prefixes.lookup(addr("2001:db8::1")) == Match("2001:db8::/32", "", "42")
    assert prefixes.lookup(addr("192.0.2.9")) == Match("192.0.2.0/24", "", "yes")


@pytest.mark.parametrize("text", ["[]\n", "prefixes: []\n"])
def test_yaml_empty_list_is_an_empty_map(text: str) -> None:
    assert len(PrefixMap.from_text(text, fmt="yaml")) == 0


@pytest.mark.parametrize("name", ["prefixes.csv", "prefixes.yaml", "prefixes.YML"])
def test_load_chooses_the_format_by_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text(NESTED_CSV)
    else:
        path.write_text("prefixes:\n  - {cidr: 10.1.0.0/16, customer: acme, site: paris}\n")
    prefixes = PrefixMap.load(path)
    assert prefixes.lookup(addr("10.1.2.3")) in (
        Match("10.1.2.0/24", "globex", "lyon"),
        Match("10.1.0.0/16", "acme", "paris"),
    )
    assert len(prefixes) == (5 if name.endswith(".csv") else 1)


def test_from_text_takes_csv_or_yaml() -> None:
    with pytest.raises(ValueError, match="prefix file format must be 'csv' or 'yaml', got 'json'"):
        PrefixMap.from_text("[]", fmt="json")


# Errors


def csv_error(text: str) -> str:
    with pytest.raises(PrefixFileError) as caught:
        csv_map(text)
    assert isinstance(caught.value, ConfigError)
    return str(caught.value)


def yaml_error(text: str) -> str:
    with pytest.raises(PrefixFileError) as caught:
        PrefixMap.from_text(text, fmt="yaml", source="p.yaml")
    return str(caught.value)


H = "cidr,customer,site\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            H + "10.0.0.1/8,acme,paris\n",
            "p.csv:2: CIDR '10.0.0.1/8' has host bits set; write the network address 10.0.0.0/8 "
            "(or 10.0.0.1/32 for the one host)",
        ),
        (
            H + "2001:db8::1/32,acme,paris\n",
            "p.csv:2: CIDR '2001:db8::1/32' has host bits set; write the network address 2001:db8::/32 "
            "(or 2001:db8::1/128 for the one host)",
        ),
        (
            H + "10.0.0.300/24,acme,paris\n",
            "p.csv:2: '10.0.0.300/24' is not a valid CIDR ('10.0.0.300/24' does not appear to be an IPv4 or IPv6 "
            "network); write a network such as 10.0.0.0/8 or 2001:db8::/32",
        ),
        (
            H + "10.0.0.0/33,acme,paris\n",
            "p.csv:2: '10.0.0.0/33' is not a valid CIDR ('10.0.0.0/33' does not appear to be an IPv4 or IPv6 "
            "network); write a network such as 10.0.0.0/8 or 2001:db8::/32",
        ),
        (
            H + "10.0.0.7,acme,paris\n",
            "p.csv:2: CIDR '10.0.0.7' has no prefix length; write 10.0.0.7/32 for one host, "
            "or the network with its length",
        ),
        (
            H + "2001:db8::7,acme,paris\n",
            "p.csv:2: CIDR '2001:db8::7' has no prefix length; write 2001:db8::7/128 for one host, "
            "or the network with its length",
        ),
        (
            H + ",acme,paris\n",
            "p.csv:2: the CIDR is empty; write a network such as 10.0.0.0/8 or 2001:db8::/32",
        ),
        (
            H + "::ffff:10.0.0.0/104,acme,paris\n",
            "p.csv:2: '::ffff:10.0.0.0/104' is an IPv4-mapped IPv6 prefix; write it as IPv4: 10.0.0.0/8",
        ),
        (
            H + "10.0.0.0/8,acme\n",
            "p.csv:2: expected 3 columns (cidr,customer,site), got 2 in '10.0.0.0/8,acme'; give every line all "
            "three, leaving customer or site empty when unknown (10.9.0.0/16,,paris)",
        ),
        (
            H + "10.0.0.0/8,acme,paris,extra\n",
            "p.csv:2: expected 3 columns (cidr,customer,site), got 4 in '10.0.0.0/8,acme,paris,extra'; give every "
            "line all three, leaving customer or site empty when unknown (10.9.0.0/16,,paris)",
        ),
        (
            "# prefixes\n10.0.0.0/8,acme,paris\n",
            "p.csv:2: expected the header line cidr,customer,site, got '10.0.0.0/8,acme,paris'; "
            "add it as the first line",
        ),
        (
            "cidr,customer\n",
            "p.csv:1: expected the header line cidr,customer,site, got 'cidr,customer'; add it as the first line",
        ),
        ("", "p.csv: no header line; start the file with cidr,customer,site"),
        ("# only a comment\n\n", "p.csv: no header line; start the file with cidr,customer,site"),
        (
            H + "10.0.0.0/8,acme,paris\n# again\n10.0.0.0/8,acme,lyon\n",
            "p.csv:4: duplicate CIDR '10.0.0.0/8': 10.0.0.0/8 is already on line 2; keep one of the two",
        ),
        (
            H + "2001:db8::/32,a,b\n2001:0db8:0::/32,c,d\n",
            "p.csv:3: duplicate CIDR '2001:0db8:0::/32': 2001:db8::/32 is already on line 2; keep one of the two",
        ),
        (
            H + "10.0.0.0/8," + "a" * 200_000 + ",b\n",
            "p.csv:2: not a CSV line (field larger than field limit (131072)); fix or remove the line",
        ),
    ],
)
def test_csv_errors(text: str, message: str) -> None:
    assert csv_error(text) == message


def test_every_problem_is_listed_in_line_order() -> None:
    text = H + "10.0.0.0/8,a,b\n10.0.0.1/8,a,b\n10.0.0.0/8,a,b\nbad,a,b\n10.0.0.0/8,a\n"
    assert csv_error(text) == (
        "p.csv: 4 problems in the prefix file:\n"
        "  p.csv:3: CIDR '10.0.0.1/8' has host bits set; write the network address 10.0.0.0/8 "
        "(or 10.0.0.1/32 for the one host)\n"
        "  p.csv:4: duplicate CIDR '10.0.0.0/8': 10.0.0.0/8 is already on line 2; keep one of the two\n"
        "  p.csv:5: 'bad' is not a valid CIDR ('bad' does not appear to be an IPv4 or IPv6 network); "
        "write a network such as 10.0.0.0/8 or 2001:db8::/32\n"
        "  p.csv:6: expected 3 columns (cidr,customer,site), got 2 in '10.0.0.0/8,a'; give every line all "
        "three, leaving customer or site empty when unknown (10.9.0.0/16,,paris)"
    )


def test_a_long_list_of_problems_is_cut_short() -> None:
    text = H + "".join(f"10.0.{i}.1/24,a,b\n" for i in range(25))
    lines = csv_error(text).splitlines()
    assert lines[0] == "p.csv: 25 problems in the prefix file:"
    assert lines[1].startswith("  p.csv:2: CIDR '10.0.0.1/24' has host bits set")
    assert lines[20].startswith("  p.csv:21: CIDR '10.0.19.1/24' has host bits set")
    assert lines[21:] == ["  ... and 5 more"]


# Syntax errors are worded by libyaml, which the module uses when PyYAML has it (the pinned wheel does).
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- cidr: 10.0.0.1/8\n  customer: acme\n",
            "p.yaml:1: CIDR '10.0.0.1/8' has host bits set; write the network address 10.0.0.0/8 "
            "(or 10.0.0.1/32 for the one host)",
        ),
        (
            "- cidr: 10.0.0.0/8\n- cidr: 10.1.0.0/16\n- cidr: 10.0.0.0/8\n",
            "p.yaml:3: duplicate CIDR '10.0.0.0/8': 10.0.0.0/8 is already on line 1; keep one of the two",
        ),
        (
            "- cidr: 10.0.0.0/8\n  custmer: acme\n",
            "p.yaml:2: unknown key 'custmer'; the keys are cidr, customer and site",
        ),
        ("- cidr: 10.0.0.0/8\n  cidr: 10.1.0.0/16\n", "p.yaml:2: cidr is given twice in one entry; keep one"),
        ("- cidr: 10.0.0.0/8\n  site: [a, b]\n", "p.yaml:2: site must be a single value, got a list"),
        (
            "- cidr: 10.0.0.0/8\n- customer: acme\n  site: paris\n",
            "p.yaml:2: the entry has no cidr; add cidr: followed by a network such as 10.0.0.0/8",
        ),
        ("- cidr:\n", "p.yaml:1: the CIDR is empty; write a network such as 10.0.0.0/8 or 2001:db8::/32"),
        (
            "- 10.0.0.0/8\n",
            "p.yaml:1: expected a mapping with cidr, customer and site, got '10.0.0.0/8'",
        ),
        (
            "- cidr: 10.0.0.0/8\n  site: [paris\n",
            "p.yaml:3: not valid YAML (did not find expected ',' or ']'); fix the syntax",
        ),
        (
            "- cidr: 10.0.0.0/8\n   customer: acme\n",
            "p.yaml:2: not valid YAML (mapping values are not allowed in this context); fix the syntax",
        ),
        (
            "",
            "p.yaml: the file is empty; write a list of mappings with cidr, customer and site "
            "(or that list under prefixes:), or [] for no prefixes",
        ),
        (
            "# just a comment\n",
            "p.yaml: the file is empty; write a list of mappings with cidr, customer and site "
            "(or that list under prefixes:), or [] for no prefixes",
        ),
        (
            "prefixes: []\nsites: []\n",
            "p.yaml:2: unknown top-level key 'sites'; the only key is prefixes",
        ),
        (
            "{}\n",
            "p.yaml:1: no prefixes key; write a list of mappings with cidr, customer and site "
            "(or that list under prefixes:)",
        ),
        (
            "prefixes: 10.0.0.0/8\n",
            "p.yaml:1: expected a list of mappings with cidr, customer and site (or that list under prefixes:), "
            "got '10.0.0.0/8'",
        ),
        (
            "--- []\n--- []\n",
            "p.yaml:2: not valid YAML (but found another document); fix the syntax",
        ),
    ],
)
def test_yaml_errors(text: str, message: str) -> None:
    assert yaml_error(text) == message


def test_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(PrefixFileError) as caught:
        PrefixMap.load(missing)
    assert str(caught.value) == f"{missing}: the prefix file does not exist; create it or unset VIGIL_PREFIX_FILE"

    wrong = tmp_path / "prefixes.json"
    wrong.write_text("[]")
    with pytest.raises(PrefixFileError) as caught:
        PrefixMap.load(wrong)
    assert str(caught.value) == f"{wrong}: unknown prefix file format '.json'; name it .csv, .yaml or .yml"

    bare = tmp_path / "prefixes"
    bare.write_text("[]")
    with pytest.raises(PrefixFileError) as caught:
        PrefixMap.load(bare)
    assert str(caught.value) == f"{bare}: unknown prefix file format '(no extension)'; name it .csv, .yaml or .yml"

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"cidr,customer,site\n10.0.0.0/8,caf\xe9,\n")
    with pytest.raises(PrefixFileError) as caught:
        PrefixMap.load(latin1)
    assert str(caught.value) == f"{latin1}: not UTF-8 text (byte 33 is 0xe9); save it as UTF-8"

    broken = tmp_path / "broken.csv"
    broken.write_text(H + "10.0.0.1/8,a,b\n")
    with pytest.raises(PrefixFileError) as caught:
        PrefixMap.load(str(broken))
    assert caught.value.source == str(broken)
    assert caught.value.problems == (
        f"{broken}:2: CIDR '10.0.0.1/8' has host bits set; write the network address 10.0.0.0/8 "
        "(or 10.0.0.1/32 for the one host)",
    )


def test_prefix_file_errors_survive_pickling() -> None:
    with pytest.raises(PrefixFileError) as caught:
        csv_map(H + "bad,a,b\n10.0.0.1/8,a,b\n")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, PrefixFileError)
    assert (str(copy), copy.source, copy.problems) == (str(caught.value), "p.csv", caught.value.problems)


# Reloading


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mtime_s: int) -> None:
    """Write `text` and set the file's mtime, so a change is seen even within the file system's mtime resolution."""
    path.write_text(text)
    os.utime(path, ns=(mtime_s * 1_000_000_000, mtime_s * 1_000_000_000))


def test_reload_after_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "prefixes.csv"
    write(path, H + "10.0.0.0/8,acme,paris\n", 1)
    clock = FakeClock()
    reloading = ReloadingPrefixMap(str(path), check_interval_s=5.0, clock=clock)
    first = reloading.current()
    assert reloading.path == str(path)
    assert first.lookup(addr("10.1.2.3")) == Match("10.0.0.0/8", "acme", "paris")

    write(path, H + "10.0.0.0/8,acme,lyon\n", 2)  # same size: the mtime gives the change away
    clock.now += 4.9
    assert reloading.current() is first  # not time to look yet
    clock.now += 0.1
    second = reloading.current()
    assert second.lookup(addr("10.1.2.3")) == Match("10.0.0.0/8", "acme", "lyon")

    clock.now += 60
    assert reloading.current() is second  # unchanged file: not re-read

    write(path, H + "10.0.0.0/8,acme,lyon\n10.1.0.0/16,globex,\n", 2)  # same mtime, new size
    clock.now += 5
    assert reloading.current().lookup(addr("10.1.2.3")) == Match("10.1.0.0/16", "globex", "")


def test_a_broken_file_keeps_the_previous_map_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "prefixes.yaml"
    write(path, "- {cidr: 10.0.0.0/8, customer: acme}\n", 1)
    clock = FakeClock()
    reloading = ReloadingPrefixMap(str(path), check_interval_s=1.0, clock=clock)
    good = reloading.current()

    write(path, "- {cidr: 10.0.0.0/8, customer: acme}\n- {cidr: 10.0.0.1/8}\n", 2)
    with caplog.at_level(logging.INFO, logger="vigil.collector.enrich"):
        for _ in range(5):
            clock.now += 1
            assert reloading.current() is good
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            f"prefix file {path} changed but cannot be used; keeping the 1 prefixes last loaded. "
            f"{path}:2: CIDR '10.0.0.1/8' has host bits set; write the network address 10.0.0.0/8 "
            "(or 10.0.0.1/32 for the one host)",
        )
    ]

    caplog.clear()
    write(path, "- {cidr: 10.0.0.0/8, customer: acme}\n- {cidr: 10.0.0.0/9}\n", 3)
    with caplog.at_level(logging.INFO, logger="vigil.collector.enrich"):
        clock.now += 1
        fixed = reloading.current()
    assert len(fixed) == 2
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"prefix file {path} loaded: 2 prefixes")
    ]


def test_a_deleted_file_keeps_the_map(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "prefixes.csv"
    write(path, H + "10.0.0.0/8,acme,paris\n", 1)
    clock = FakeClock()
    reloading = ReloadingPrefixMap(str(path), check_interval_s=1.0, clock=clock)
    good = reloading.current()
    path.unlink()
    with caplog.at_level(logging.INFO, logger="vigil.collector.enrich"):
        for _ in range(3):
            clock.now += 1
            assert reloading.current() is good
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"prefix file {path} was deleted; keeping the 1 prefixes last loaded until it is back")
    ]
    # Back with the very same contents and mtime: read again all the same.
    write(path, H + "10.0.0.0/8,acme,paris\n", 1)
    clock.now += 1
    back = reloading.current()
    assert back is not good
    assert back.lookup(addr("10.0.0.1")) == Match("10.0.0.0/8", "acme", "paris")


def test_missing_or_broken_file_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "prefixes.csv"
    with pytest.raises(ConfigError) as caught:
        ReloadingPrefixMap(str(missing))
    assert str(caught.value) == f"prefix file {missing} does not exist; create it or unset VIGIL_PREFIX_FILE"

    write(missing, "10.0.0.0/8,acme,paris\n", 1)
    with pytest.raises(PrefixFileError) as broken:
        ReloadingPrefixMap(str(missing))
    assert str(broken.value) == (
        f"{missing}:1: expected the header line cidr,customer,site, got '10.0.0.0/8,acme,paris'; "
        "add it as the first line"
    )


@pytest.mark.parametrize("path", [None, ""])
def test_no_path_is_always_the_empty_map(path: str | None) -> None:
    reloading = ReloadingPrefixMap(path)
    assert reloading.path is None
    assert len(reloading.current()) == 0
    assert reloading.current() is reloading.current()


def test_check_interval_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="prefix file check interval must be 0 or more seconds, got -1"):
        ReloadingPrefixMap(None, check_interval_s=-1)


def test_current_from_many_threads_while_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "prefixes.csv"
    write(path, H + "10.0.0.0/8,v0,\n", 1)
    reloading = ReloadingPrefixMap(str(path), check_interval_s=0.0)
    seen: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                match = reloading.current().lookup(addr("10.0.0.1"))
                assert match is not None
                seen.append(match.customer)
        except BaseException as e:  # surfaced below: an assertion in a thread would otherwise be lost
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for version in range(1, 20):
        temporary = tmp_path / "next.csv"
        write(temporary, H + f"10.0.0.0/8,v{version},\n", version + 1)
        temporary.replace(path)  # the atomic update the module docstring asks for
    while "v19" not in seen and not errors:
        threading.Event().wait(0.001)
    done.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert reloading.current().lookup(addr("10.0.0.1")) == Match("10.0.0.0/8", "v19", "")


# Agreement with a brute-force search


def brute_force(networks: dict[Any, tuple[str, str]], address: bytes) -> Match | None:
    ip = ipaddress.IPv6Address(address)
    target: ipaddress.IPv4Address | ipaddress.IPv6Address = ip.ipv4_mapped or ip
    best = None
    for network in networks:
        if (
            network.version == target.version
            and target in network
            and (best is None or network.prefixlen > best.prefixlen)
        ):
            best = network
    return None if best is None else Match(str(best), *networks[best])


def _v4_network(bits: int, length: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((bits >> (32 - length) << (32 - length), length))


def _v6_network(bits: int, length: int) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((bits >> (128 - length) << (128 - length), length))


# A few leading bits shared by most prefixes and addresses, so that prefixes nest and addresses hit them.
v4_bits = st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 2**4 - 1).map(lambda b: (10 << 24) | (b << 20)))
v6_bits = st.one_of(st.integers(0, 2**128 - 1), st.integers(0, 2**6 - 1).map(lambda b: (0x20010DB8 << 96) | (b << 90)))
v4_networks = st.builds(_v4_network, v4_bits, st.integers(0, 32))
v6_networks = st.builds(_v6_network, v6_bits, st.integers(0, 128)).filter(
    lambda n: not (n.prefixlen >= 96 and n.network_address.ipv4_mapped is not None)
)
# CSV fields are trimmed, so labels have no spaces at their ends.
labels = st.text(alphabet="abc, #\"'", max_size=4).map(str.strip)


@settings(max_examples=300, deadline=None)
@given(
    networks=st.dictionaries(st.one_of(v4_networks, v6_networks), st.tuples(labels, labels), max_size=40),
    data=st.data(),
)
def test_lookup_agrees_with_brute_force(networks: dict[Any, tuple[str, str]], data: st.DataObject) -> None:
    rows = [{"cidr": str(n), "customer": c, "site": s} for n, (c, s) in networks.items()]
    # Through both file formats, so that quoting and YAML scalars are exercised too.
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["cidr", "customer", "site"])
    writer.writeheader()
    writer.writerows(rows)
    from_csv = PrefixMap.from_text(buffer.getvalue(), fmt="csv")
    from_yaml = PrefixMap.from_text(json.dumps(rows), fmt="yaml")  # JSON is YAML
    assert len(from_csv) == len(from_yaml) == len(networks)

    inside = [n.network_address + data.draw(st.integers(0, n.num_addresses - 1)) for n in networks]
    addresses = [addr(str(a)) for a in inside]
    addresses += [addr(str(ipaddress.IPv4Address(b))) for b in data.draw(st.lists(v4_bits, max_size=10))]
    addresses += [ipaddress.IPv6Address(b).packed for b in data.draw(st.lists(v6_bits, max_size=10))]
    for address in addresses:
        expected = brute_force(networks, address)
        assert from_csv.lookup(address) == expected
        assert from_yaml.lookup(address) == expected
    table = enrich(flows(list(addresses), list(reversed(addresses))), from_csv)
    assert table.column("SrcPrefix").to_pylist() == [
        "" if (m := brute_force(networks, a)) is None else m.prefix for a in addresses
    ]
