"""Alert rules, alerts and silences through the API."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.conftest import RunningVigil


def test_rules_default_until_replaced_and_an_invalid_set_is_refused_whole(vigil_server: RunningVigil) -> None:
    api = f"{vigil_server.api}/api/v1/alert-rules"
    assert httpx.get(api).json() == {
        "source": "default",
        "rules": [
            {"name": "default", "kinds": [], "services": [], "severity": "warning", "labels": {}, "for": "0s",
             "channels": [], "repeat": "0s", "notify_severity": ""}
        ],
    }  # fmt: skip
    rules = {"rules": [{"name": "pay", "services": ["checkout"], "for": "2m", "channels": ["#pay"]}]}
    stored = httpx.put(api, json=rules)
    assert stored.status_code == 200
    assert stored.json()["rules"][0]["for"] == "2m"
    refused = httpx.put(api, json={"rules": [{"name": "x", "for": "later"}]})
    assert refused.status_code == 422
    assert "rule 'x': for: 'later' is not a duration" in refused.json()["detail"][0]["msg"]
    assert [r["name"] for r in httpx.get(api).json()["rules"]] == ["pay"]


def test_silences_are_created_listed_and_expired(vigil_server: RunningVigil) -> None:
    api = f"{vigil_server.api}/api/v1/silences"
    created = httpx.post(
        api, json={"matchers": {"service": "checkout"}, "author": "ann", "comment": "deploy", "duration": "2h"}
    )
    assert created.status_code == 201
    silence_id = created.json()["id"]
    [listed] = httpx.get(api).json()
    assert (listed["id"], listed["matchers"], listed["author"], listed["active"]) == (
        silence_id,
        {"service": "checkout"},
        "ann",
        True,
    )
    assert 7199 <= listed["ends_at"] - listed["starts_at"] <= 7201
    assert httpx.delete(f"{api}/{silence_id}").status_code == 204
    [expired] = httpx.get(api).json()
    assert expired["active"] is False and expired["ends_at"] <= time.time()
    assert httpx.delete(f"{api}/s-nope").status_code == 404
    bad = httpx.post(api, json={"matchers": {"colour": "red"}, "author": "ann"})
    assert bad.status_code == 422
    assert "unknown label 'colour'" in bad.json()["detail"][0]["msg"]


def test_a_silence_starting_outside_1970_to_2100_is_refused_naming_starts_at(vigil_server: RunningVigil) -> None:
    api = f"{vigil_server.api}/api/v1/silences"
    body = {"matchers": {"service": "checkout"}, "author": "ann"}
    # -5e145 once made a 500: no datetime holds that year.
    before = httpx.post(api, json=body | {"starts_at": -5.147903722017704e145})
    after = httpx.post(api, json=body | {"starts_at": 4_102_444_801})
    assert (before.status_code, after.status_code) == (422, 422)
    assert [(e["loc"], e["msg"]) for e in before.json()["detail"] + after.json()["detail"]] == [
        (["body", "starts_at"], "Input should be greater than or equal to 0"),
        (["body", "starts_at"], "Input should be less than or equal to 4102444800"),
    ]
    assert httpx.get(api).json() == []
    latest = httpx.post(api, json=body | {"starts_at": 4_102_444_800, "duration": "90d"})
    assert latest.status_code == 201
    [stored] = httpx.get(api).json()
    assert (stored["starts_at"], stored["ends_at"], stored["active"]) == (
        4_102_444_800,
        4_102_444_800 + 90 * 86400,
        False,
    )


def test_alerts_are_listed_by_state(vigil_server: RunningVigil) -> None:
    assert httpx.get(f"{vigil_server.api}/api/v1/alerts", params={"state": "firing"}).json() == []
    assert httpx.get(f"{vigil_server.api}/api/v1/alerts", params={"state": "loud"}).status_code == 422


def test_silences_from_the_command_line(vigil_server: RunningVigil) -> None:
    def vigil(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil.cli", "silence", *args, "--url", vigil_server.api],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    added = vigil(
        "add", "service=checkout", "severity=warning", "--author", "ann", "--comment", "deploy", "--duration", "30m"
    )
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[1].rstrip(":")
    assert added.stdout == f"silence {silence_id}: service=checkout severity=warning for 30m\n"
    listed = vigil("list")
    assert listed.stdout.startswith(f"{silence_id}  active  until ")
    assert listed.stdout.endswith("  service=checkout severity=warning  (ann: deploy)\n")
    assert vigil("expire", silence_id).stdout == f"silence {silence_id} expired\n"
    assert f"{silence_id}  ended" in vigil("list").stdout
    bad = vigil("add", "checkout", "--author", "ann")
    assert (bad.returncode, bad.stderr) == (2, "vigil: 'checkout' is not label=value, e.g. service=checkout\n")
