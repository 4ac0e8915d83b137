"""Asynchronous producing with one acknowledgement check per batch."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, cast

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from leadscore.errors import DeliveryFailed, KafkaFatal, PartitionsLost
from leadscore.kafka.client_log import client_config, client_error

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
                **client_config(),
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
        client_error("producer", error)


class TransactionalProducer(RecordProducer):
    """A producer whose records and input offsets commit together, in one transaction."""

    def __init__(self, config: dict[str, Any], timeout_s: float = 30.0) -> None:
        super().__init__(config)
        self._timeout_s = timeout_s
        self._call("initialize transactions", self._producer.init_transactions, timeout_s)

    def begin(self) -> None:
        self._failures.clear()
        self._call("begin a transaction", self._producer.begin_transaction)

    def commit(self, next_offsets: dict[tuple[str, int], int], group_metadata: Any) -> None:
        """Add the input offsets to the transaction and commit it.

        Raises `PartitionsLost` when the group moved on (the new owner replays the batch),
        `DeliveryFailed` when the transaction had to be aborted (send it all again), and
        `KafkaFatal` when this producer cannot go on (fenced by a newer instance).
        """
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        if offsets:  # a sweep's transaction carries outputs only
            self._call(
                "add offsets to the transaction",
                self._producer.send_offsets_to_transaction,
                offsets,
                group_metadata,
                self._timeout_s,
            )
        self._call("commit the transaction", self._producer.commit_transaction, self._timeout_s)

    def abort(self) -> None:
        try:
            self._producer.abort_transaction(self._timeout_s)
        except KafkaException as exc:
            log.warning("aborting the transaction failed: %s", exc)

    def _call(self, what: str, call: Any, *args: Any) -> None:
        while True:
            try:
                call(*args)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable():
                    log.warning("%s: %s; retrying", what, error.str())
                    continue
                if error.code() in _GROUP_MOVED_ON:
                    self.abort()
                    raise PartitionsLost(f"{what}: {error.str()}") from exc
                if error.txn_requires_abort():
                    self.abort()
                    raise DeliveryFailed(f"{what}: {error.str()}; transaction aborted") from exc
                raise KafkaFatal(f"{what}: {error.str()}") from exc


_GROUP_MOVED_ON = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
}
