from __future__ import annotations

import pytest

from vigil.errors import ConfigError
from vigil.settings import Settings, load_settings, parse_duration


def test_defaults_match_the_documented_ports_and_store() -> None:
    settings = load_settings()
    assert (settings.clickhouse_url, settings.bind, settings.http_port) == ("chdb://./vigil-data", "127.0.0.1", 8080)
    assert (settings.otlp_grpc_port, settings.otlp_http_port) == (4317, 4318)
    assert (settings.traces_retention_days, settings.logs_retention_days, settings.metrics_retention_days) == (7, 7, 30)


def test_environment_variables_with_the_vigil_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_HTTP_PORT", "9090")
    monkeypatch.setenv("VIGIL_MAX_BATCH_AGE", "250ms")
    monkeypatch.setenv("VIGIL_CLICKHOUSE_URL", "http://vigil:secret@ch.internal:8123/obs")
    settings = load_settings()
    assert (settings.http_port, settings.max_batch_age, settings.embedded) == (9090, 0.25, False)


def test_a_bad_port_fails_naming_the_variable_and_the_expected_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_HTTP_PORT", "eighty")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid settings:\n  VIGIL_HTTP_PORT='eighty': "
        "Input should be a valid integer, unable to parse string as an integer"
    )


def test_a_bad_clickhouse_url_names_both_accepted_forms() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(clickhouse_url="postgres://db")
    assert str(info.value) == (
        "invalid settings:\n  VIGIL_CLICKHOUSE_URL='postgres://db': 'postgres://db' is not a ClickHouse URL; "
        "expected chdb://PATH (embedded) or http(s)://user:pass@host:8123/db (a server)"
    )


def test_a_refused_setting_never_shows_a_password_or_secret() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(clickhouse_url="tcp://vigil:s3cret@ch.internal:9000/obs", slack_token=["xoxb-secret"])
    assert str(info.value) == (
        "invalid settings:\n  VIGIL_CLICKHOUSE_URL='tcp://vigil:***@ch.internal:9000/obs': "
        "'tcp://vigil:***@ch.internal:9000/obs' is not a ClickHouse URL; "
        "expected chdb://PATH (embedded) or http(s)://user:pass@host:8123/db (a server)\n"
        "  VIGIL_SLACK_TOKEN=(hidden): Input should be a valid string"
    )


def test_a_bad_duration_says_which_units_are_understood() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(max_batch_age="soon")
    assert str(info.value) == (
        "invalid settings:\n  VIGIL_MAX_BATCH_AGE='soon': 'soon' is not a duration; "
        "expected a number with a unit, e.g. 250ms, 10s, 15m, 1h, 7d"
    )


def test_a_queue_smaller_than_a_batch_is_rejected_naming_both_variables() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(max_queue_rows=10, max_batch_rows=100)
    assert str(info.value) == (
        "VIGIL_MAX_QUEUE_ROWS (10) is smaller than VIGIL_MAX_BATCH_ROWS (100); the queue must hold at least one batch"
    )


def test_unknown_settings_are_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(http_prot=1)
    assert "VIGIL_HTTP_PROT=1: Extra inputs are not permitted" in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("10s", 10.0), ("15m", 900.0), ("1h", 3600.0), ("7d", 604800.0), ("2w", 1209600.0), ("3", 3.0)],
)
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_settings_can_be_built_directly_for_tests() -> None:
    assert Settings(http_port=0).http_port == 0
