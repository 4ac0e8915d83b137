"""Asynchronous producing with one acknowledgement check per batch."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from leadscore.errors import DeliveryFailed, KafkaFatal

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class Record(NamedTuple):
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


class RecordProducer:
    """Produces records asynchronously; `flush()` waits for every acknowledgement.

    Delivery failures are collected by the delivery callback and raised by `flush()`, so
    the caller never commits input offsets for outputs that were not written.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._errors = _ClientErrors()
        # the callback holds no reference back to this object, so the client is destroyed
        # (and its connections closed) as soon as the producer is no longer used
        self._producer = Producer(
            {
                "enable.idempotence": True,
                "log.connection.close": False,  # brokers close idle connections: not news
                **config,
                "error_cb": self._errors.on_error,
            }
        )
        self._failures: list[str] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Queue one record; blocks briefly while the local queue is full."""
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=cast(Any, headers),
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise KafkaFatal(f"cannot produce to {topic}: {exc}") from exc

    def flush(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for every queued record to be acknowledged.

        Returns how many are still in flight (0: all acknowledged); raises `DeliveryFailed`
        if the broker refused any record since the last flush.
        """
        remaining = int(self._producer.flush(timeout_s))
        if self._errors.fatal:
            raise KafkaFatal(self._errors.fatal)
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryFailed(
                f"{len(failures)} record(s) not acknowledged, first: {failures[0]}"
            )
        return remaining

    def poll(self) -> None:
        """Serve delivery callbacks without waiting."""
        self._producer.poll(0)

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._failures.append(f"{message.topic()}: {error.str()}")


class _ClientErrors:
    """Client-level errors reported by librdkafka's error callback."""

    def __init__(self) -> None:
        self.fatal: str | None = None

    def on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = f"producer fatal error: {error.str()}"
        log.warning("kafka producer: %s", error.str())
