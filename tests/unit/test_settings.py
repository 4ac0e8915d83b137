"""Settings: topics, durations, pass-through options, and secrets that never print."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from leadscore.cli import main
from leadscore.durations import parse_duration_ms
from leadscore.errors import ConfigError
from leadscore.settings import (
    InputTopic,
    KafkaSettings,
    RedisSettings,
    Secret,
    Settings,
    parse_input_topics,
    parse_options,
    redacted_url,
)


def test_input_topics_by_suffix_or_explicit_record_type() -> None:
    assert parse_input_topics("leads.clicks, web.hits=Visit") == (
        InputTopic("leads.clicks", "Click"),
        InputTopic("web.hits", "Visit"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web.hits", "name the record type"),
        ("web.hits=Purchase", "unknown record type"),
        ("bad topic=Click", "not a valid Kafka topic name"),
        ("a.clicks,a.clicks", "listed twice"),
        ("", "no input topics"),
    ],
)
def test_bad_input_topics_are_explained(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_input_topics(text)


def test_durations() -> None:
    assert parse_duration_ms("5m") == 300_000
    assert parse_duration_ms("50ms") == 50
    assert parse_duration_ms("180d") == 180 * 86_400_000
    assert parse_duration_ms("2") == 2000
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration_ms("soon")


def test_kafka_options_pass_through_to_the_right_client() -> None:
    kafka = KafkaSettings(
        options=parse_options(("session.timeout.ms=6000", "linger.ms=1", "socket.timeout.ms=9"))
    )
    assert kafka.consumer_config()["session.timeout.ms"] == "6000"
    assert "linger.ms" not in kafka.consumer_config()
    assert kafka.producer_config()["linger.ms"] == "1"
    assert "session.timeout.ms" not in kafka.producer_config()
    assert kafka.admin_config()["socket.timeout.ms"] == "9"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(("linger.ms",))


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings(
        kafka=KafkaSettings(
            sasl_username="worker",
            sasl_password=Secret("hunter2"),
            ssl_key_password=Secret("keypass"),
        ),
        redis=RedisSettings(url=Secret("redis://app:s3cret@redis:6379/0")),
    )
    text = repr(settings) + str(settings)
    assert "hunter2" not in text
    assert "keypass" not in text
    assert "s3cret" not in text
    assert "redis://app:***@redis:6379/0" in text
    assert settings.kafka.common_config()["sasl.password"] == "hunter2"


def test_run_help_shows_every_option_with_its_environment_variable() -> None:
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in (
        "bootstrap-servers",
        "redis-url",
        "group-id",
        "input-topics",
        "output-topic",
        "dlq-topic",
        "model",
        "metrics-port",
        "max-clock-skew",
        "processing-guarantee",
        "emit-anonymous",
        "kafka-option",
        "security-protocol",
        "sasl-mechanism",
        "sasl-username",
        "sasl-password",
        "ssl-ca-location",
        "batch-size",
        "batch-linger",
        "state-ttl",
    ):
        env = "LEADSCORE_" + name.upper().replace("-", "_")
        assert f"--{name}" in result.output, name
        assert env in result.output, env


def test_a_bad_option_is_a_usage_error_not_a_traceback() -> None:
    result = CliRunner().invoke(main, ["run", "--input-topics", "web.hits"])
    assert result.exit_code == 2
    assert "name the record type" in result.output


def test_exactly_once_makes_a_transactional_producer_with_a_stable_id() -> None:
    kafka = KafkaSettings(
        group_id="g", group_instance_id="worker-3", processing_guarantee="exactly-once"
    )
    assert kafka.producer_config()["transactional.id"] == "leadscore-g-worker-3"
    assert "transactional.id" not in kafka.consumer_config()
    assert "transactional.id" not in KafkaSettings().producer_config()
    explicit = KafkaSettings(processing_guarantee="exactly-once", transactional_id="tx-1")
    assert explicit.producer_config()["transactional.id"] == "tx-1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://app:s3cret@redis:6379/0", "redis://app:***@redis:6379/0"),
        ("rediss://:s3cret@redis/0", "rediss://:***@redis/0"),
        ("redis://redis/0?password=s3cret&db=1", "redis://redis/0?password=***&db=1"),
        ("redis://app:s3cret@[::1]:6380/0", "redis://app:***@[::1]:6380/0"),
    ],
)
def test_a_redis_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
