"""Batch consumption of the input topics, with explicit offset commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from leadscore.errors import KafkaFatal, KafkaUnavailable
from leadscore.kafka.alignment import Alignment
from leadscore.kafka.client_log import client_config, client_error

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class Message(NamedTuple):
    """One input record, detached from the Kafka client."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class InputConsumer:
    """Consumes the input topics in batches; offsets are committed only when told to.

    `on_assign` and `on_revoke` are called (inside `poll_batch`) with the partitions that
    arrive or leave, so the caller can drop what it cached for them.

    With `partition_idle_s` > 0, the records of the owned partitions are handed out in
    event-time order across them (kafka/alignment.py): fetched records are buffered per
    partition, and a partition with more to read but nothing fetched holds the others
    back for at most that long (`on_wait` is told how long each poll waited). The time is
    the record timestamp (CreateTime), not the decoded `occurred_at`: it is there without
    decoding, and the producers that matter set it to the event time (a producer that
    leaves it to the client clock makes it the time of producing, close to the event time
    for live events; a backfill should set it). A partition's buffer holds at most two
    batches; past that its fetching pauses until one is left (fetching again takes a few
    hundred milliseconds). Records not handed out are never committed (the worker commits
    the offsets of those it processed) and are dropped when their partition leaves.
    """

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        *,
        on_assign: Callable[[list[Partition]], None] = lambda _: None,
        on_revoke: Callable[[list[Partition]], None] = lambda _: None,
        partition_idle_s: float = 0.0,
        on_wait: Callable[[float], None] = lambda _: None,
    ) -> None:
        self._consumer = Consumer(
            {
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                **client_config(),
                **config,
                "error_cb": self._on_error,
                "on_commit": _on_commit,
            }
        )
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._assigned: set[Partition] = set()
        self._fatal: str | None = None
        self._paused = False
        self._aligned: Alignment[Message] | None = (
            Alignment(partition_idle_s) if partition_idle_s > 0 else None
        )
        self._on_wait = on_wait
        self._limit = 2  # the most records buffered per partition: two batches
        self._held: set[Partition] = set()  # paused: its buffer is full
        self._sought: dict[Partition, int] = {}  # sought back to: nothing fetched since
        self.connected = False
        self._consumer.subscribe(
            list(topics), on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke
        )

    @property
    def assignment(self) -> set[Partition]:
        return set(self._assigned)

    def poll_batch(self, max_messages: int, linger_s: float, idle_s: float) -> list[Message]:
        """Up to `max_messages` records: those already fetched, at once; if none, the first
        to arrive within `idle_s`, and what else arrives within `linger_s` after it.

        (`consume(n, timeout)` alone waits until it has `n` records or the timeout ran
        out: at a moderate load every batch would wait the whole timeout.) Fetching
        paused by `keep_alive()` resumes here. Aligned, a partition waited for makes this
        wait up to `idle_s` (the wait goes on in the next call).
        """
        self._resume(max_messages)
        aligned = self._aligned
        if aligned is None:
            return self._records(self._consume(max_messages, linger_s, idle_s))
        started = time.monotonic()
        self._buffer(self._consume(max_messages, linger_s, 0 if len(aligned) else idle_s))
        waited = 0.0
        while (wait := aligned.wait_s(self._more(), time.monotonic())) is not None:
            timeout = min(wait, started + idle_s - time.monotonic())
            if timeout <= 0:
                break
            before = time.monotonic()
            self._buffer(self._consume(max_messages, 0, timeout))
            waited += time.monotonic() - before
        if waited:
            self._on_wait(waited)
        return aligned.take(max_messages, self._more(), time.monotonic())

    def _consume(self, max_messages: int, linger_s: float, idle_s: float) -> list[Any]:
        consume = self._consumer.consume
        try:
            records = consume(max_messages, 0)
            if not records and idle_s > 0:
                records = consume(1, idle_s)
                if records and max_messages > 1:
                    records += consume(max_messages - 1, linger_s)
        except KafkaException as exc:
            raise KafkaUnavailable(f"consume failed: {exc}") from exc
        if self._fatal:
            raise KafkaFatal(self._fatal)
        return records

    def _records(self, records: list[Any]) -> list[Message]:
        batch: list[Message] = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise KafkaFatal(f"consumer fatal error: {error.str()}")
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka consumer: %s", error.str())
                continue
            self.connected = True
            batch.append(_message(record))
        return batch

    def _buffer(self, records: list[Any]) -> None:
        """Add fetched records to their partitions' buffers (not those of partitions that
        left meanwhile); pause the fetching of a partition whose buffer is full."""
        aligned = self._aligned
        assert aligned is not None
        timestamps = {
            (r.topic(), r.partition(), r.offset()): r.timestamp()
            for r in records
            if r.error() is None
        }
        added: set[Partition] = set()
        for message in self._records(records):
            partition = (message.topic, message.partition)
            if partition not in self._assigned or message.offset < self._sought.get(partition, 0):
                continue  # left meanwhile, or fetched before it was sought back
            kind, timestamp = timestamps[(message.topic, message.partition, message.offset)]
            aligned.add(partition, None if kind == TIMESTAMP_NOT_AVAILABLE else timestamp, message)
            self._sought.pop(partition, None)
            added.add(partition)
        for partition in added:
            if aligned.count(partition) >= self._limit:
                self._hold(partition)

    def _hold(self, partition: Partition) -> None:
        """Pause a partition's fetching and, if records past the limit were fetched, seek
        it back to the first of them: they are dropped and fetched again later.

        It seeks to a record, never just past the last one kept: that offset may hold a
        transaction's commit marker and nothing after it, which the client steps over
        without handing out anything, and the partition would count as behind for ever
        (`position`: what it was sought back to, until a record comes)."""
        aligned = self._aligned
        assert aligned is not None
        kept = aligned.buffered(partition)
        self._consumer.pause([TopicPartition(*partition)])
        self._held.add(partition)
        if len(kept) <= self._limit:
            return
        again = kept[self._limit].offset
        try:
            self._consumer.seek(TopicPartition(*partition, again))
        except KafkaException as exc:  # keep them all: the next are still fetched after them
            log.warning("kafka consumer: seek failed (%s)", exc)
            return
        aligned.trim(partition, self._limit)
        self._sought[partition] = again

    def _resume(self, max_messages: int) -> None:
        """Resume the fetching paused by `keep_alive()`, and that of partitions whose
        buffer is down to a batch."""
        self._limit = 2 * max_messages
        aligned = self._aligned
        refill = {
            p
            for p in self._held
            if p not in self._assigned or aligned is None or aligned.count(p) <= max_messages
        }
        self._held -= refill
        resume = set(self._assigned) - self._held if self._paused else refill & self._assigned
        if resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in resume])
        self._paused = False

    def _more(self) -> set[Partition]:
        """The owned partitions with records not fetched yet (or not known not to have)."""
        more: set[Partition] = set()
        positions = self._consumer.position([TopicPartition(t, p) for t, p in self._assigned])
        for tp in positions:
            partition = (tp.topic, tp.partition)
            position = self._sought.get(partition, tp.offset)
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0 or (position < 0 and high > low) or 0 <= position < high:
                more.add(partition)
        return more

    def commit(self, next_offsets: dict[Partition, int], *, wait: bool = True) -> None:
        """Commit the next offset to read of each partition; without `wait`, the request
        is sent and its outcome logged when it comes (a later commit covers a failed one)."""
        if not next_offsets:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            if not wait:
                self._consumer.commit(offsets=offsets, asynchronous=True)
                return
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise KafkaUnavailable(f"offset commit failed: {exc}") from exc
        for tp in results or []:
            if tp.error is not None:
                raise KafkaUnavailable(f"offset commit failed for {tp.topic}[{tp.partition}]")

    def committed(
        self, partitions: list[Partition], timeout_s: float = 10.0
    ) -> dict[Partition, int]:
        """The group's committed offset of each partition (0 where none is committed)."""
        try:
            found = self._consumer.committed(
                [TopicPartition(t, p) for t, p in partitions], timeout=timeout_s
            )
        except KafkaException as exc:
            raise KafkaUnavailable(f"reading the committed offsets failed: {exc}") from exc
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}

    def group_metadata(self) -> Any:
        """Opaque group membership data that fences a transactional commit of offsets."""
        return self._consumer.consumer_group_metadata()

    def keep_alive(self) -> None:
        """Serve group callbacks while a batch waits, without taking new messages.

        Fetching is paused until the next `poll_batch()`; a message that still arrives (from
        a partition assigned just now) is buffered (aligned) or sought back, so that it is
        handed out by a later `poll_batch()`.
        """
        self._consumer.pause([TopicPartition(t, p) for t, p in self._assigned])
        self._paused = True
        try:
            records = self._consumer.consume(100, 0)
        except KafkaException as exc:
            log.warning("kafka consumer: %s", exc)
            return
        if self._aligned is not None:
            self._buffer(records)
            return
        first: dict[Partition, int] = {}
        for message in (_message(r) for r in records if r.error() is None):
            first.setdefault((message.topic, message.partition), message.offset)
        for (topic, partition), offset in first.items():
            self._consumer.pause([TopicPartition(topic, partition)])
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def lag(self) -> dict[Partition, int]:
        """Records behind the end of each assigned partition (those fetched but not handed
        out included).

        Built on the high watermarks carried in fetch responses (`cached=True`), which are
        right on every Kafka-protocol broker, not on a ListOffsets request.
        """
        lag: dict[Partition, int] = {}
        for partition in self._assigned:
            high = self.end_offset(partition)
            position = self.position(partition)
            if high is not None and position is not None:
                lag[partition] = max(high - position, 0)
        return lag

    def end_offset(self, partition: Partition) -> int | None:
        """The offset after the last record of a partition, as of the latest fetch
        response; None until one came."""
        _, high = self._consumer.get_watermark_offsets(TopicPartition(*partition), cached=True)
        return high if high >= 0 else None

    def log_start(self, partition: Partition, timeout_s: float = 10.0) -> int:
        """The first offset a partition still holds (retention deletes the older ones),
        asked of the broker."""
        try:
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(*partition), timeout=timeout_s, cached=False
            )
        except KafkaException as exc:
            raise KafkaUnavailable(f"reading the log start offsets failed: {exc}") from exc
        return max(int(low), 0)

    def position(self, partition: Partition) -> int | None:
        """The offset after the last message handed to the worker (None: none yet): the
        first one fetched but not handed out yet, if any.

        Past a transaction's commit marker too, which is never handed out: the offset
        after a partition's last message is then one short of its end."""
        if self._aligned is not None:
            first = self._aligned.first(partition)
            if first is not None:
                return first.offset
            if partition in self._sought:
                return self._sought[partition]
        (tp,) = self._consumer.position([TopicPartition(*partition)])
        return int(tp.offset) if tp.offset >= 0 else None

    def close(self) -> None:
        """Leave the group (a clean, fast rebalance for the others)."""
        self._consumer.close()

    def _assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        added = [(tp.topic, tp.partition) for tp in partitions]
        self._assigned.update(added)
        # a partition keeps its paused state across a revoke and a new assignment: one
        # paused by keep_alive() before it was revoked must be resumed by the next poll
        self._paused = True
        self.connected = True
        log.info("assigned %s", _describe(added))
        self._on_assign(added)

    def _revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        removed = [(tp.topic, tp.partition) for tp in partitions]
        self._assigned.difference_update(removed)
        if self._aligned is not None:  # their new owner reads them again
            self._aligned.forget(removed)
        for partition in removed:
            self._sought.pop(partition, None)
            self._held.discard(partition)  # resumed if it comes back
        log.info("revoked %s", _describe(removed))
        self._on_revoke(removed)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = f"consumer fatal error: {error.str()}"
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.connected = False
        client_error("consumer", error)


