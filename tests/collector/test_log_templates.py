"""Log templates: masking, grouping, stable ids, snapshots, and awkward bodies."""

from __future__ import annotations

import random
import uuid
import zlib
from pathlib import Path

import pytest

from vigil.collector.log_templates import (
    EMPTY_TEMPLATE_ID,
    MAX_BODY_CHARS,
    LogTemplateMiner,
    MinedTemplate,
    template_id_of,
)


def request_lines(count: int) -> list[str]:
    """One message kind whose variable parts are numbers, addresses, hex, UUIDs, paths and times."""
    rng = random.Random(7)
    lines = []
    for i in range(count):
        ip = (
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}:{rng.randrange(1, 65536)}"
            if i % 2
            else f"[2001:db8::{rng.randrange(1, 0xFFFF):x}]:{rng.randrange(1, 65536)}"
        )
        lines.append(
            f"2024-05-{1 + i % 28:02d}T12:{i % 60:02d}:07.123Z request {uuid.UUID(int=rng.getrandbits(128))} "
            f"from {ip} read /var/data/{rng.randrange(10**6)}/part-{i}.bin at 0x{rng.getrandbits(32):x} "
            f"took {rng.randrange(1, 9999)}ms status={rng.choice((200, 404, 500))}"
        )
    return lines


def _mined(template: str) -> MinedTemplate:
    """A template as the cluster that started with it is named."""
    return MinedTemplate(template_id_of(template), template)


def test_variable_parts_are_masked_into_one_template() -> None:
    miner = LogTemplateMiner()
    mined = miner.mine_many(request_lines(50))
    template = "<TIME> request <UUID> from <IP> read <PATH> at <HEX> took <NUM>ms status=<NUM>"
    assert {m.template_id for m in mined} == {template_id_of(template)}
    assert {m.template for m in mined} == {template}
    assert miner.template_count == 1


@pytest.mark.parametrize(
    ("bodies", "template"),
    [
        (["Peer 00:1a:2b:3c:4d:5e joined", "Peer AA-BB-CC-DD-EE-0F joined"], "Peer <MAC> joined"),
        (["Mail to ann@example.com bounced", "Mail to b.o+x@mail.example.org bounced"], "Mail to <EMAIL> bounced"),
        (["GET https://api.example.com/v1/x?id=3 failed", "GET http://10.0.0.2:8080/y failed"], "GET <URL> failed"),
        (["Resolved node-12.dc1.example.net to rack", "Resolved db.internal.corp to rack"], "Resolved <HOST> to rack"),
        (["Removed blk_-1608999687919862906 ok", "Removed blk_7503483334202473044 ok"], "Removed <ID> ok"),
        (["Deleting blk_1 blk_2 from disk", "Deleting blk_3 blk_4 blk_5 blk_6 from disk"], "Deleting <ID> from disk"),
        (["iar 00106210 dear 0244c1dc", "iar 003a90fc dear 00b360e8"], "iar <HEX> dear <HEX>"),
        (["Cache at 75% after 1.5s", "Cache at 9% after 20s"], "Cache at <NUM>% after <NUM>s"),
        (["Open C:\\Temp\\a.txt now", "Open D:\\logs\\b.log now"], "Open <PATH> now"),
        (["Seen at Sun Jul 24 02:38:22 2005 here", "Seen at Mon Jul 25 12:00:01 2005 here"], "Seen at <TIME> here"),
    ],
)
def test_masks(bodies: list[str], template: str) -> None:
    miner = LogTemplateMiner()
    assert miner.mine_many(bodies) == [MinedTemplate(template_id_of(template), template)] * len(bodies)


def test_different_messages_get_different_ids() -> None:
    miner = LogTemplateMiner()
    bodies = [
        "Accepted password for root from 10.0.0.1 port 22 ssh2",
        "Disk /dev/sda1 is 91% full",
        "Connection closed by 10.0.0.1",
        "Failed password for root from 10.0.0.1 port 22 ssh2",
        "Starting Session 12 of user root.",
        "Accepted publickey for root from 10.0.0.1 port 22 ssh2",
    ]
    ids = [m.template_id for m in miner.mine_many(bodies)]
    assert len(set(ids)) == 6
    # Seen again, each goes back to its own template.
    assert [m.template_id for m in miner.mine_many(bodies[::-1])] == ids[::-1]


def test_template_generalises_and_the_id_stays() -> None:
    miner = LogTemplateMiner()
    first = "Started worker alpha in pool main for tenant acme"
    first_id = template_id_of(first)
    assert miner.mine(first) == MinedTemplate(first_id, first)
    assert miner.mine("Started worker beta in pool main for tenant acme") == MinedTemplate(
        first_id, "Started worker <*> in pool main for tenant acme"
    )
    assert miner.mine("Started worker gamma in pool spare for tenant acme") == MinedTemplate(
        first_id, "Started worker <*> in pool <*> for tenant acme"
    )
    # A body seen before gets its cluster's current template, not the one it first got.
    assert miner.mine(first) == MinedTemplate(first_id, "Started worker <*> in pool <*> for tenant acme")
    # A <*> counts as a difference: with a third one, fewer than 3 tokens in 4 are equal.
    other = "Started worker delta in pool north for tenant umbrella"
    assert miner.mine(other) == MinedTemplate(template_id_of(other), other)


