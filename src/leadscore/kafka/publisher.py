"""Publishing a batch's records and committing its input offsets, by delivery guarantee.

- at-least-once: produce, wait for every acknowledgement, then commit the offsets. A crash
  in between publishes the batch again (the same ids); consumers deduplicate by id.
- exactly-once: produce and commit the offsets in one Kafka transaction. A
  `read_committed` consumer sees each record once: an aborted or unfinished transaction is
  invisible to it, and its records are published again in a later one.

Only offsets of partitions still assigned are committed: a partition revoked while its
batch waited belongs to another member now, whose progress must not be overwritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from leadscore.errors import DeliveryFailed, KafkaUnavailable
from leadscore.kafka.consumer import InputConsumer, Partition
from leadscore.kafka.producer import Record, RecordProducer, TransactionalProducer

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, records: list[Record], next_offsets: dict[Partition, int]) -> None:
        """Publish `records`, then make `next_offsets` the group's committed offsets."""

    def publish_untied(self, records: list[Record]) -> None:
        """Publish records tied to no input offset (a sweep's) without any consumer call
        while they are awaited, so that no partition is revoked before the caller has
        recorded that they are published."""

    def revoked(self, partitions: list[Partition], done: dict[Partition, int]) -> set[Partition]:
        """Called (inside a consumer call) when partitions leave this member, with the next
        offsets of the batches done on them: make sure they are committed now. Returns the
        partitions of the batch in flight whose offsets it committed (their new owner will
        not replay it)."""

    def finish(self, done: dict[Partition, int]) -> None:
        """Before leaving the group: make sure the offsets of the batches done are
        committed."""

    def commit_due(self) -> None:
        """Commit the offsets of published batches if the commit interval has passed
        (called between batches, also while idle)."""


class AtLeastOnce:
    """Produce, wait for every acknowledgement, then commit (without waiting for the
    commit) at most every `commit_interval_s`: the offsets of the batches published since
    the last commit wait for the next batch or `commit_due()`. A crash replays what was
    published but not committed; the state's watermarks skip it.

    While the acknowledgements are awaited the consumer serves group callbacks
    (`waiting`): if partitions of the batch are revoked then, `revoked()` waits for the
    batch's records right there and commits those partitions' offsets while this member
    still owns them, so their new owner starts after the batch instead of replaying it.
    A revocation between batches commits, and waits for, the offsets of the batches done
    on the partitions that leave (an earlier commit may still be on its way).
    """

    def __init__(
        self,
        producer: RecordProducer,
        consumer: InputConsumer,
        waiting: Callable[[], None],
        revoke_timeout_s: float,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.waiting = waiting
        self.revoke_timeout_s = revoke_timeout_s
        self.commit_interval_s = commit_interval_s
        self._in_flight: dict[Partition, int] = {}
        self._failure: DeliveryFailed | None = None
        self._published: dict[Partition, int] = {}  # next offsets published, not committed
        self._committed_at = float("-inf")

    def publish(self, records: list[Record], next_offsets: dict[Partition, int]) -> None:
        # not the offsets of partitions revoked while an outage held the batch (their
        # records are not published either: the new owner replays them), read before any
        # consumer call, as the caller chose the records
        owned = self.consumer.assignment
        self._in_flight = {p: o for p, o in next_offsets.items() if p in owned}
        self._failure = None
        try:
            for record in records:
                self.producer.send(*record)
            while self.producer.flush(1.0):
                self.waiting()  # may revoke partitions of this batch: see revoked()
            if self._failure is not None:
                raise self._failure
            self._published.update(self._in_flight)
        finally:
            self._in_flight = {}
        self.commit_due()

    def commit_due(self) -> None:
        if not self._published or (time.monotonic() - self._committed_at < self.commit_interval_s):
            return
        owned = self.consumer.assignment
        # not waiting for the commit: one that fails later is covered by the next; those of
        # partitions that leave are made sure of in revoked(), the last in finish()
        if self._commit({p: o for p, o in self._published.items() if p in owned}, wait=False):
            self._published = {}
            self._committed_at = time.monotonic()

    def publish_untied(self, records: list[Record]) -> None:
        for record in records:
            self.producer.send(*record)
        deadline = time.monotonic() + self.revoke_timeout_s
        while self.producer.flush(1.0):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"not acknowledged within {self.revoke_timeout_s:g} s")

    def revoked(self, partitions: list[Partition], done: dict[Partition, int]) -> set[Partition]:
        leaving = {p: done[p] for p in partitions if p in done}  # covers those published
        for partition in partitions:
            self._published.pop(partition, None)
        in_flight = {p: self._in_flight.pop(p) for p in partitions if p in self._in_flight}
        finished = bool(in_flight) and self._failure is None and self._acknowledged()
        if finished:
            leaving.update(in_flight)
        if not self._commit(leaving) or not finished:
            return set()
        log.info("committed the batch in flight of the revoked partitions")
        return set(in_flight)

    def finish(self, done: dict[Partition, int]) -> None:
        self._published = {}  # `done` covers them
        self._commit(done)

    def _acknowledged(self) -> bool:
        """Wait (up to the timeout) for every record sent to be acknowledged."""
        deadline = time.monotonic() + self.revoke_timeout_s
        try:
            while self.producer.flush(1.0):
                if time.monotonic() > deadline:
                    log.warning(
                        "the batch of revoked partitions is not acknowledged yet: "
                        "their new owner replays it"
                    )
                    return False
        except DeliveryFailed as exc:
            self._failure = exc  # publish() raises it: the batch is sent again
            return False
        return True

    def _commit(self, next_offsets: dict[Partition, int], *, wait: bool = True) -> bool:
        try:
            self.consumer.commit(next_offsets, wait=wait)
        except KafkaUnavailable as exc:
            # the next batch commits later offsets; a replay meanwhile is caught by the
            # watermarks and re-publishes the stored outputs
            log.warning("%s; the next batch's commit will cover it", exc)
            return False
        return True


class ExactlyOnce:
    """Records and offsets in one transaction. No consumer call happens while a
    transaction is open, so a partition can only be revoked before it begins (while an
    outage holds the batch): then its new owner replays the batch."""

    def __init__(self, producer: TransactionalProducer, consumer: InputConsumer) -> None:
        self.producer = producer
        self.consumer = consumer

    def publish(self, records: list[Record], next_offsets: dict[Partition, int]) -> None:
        owned = self.consumer.assignment
        self.producer.begin()
        for record in records:
            self.producer.send(*record)
        self.producer.commit(
            {p: o for p, o in next_offsets.items() if p in owned}, self.consumer.group_metadata()
        )

    def publish_untied(self, records: list[Record]) -> None:
        self.publish(records, {})  # a transaction: no consumer call meanwhile

    def revoked(self, partitions: list[Partition], done: dict[Partition, int]) -> set[Partition]:
        return set()  # committed with their transactions

    def finish(self, done: dict[Partition, int]) -> None:
        pass

    def commit_due(self) -> None:
        pass  # offsets are committed with each batch's transaction
