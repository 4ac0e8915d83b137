"""The worker: one loop, batch by batch, in data-flow order.

    consume  a batch of up to N messages from the input topics
    decode   Avro -> typed event; undecodable or invalid -> dead-letter topic
    resolve  group the events by profile (the lead, or the anonymous profile)
    score    pure: previous state + events + model -> new state + outputs
    persist  one conditional write per changed profile: state, offset watermarks, outputs
    publish  outputs and dead letters, then commit the input offsets

Why this order gives exactly-once state and at-least-once (or exactly-once) output:
- A profile's new state, the highest offset of each (topic, partition) folded into it and
  the outputs those events caused are written in one atomic Redis call, conditional on
  the version that was read. A replayed message (offset at or below the profile's
  watermark) changes nothing, so after any crash, restart or rebalance every event changes
  the state exactly once; a conflicting writer (two workers briefly owning a partition)
  makes us re-read and recompute instead of overwriting.
- A replayed message whose outputs are kept with the profile publishes them again, with
  their ids: a crash after the state write but before the outputs were acknowledged
  loses nothing.
- Input offsets are committed only with or after the batch's outputs and dead letters:
  at-least-once commits them once every record is acknowledged (a crash before re-sends
  the same ids; consumers deduplicate), exactly-once commits records and offsets in one
  Kafka transaction (`read_committed` consumers see each output once).
- Outages (Redis or Kafka unreachable) hold the batch where it is and retry with back-off,
  keeping the consumer in its group; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import redis

from leadscore.codec import InputDecoder, OutputEncoder
from leadscore.errors import (
    DeliveryFailed,
    InvalidEvent,
    KafkaUnavailable,
    LeadscoreError,
    PartitionsLost,
    StateUnavailable,
)
from leadscore.kafka.consumer import InputConsumer, Message, Partition
from leadscore.kafka.dead_letter import dead_letter
from leadscore.kafka.producer import Record, RecordProducer, TransactionalProducer
from leadscore.kafka.publisher import AtLeastOnce, ExactlyOnce, Publisher
from leadscore.metrics import Metrics, MetricsServer
from leadscore.model import Model
from leadscore.scoring.events import Event, ProfileKey
from leadscore.scoring.score import score
from leadscore.settings import Settings
from leadscore.state.encoding import StoredOutput
from leadscore.state.store import StateStore, Stored, Write

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Positioned:
    """A decoded event and the input position it came from."""

    event: Event
    partition: Partition
    offset: int


class Publication(NamedTuple):
    """An encoded output; `occurred_at` is None for one published again after a replay."""

    record: Record
    kind: str
    occurred_at: int | None


class Worker:
    """Consumes, scores, persists and publishes until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        model: Model,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.decoders = {
            t.name: InputDecoder(
                t.record_type, max_clock_skew_ms=settings.worker.max_clock_skew_ms, clock=clock
            )
            for t in settings.kafka.input_topics
        }
        self.encode = OutputEncoder(clock)
        self.redis_ok = False
        self.stop = threading.Event()
        self._give_up_at: float | None = None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then finish the batch in hand, commit and leave the group."""
        self.stop = stop
        with self.connected():
            last_report = 0.0
            while not stop.is_set():
                messages = self.retry("consume", self.poll)
                if messages:
                    self.process(messages)
                if time.monotonic() - last_report >= 1.0:
                    self.metrics.set_lag(self.consumer.lag())
                    self.metrics.ready.set(1 if self.ready() else 0)
                    last_report = time.monotonic()

    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        """Metrics server, Redis, producer and consumer, closed (group left) on exit."""
        s = self.settings
        with contextlib.ExitStack() as stack:
            if s.metrics.port:
                server = MetricsServer(self.metrics, s.metrics.port, self.ready, s.metrics.host)
                server.start()
                stack.callback(server.stop)
                log.info("metrics on http://%s:%d/metrics", s.metrics.host, server.port)
            client = redis.Redis.from_url(
                s.redis.url.value, socket_timeout=5, socket_connect_timeout=2
            )
            stack.callback(client.close)
            self.store = StateStore(
                client, namespace=s.redis.namespace, ttl_ms=s.redis.state_ttl_ms
            )
            self.redis_ok = self.store.ping()
            self.consumer = InputConsumer(s.kafka.consumer_config(), list(self.decoders))
            stack.callback(self._leave_group)
            self.publisher = self._publisher()
            log.info("consuming %s (%s)", ", ".join(self.decoders), s.kafka.processing_guarantee)
            yield

    def _publisher(self) -> Publisher:
        kafka = self.settings.kafka
        if kafka.processing_guarantee == "exactly-once":
            producer = TransactionalProducer(kafka.producer_config())
            self.producer: RecordProducer = producer
            return ExactlyOnce(producer, self.consumer)
        self.producer = RecordProducer(kafka.producer_config())
        return AtLeastOnce(self.producer, self.consumer, self._waiting)

    def _leave_group(self) -> None:
        log.info("stopping: leaving the consumer group")
        self.consumer.close()
        if hasattr(self, "producer"):
            self.producer.close(self.settings.worker.shutdown_timeout_s)

    def poll(self) -> list[Message]:
        w = self.settings.worker
        return self.consumer.poll_batch(w.batch_size, w.batch_timeout_ms / 1000)

    def process(self, messages: list[Message]) -> None:
        """One batch, every step in order; returns once its offsets are committed."""
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(messages))
        events, dead_letters = self.decode(messages)
        outputs = self.retry("persist state", lambda: self.score_and_persist(events))
        records = dead_letters + [o.record for o in outputs]
        try:
            self.retry("publish", lambda: self.publisher.publish(records, next_offsets(messages)))
        except PartitionsLost as exc:
            log.warning("%s: the partitions' new owner replays this batch", exc)
            return
        self.count_published(outputs)
        self.metrics.batch_duration.observe(time.perf_counter() - started)

    # ---- the steps --------------------------------------------------------------------------

    def decode(self, messages: list[Message]) -> tuple[list[Positioned], list[Record]]:
        """Typed events, and dead letters for everything that cannot be scored."""
        events, dead_letters = [], []
        dlq_topic = self.settings.kafka.dlq_topic
        for message in messages:
            decoder = self.decoders.get(message.topic)
            try:
                if decoder is None:
                    raise InvalidEvent("unknown-topic", f"no record type for {message.topic}")
                event = decoder(message.value)
            except InvalidEvent as exc:
                dead_letters.append(dead_letter(message, dlq_topic, exc.reason, str(exc)))
                self.metrics.events_dead_lettered.labels(exc.reason).inc()
                continue
            self.metrics.events_consumed.labels(event.type.value).inc()
            events.append(Positioned(event, (message.topic, message.partition), message.offset))
        return events, dead_letters

    def score_and_persist(self, events: list[Positioned]) -> list[Publication]:
        """Score each profile's events and write the profiles, re-scoring on conflicts."""
        by_profile: dict[ProfileKey, list[Positioned]] = defaultdict(list)
        for item in events:
            by_profile[item.event.profile_key].append(item)
        outputs: list[Publication] = []
        todo = list(by_profile)
        while todo:
            with self.metrics.redis_call("load"):
                stored = self.store.load(todo)
            writes, produced = [], {}
            for profile in todo:
                write, produced[profile] = self.score_profile(
                    profile, stored[profile], by_profile[profile]
                )
                if write is not None:
                    writes.append(write)
            with self.metrics.redis_call("save"):
                conflicts = set(self.store.save(writes))
            self.redis_ok = True
            self.metrics.state_conflicts.inc(len(conflicts))
            for profile, publications in produced.items():
                if profile not in conflicts:
                    outputs.extend(publications)
            todo = [p for p in todo if p in conflicts]
        return outputs

    def score_profile(
        self, profile: ProfileKey, stored: Stored, items: list[Positioned]
    ) -> tuple[Write | None, list[Publication]]:
        """Fold the events not yet applied to this profile (above its watermarks), and
        publish again the kept outputs of those already applied (a replay)."""
        fresh: list[Positioned] = []
        replayed: list[Positioned] = []
        for item in items:
            applied = item.offset <= stored.watermarks.get(item.partition, -1)
            (replayed if applied else fresh).append(item)
        publications = self.republish(profile, stored, replayed)
        if not fresh:
            return None, publications
        result = score(
            profile,
            stored.state,
            (i.event for i in fresh),
            self.model,
            memory=self.settings.worker.event_memory,
        )
        if result.duplicates:
            self.metrics.events_skipped.labels("event_id").inc(result.duplicates)
        if result.speed_to_lead_ms is not None and profile.is_lead:
            self.metrics.speed_to_lead.observe(result.speed_to_lead_ms / 1000)
        causes: dict[str, Positioned] = {}
        watermarks: dict[Partition, int] = {}
        for item in fresh:
            causes.setdefault(item.event.event_id, item)
            watermarks[item.partition] = max(item.offset, watermarks.get(item.partition, -1))
        kept: dict[Partition, list[StoredOutput]] = defaultdict(list)
        if profile.is_lead or self.settings.worker.emit_anonymous:
            topic = self.settings.kafka.output_topic
            for output in result.outputs:
                cause = causes[output.cause_event_id]
                key, value, headers = self.encode(output)
                kept[cause.partition].append(StoredOutput(cause.offset, output.kind, value))
                publications.append(
                    Publication(Record(topic, key, value, headers), output.kind, output.occurred_at)
                )
        return Write(profile, stored.version, result.state, watermarks, kept), publications

    def republish(
        self, profile: ProfileKey, stored: Stored, replayed: list[Positioned]
    ) -> list[Publication]:
        """The kept outputs caused by replayed messages, exactly as first published."""
        if not replayed:
            return []
        self.metrics.events_skipped.labels("watermark").inc(len(replayed))
        topic = self.settings.kafka.output_topic
        publications = []
        for item in replayed:
            for kept in stored.outputs.get(item.partition, []):
                if kept.cause_offset == item.offset:
                    record = Record(
                        topic,
                        profile.id.encode(),
                        kept.value,
                        [("leadscore-type", kept.kind.encode())],
                    )
                    publications.append(Publication(record, kept.kind, None))
        return publications

    def count_published(self, outputs: list[Publication]) -> None:
        now = self.clock()
        for output in outputs:
            self.metrics.outputs_produced.labels(output.kind).inc()
            if output.occurred_at is not None:
                self.metrics.event_to_publish.observe(max(now - output.occurred_at / 1000, 0))

    # ---- outages ----------------------------------------------------------------------------

    def retry(self, what: str, step: Callable[[], T]) -> T:
        """Run `step`, retrying with back-off while Redis or Kafka is unavailable.

        The consumer stays in its group meanwhile, with fetching paused. Once told to stop,
        it gives up after the shutdown timeout: nothing of the batch is committed, so it is
        replayed after the restart.
        """
        for delay in _backoff():
            try:
                return step()
            except (StateUnavailable, KafkaUnavailable, DeliveryFailed) as exc:
                if isinstance(exc, StateUnavailable):
                    self.redis_ok = False
                self.metrics.ready.set(0)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._waiting()
                    time.sleep(min(0.2, delay))
                if isinstance(exc, StateUnavailable):
                    self.redis_ok = self.store.ping()
        raise AssertionError("unreachable")

    def _waiting(self) -> None:
        """Called while a batch waits: keep the group membership, honour the shutdown."""
        if self.stop.is_set():
            now = time.monotonic()
            if self._give_up_at is None:
                self._give_up_at = now + self.settings.worker.shutdown_timeout_s
            elif now > self._give_up_at:
                raise LeadscoreError(
                    "stopping: the batch in hand could not be finished within the shutdown "
                    "timeout; it is processed again after a restart"
                )
        self.consumer.keep_alive()

    def ready(self) -> bool:
        consumer = getattr(self, "consumer", None)
        return bool(consumer and consumer.connected and self.redis_ok)


def next_offsets(messages: list[Message]) -> dict[Partition, int]:
    """The offset to commit for every partition of a batch: one past its last message."""
    offsets: dict[Partition, int] = {}
    for m in messages:
        offsets[(m.topic, m.partition)] = m.offset + 1
    return offsets


def _backoff() -> Iterator[float]:
    delay = 0.1
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF_S)