def _on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """The outcome of a commit sent without waiting (served by the next consume)."""
    failed = [tp for tp in partitions if tp.error is not None]
    if error is not None or failed:
        reason = str(error) if error is not None else str(failed[0].error)
        log.warning("offset commit failed (%s); the next commit covers it", reason)


def _message(record: Any) -> Message:
    """Detach a confluent-kafka message (not an error) into our own type."""
    return Message(
        record.topic(),
        record.partition(),
        record.offset(),
        record.key(),
        record.value(),
        record.headers() or [],
    )


def _describe(partitions: list[Partition]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)) or "nothing"


class TopicReader:
    """Reads whole topics from the beginning without a consumer group (for views and tools)."""

    def __init__(self, config: dict[str, Any], topics: Sequence[str]) -> None:
        self._consumer = Consumer(
            {
                "group.id": "leadscore-reader",
                "enable.auto.commit": False,
                **client_config(),
                **config,
            }
        )
        metadata = self._consumer.list_topics(timeout=30)
        assignment = []
        for topic in topics:
            partitions = metadata.topics[topic].partitions if topic in metadata.topics else {0: 0}
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        self._consumer.assign(assignment)

    def read(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            records = self._consumer.consume(max_messages, timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailable(f"consume failed: {exc}") from exc
        return [_message(r) for r in records if r.error() is None]

    def close(self) -> None:
        self._consumer.close()