def test_snapshot_restore_keeps_ids_and_continues() -> None:
    miner = LogTemplateMiner()
    bodies = [
        *request_lines(5),
        "Started worker alpha in pool main",
        "Started worker beta in pool main",
        "Disk /dev/sda1 is 91% full",
        "Ошибка: файл 日本語 не найден",
    ]
    before = miner.mine_many(bodies)
    assert len({m.template_id for m in before}) == 4

    restored = LogTemplateMiner.restore(miner.snapshot())
    assert restored.template_count == 4
    assert restored.mine_many(bodies) == miner.mine_many(bodies)
    assert [m.template_id for m in restored.mine_many(bodies)] == [m.template_id for m in before]
    assert restored.mine("Something new entirely") == MinedTemplate(
        template_id_of("Something new entirely"), "Something new entirely"
    )
    # And again from the restored one: a snapshot of a restored miner carries everything on.
    again = LogTemplateMiner.restore(restored.snapshot())
    assert again.mine("Started worker gamma in pool main") == MinedTemplate(
        template_id_of("Started worker alpha in pool main"), "Started worker <*> in pool main"
    )
    assert again.template_count == 5


def test_ids_depend_on_content_not_on_arrival_order() -> None:
    """Two collectors' miners, or a miner restored from an older snapshot, agree on a new shape's id."""
    bodies = ["Disk /dev/sda1 is 91% full", "Connection closed by 10.0.0.1", "Starting Session 12 of user root."]
    one, other = LogTemplateMiner(), LogTemplateMiner()
    other.mine("Something only the second collector saw")
    assert one.mine_many(bodies) == other.mine_many(bodies)
    assert one.mine("Disk /dev/sdb2 is 12% full").template_id == template_id_of("Disk <PATH> is <NUM>% full")


def test_restore_rejects_what_is_not_a_snapshot() -> None:
    with pytest.raises(ValueError, match="not a log template snapshot"):
        LogTemplateMiner.restore(b"garbage")
    with pytest.raises(ValueError, match="version"):
        LogTemplateMiner.restore(zlib.compress(b'{"version": 999}'))
    with pytest.raises(ValueError, match="not a log template snapshot"):
        LogTemplateMiner.restore(zlib.compress(b'{"version": 2, "clusters": [[1]], "tree": []}'))


def test_empty_bodies_have_template_zero_and_are_not_mined() -> None:
    miner = LogTemplateMiner()
    for body in ("", " ", "\t\r\n  "):
        assert miner.mine(body) == MinedTemplate(EMPTY_TEMPLATE_ID, "")
    assert miner.template_count == 0
    assert miner.mine("first real line") == MinedTemplate(template_id_of("first real line"), "first real line")


def test_long_bodies_are_truncated() -> None:
    miner = LogTemplateMiner()
    head = "Payload dump " + "word " * (MAX_BODY_CHARS // 5)
    first = miner.mine(head + "tail one " * 100_000)
    second = miner.mine(head + "something else " * 100_000)
    assert first.template_id == second.template_id != EMPTY_TEMPLATE_ID
    assert len(first.template) <= MAX_BODY_CHARS
    assert first.template.startswith("Payload dump word word")
    assert miner.mine("x" * 10 * MAX_BODY_CHARS) == MinedTemplate(
        template_id_of("x" * MAX_BODY_CHARS), "x" * MAX_BODY_CHARS
    )


def test_mine_many_equals_mine_one_by_one() -> None:
    rng = random.Random(3)
    kinds = [
        lambda: f"Accepted password for {rng.choice(('root', 'ann', 'bob'))} from 10.0.0.{rng.randrange(256)} ssh2",
        lambda: f"Disk /dev/sd{rng.choice('abc')}1 is {rng.randrange(100)}% full",
        lambda: "Health check ok",
        lambda: f"Worker {rng.randrange(3)} restarted after {rng.randrange(1000)}ms",
        lambda: "",
    ]
    bodies = [rng.choice(kinds)() for _ in range(500)]
    one_by_one = LogTemplateMiner()
    assert LogTemplateMiner().mine_many(bodies) == [one_by_one.mine(body) for body in bodies]


def test_odd_characters_do_not_crash() -> None:
    miner = LogTemplateMiner()
    bodies = [
        "Ошибка: файл /tmp/日本語.txt не найден",
        "Ошибка: файл /tmp/données.txt не найден",
        "nul \x00 bell \x07 escape \x1b[31mred\x1b[0m",
        "line\u2028separator\u0085next\x0cform",
        "undecodable \udcff\udcfe bytes",
        "emoji 🔥 and combining é",
        "\x00",
    ]
    mined = miner.mine_many(bodies)
    assert mined[0] == _mined("Ошибка: файл <PATH> не найден")
    assert mined[1] == mined[0]
    assert mined[2] == _mined("nul \x00 bell \x07 escape \x1b[31mred\x1b[0m")
    assert mined[3] == _mined("line separator next form")
    assert mined[4] == _mined("undecodable \udcff\udcfe bytes")
    assert mined[5] == _mined("emoji 🔥 and combining é")
    assert mined[6] == _mined("\x00")
    assert LogTemplateMiner.restore(miner.snapshot()).mine_many(bodies) == miner.mine_many(bodies)


def test_a_drain3_ini_in_the_working_directory_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "drain3.ini").write_text(
        '[DRAIN]\nsim_th = 0.1\n[MASKING]\nmasking = [{"regex_pattern": "worker", "mask_with": "W"}]\n'
    )
    monkeypatch.chdir(tmp_path)
    miner = LogTemplateMiner()
    assert miner.mine("Started worker alpha") == _mined("Started worker alpha")
    assert miner.mine("Stopped engine beta") == _mined("Stopped engine beta")
