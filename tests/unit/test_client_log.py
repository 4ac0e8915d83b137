"""The Kafka clients' repeated reports: each distinct message once per interval, counted."""

from __future__ import annotations

import logging

from leadscore.kafka.client_log import CLIENT_LOG, Repeats, client_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shown(repeats: Repeats, message: str) -> str | None:
    record = logging.LogRecord("t", logging.WARNING, __file__, 0, "%s", (message,), None)
    return record.getMessage() if repeats.filter(record) else None


def refused(ms: int, client: str = "consumer") -> str:
    return (
        f"kafka {client}: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
        f"Connection refused (after {ms}ms in state CONNECT)"
    )


def test_a_repeated_error_is_shown_once_per_interval_then_with_the_count_held_back() -> None:
    clock = Clock()
    repeats = Repeats(30, clock)
    assert shown(repeats, refused(0)) == refused(0)
    for ms in range(1, 60):  # every 0.5 s for the rest of the interval, from every client
        clock.now += 0.5
        assert shown(repeats, refused(ms, "producer" if ms % 2 else "consumer")) is None
    clock.now = 30.0
    assert shown(repeats, refused(7)) == f"{refused(7)} (59 more in the last 30 s)"
    clock.now += 1
    assert shown(repeats, refused(8)) is None


def test_different_messages_are_each_shown() -> None:
    repeats = Repeats(30, Clock())
    assert shown(repeats, "kafka consumer: 1/1 brokers are down") is not None
    assert shown(repeats, refused(0)) is not None
    assert shown(repeats, "kafka consumer: 1/1 brokers are down") is None


def test_the_clients_log_through_the_filtered_logger_and_back_off() -> None:
    config = client_config()
    assert config["reconnect.backoff.ms"] >= 1000
    assert config["reconnect.backoff.max.ms"] >= config["reconnect.backoff.ms"]
    assert any(isinstance(f, Repeats) for f in CLIENT_LOG.filters)
