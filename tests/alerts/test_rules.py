"""Alert rules: matching, defaults, and errors that name the rule, the field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.alerts.rules import DEFAULT_RULES, AlertRule, load_rules_file, matching, parse_rules
from vigil.errors import ConfigError

FINDING = {
    "kind": "service_regression",
    "service": "checkout",
    "severity": "warning",
    "operation": "POST /pay",
    "signal": "latency_p95",
}


def test_a_rule_matches_by_kind_service_minimum_severity_and_labels() -> None:
    (rule,) = parse_rules(
        {"rules": [{"name": "pay", "kinds": ["service_regression"], "services": "checkout", "severity": "warning",
                    "labels": {"signal": "latency_p95"}, "for": "2m", "channels": ["#pay"], "repeat": "4h"}]}
    )  # fmt: skip
    assert rule == AlertRule(
        name="pay",
        kinds=("service_regression",),
        services=("checkout",),
        severity="warning",
        labels=(("signal", "latency_p95"),),
        for_s=120.0,
        channels=("#pay",),
        repeat_s=14400.0,
    )
    assert rule.matches(**FINDING)
    assert rule.matches(**(FINDING | {"severity": "critical"}))
    assert not rule.matches(**(FINDING | {"severity": "info"}))
    assert not rule.matches(**(FINDING | {"service": "cart"}))
    assert not rule.matches(**(FINDING | {"signal": "error_rate"}))
    assert not rule.matches(**(FINDING | {"kind": "log_pattern"}))
    assert rule.to_dict()["for"] == "2m" and rule.to_dict()["repeat"] == "4h"


def test_without_rules_every_warning_or_worse_finding_alerts_the_default_channel() -> None:
    assert [r.name for r in matching(DEFAULT_RULES, **FINDING)] == ["default"]
    assert matching(DEFAULT_RULES, **(FINDING | {"severity": "info"})) == []
    assert DEFAULT_RULES[0].channels == ()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rule": []}, "expected a top-level 'rules:' list"),
        ({"rules": [{"kinds": ["network"]}]}, "rule 1: name is required"),
        ({"rules": [{"name": "a", "kinds": ["weather"]}]}, "rule 'a': kind 'weather' is not one of"),
        ({"rules": [{"name": "a", "severity": "loud"}]}, "rule 'a': severity must be info, warning or critical"),
        ({"rules": [{"name": "a", "for": "soon"}]}, "rule 'a': for: 'soon' is not a duration such as 0s, 2m or 4h"),
        ({"rules": [{"name": "a", "labels": {"region": "eu"}}]}, "rule 'a': labels may match ['operation', 'signal']"),
        ({"rules": [{"name": "a", "colour": "red"}]}, "rule 'a': unknown field 'colour'"),
        ({"rules": [{"name": "a"}, {"name": "a"}]}, "rule 'a' is defined twice"),
    ],
)
def test_invalid_rules_are_refused_naming_the_rule_and_field(document: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_rules(document)
    assert message in str(raised.value)


def test_an_invalid_rules_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: ok\n    severity: warning\n  - name: bad\n    for: later\n")
    with pytest.raises(ConfigError) as raised:
        load_rules_file(str(path))
    assert str(raised.value) == f"{path}:4: rule 'bad': for: 'later' is not a duration such as 0s, 2m or 4h"
    path.write_text("rules:\n  - name: ok\n    channels: ['#a', '#b']\n")
    assert load_rules_file(str(path))[0].channels == ("#a", "#b")
