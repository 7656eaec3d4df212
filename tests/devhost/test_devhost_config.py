"""host.json and local.settings.json: defaults, timespans, precedence of settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.config import (
    ConfigError,
    DevhostSettings,
    HostConfig,
    LocalSettings,
    QueueOptions,
    parse_timespan,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:01", 1.0),
        ("00:01:00", 60.0),
        ("01:00:00", 3600.0),
        ("1.02:00:00", 93600.0),
        ("00:00:00.5", 0.5),
    ],
)
def test_timespans(text: str, seconds: float) -> None:
    assert parse_timespan(text, what="test") == seconds


@pytest.mark.parametrize("text", ["1", "00:60:00", "abc", "24:00:00", ""])
def test_bad_timespans(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_timespan(text, what="test")


def test_queue_defaults_match_the_host() -> None:
    options = QueueOptions.from_section(None)
    assert options == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_polling_interval=60.0,
        visibility_timeout=0.0,
        max_dequeue_count=5,
        message_encoding="base64",
    )


def test_queue_options_accept_milliseconds_for_polling_and_any_key_case() -> None:
    options = QueueOptions.from_section(
        {"BatchSize": 4, "maxpollinginterval": 2500, "visibilityTimeout": "00:00:30"}
    )
    assert (options.batch_size, options.new_batch_threshold) == (4, 2)
    assert options.max_polling_interval == 2.5
    assert options.visibility_timeout == 30.0


@pytest.mark.parametrize(
    "section",
    [
        {"batchSize": 33},
        {"batchSize": 0},
        {"visibilityTimeout": 5000},
        {"messageEncoding": "utf8"},
        {"maxDequeueCount": "5"},
    ],
)
def test_bad_queue_options_are_refused(section: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        QueueOptions.from_section(section)


def test_host_json_route_prefix_and_version(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}})
    )
    assert HostConfig.load(tmp_path).route_prefix == ""
    (tmp_path / "host.json").write_text(json.dumps({"version": "1.0"}))
    with pytest.raises(ConfigError, match=r"2\.0"):
        HostConfig.load(tmp_path)


def test_environment_wins_over_local_settings_and_overrides_win_over_both(tmp_path: Path) -> None:
    settings = {
        "Values": {"A": "local", "B": "local", "C": "local", "FLAG": True},
        "Host": {"LocalHttpPort": 7099},
    }
    (tmp_path / "local.settings.json").write_text(json.dumps(settings))
    local = LocalSettings.load(tmp_path)
    merged = local.environment({"B": "env", "C": "env"}, {"C": "override"})
    assert (merged["A"], merged["B"], merged["C"], merged["FLAG"]) == ("local", "env", "override", "true")
    assert local.local_http_port == 7099


def test_devhost_settings_are_validated() -> None:
    settings = DevhostSettings.from_env(
        {"DEVHOST_FUNCTION_KEY": "k", "DEVHOST_MAX_REQUEST_BODY_BYTES": "2048"}
    )
    assert (settings.function_key, settings.master_key, settings.max_body_bytes) == ("k", None, 2048)
    with pytest.raises(ConfigError, match="DEVHOST_MAX_REQUEST_BODY_BYTES"):
        DevhostSettings.from_env({"DEVHOST_MAX_REQUEST_BODY_BYTES": "lots"})
