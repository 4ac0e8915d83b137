"""The worker: one loop, batch by batch, in data-flow order.

    consume  a batch of up to N messages from the input topics
    decode   Avro -> typed event; undecodable or invalid -> dead-letter topic
    resolve  group the events by profile (the lead, or the anonymous profile)
    score    pure: previous state + events + model -> new state + outputs
    persist  one conditional write per changed profile, with its offset watermarks
    publish  outputs (and dead letters) to Kafka, then wait for every acknowledgement
    commit   the input offsets

Why this order gives exactly-once state and at-least-once output:
- A profile's new state and the highest offset of each (topic, partition) folded into it
  are written in one atomic Redis call, conditional on the version that was read. A
  replayed message (offset at or below the profile's watermark) is skipped, so after any
  crash, restart or rebalance every event changes the state exactly once; a conflicting
  writer (two workers briefly owning a partition) makes us re-read and recompute instead
  of overwriting.
- Input offsets are committed only after every output and dead letter of the batch is
  acknowledged, so nothing is lost: a crash before the commit replays the batch. Outputs
  carry ids derived from their cause, so a consumer deduplicates the re-sent ones by id.
- Outages (Redis or Kafka unreachable) pause the batch where it is and retry with
  back-off, keeping the consumer alive in its group; nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import redis

from leadscore.codec import InputDecoder, OutputEncoder
from leadscore.errors import (
    DeliveryFailed,
    InvalidEvent,
    KafkaUnavailable,
    LeadscoreError,
    StateUnavailable,
)
from leadscore.kafka.consumer import InputConsumer, Message, Partition
from leadscore.kafka.dead_letter import dead_letter
from leadscore.kafka.producer import Record, RecordProducer
from leadscore.metrics import Metrics, MetricsServer
from leadscore.model import Model
from leadscore.scoring.events import Event, ProfileKey
from leadscore.scoring.outputs import Output
from leadscore.scoring.score import score
from leadscore.settings import Settings
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
        self.consumer: InputConsumer | None = None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then finish the batch in hand, commit and leave the group."""
        s = self.settings
        server = None
        if s.metrics.port:
            server = MetricsServer(self.metrics, s.metrics.port, self.ready, s.metrics.host)
            server.start()
            log.info("metrics on http://%s:%d/metrics", s.metrics.host, server.port)
        client = redis.Redis.from_url(s.redis.url.value, socket_timeout=5, socket_connect_timeout=2)
        self.store = StateStore(client, namespace=s.redis.namespace, ttl_ms=s.redis.state_ttl_ms)
        self.producer = RecordProducer(s.kafka.producer_config())
        self.consumer = InputConsumer(
            s.kafka.consumer_config(), list(self.decoders), on_revoke=self._on_revoke
        )
        self.stop = stop
        self._give_up_at: float | None = None
        self.redis_ok = self.store.ping()
        log.info("consuming %s", ", ".join(self.decoders))
        last_report = 0.0
        try:
            while not stop.is_set():
                messages = self.retry("consume", self._poll)
                if messages:
                    self.process(messages)
                if time.monotonic() - last_report >= 1.0:
                    self.metrics.set_lag(self.consumer.lag())
                    self.metrics.ready.set(1 if self.ready() else 0)
                    last_report = time.monotonic()
        finally:
            log.info("stopping: leaving the consumer group")
            self.consumer.close()
            self.producer.close(s.worker.shutdown_timeout_s)
            client.close()
            if server:
                server.stop()

    def _poll(self) -> list[Message]:
        assert self.consumer is not None
        w = self.settings.worker
        return self.consumer.poll_batch(w.batch_size, w.batch_timeout_ms / 1000)

    def process(self, messages: list[Message]) -> None:
        """One batch, every step in order; returns once its offsets are committed."""
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(messages))
        events, dead_letters = self.decode(messages)
        outputs = self.retry("persist state", lambda: self.score_and_persist(events))
        self.publish(outputs, dead_letters)
        self.commit(messages)
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

    def score_and_persist(self, events: list[Positioned]) -> list[Output]:
        """Score each profile's events and write the profiles, re-scoring on conflicts."""
        by_profile: dict[ProfileKey, list[Positioned]] = defaultdict(list)
        for item in events:
            by_profile[item.event.profile_key].append(item)
        outputs: list[Output] = []
        todo = list(by_profile)
        while todo:
            with self.metrics.redis_call("load"):
                stored = self.store.load(todo)
            writes, produced = [], {}
            for profile in todo:
                write, profile_outputs = self.score_profile(
                    profile, stored[profile], by_profile[profile]
                )
                if write is not None:
                    writes.append(write)
                    produced[profile] = profile_outputs
            with self.metrics.redis_call("save"):
                conflicts = set(self.store.save(writes))
            self.redis_ok = True
            self.metrics.state_conflicts.inc(len(conflicts))
            for profile, profile_outputs in produced.items():
                if profile not in conflicts:
                    outputs.extend(profile_outputs)
            todo = [p for p in todo if p in conflicts]
        return outputs

    def score_profile(
        self, profile: ProfileKey, stored: Stored, items: list[Positioned]
    ) -> tuple[Write | None, list[Output]]:
        """Fold the events not yet applied to this profile (above its watermarks)."""
        fresh = [i for i in items if i.offset > stored.watermarks.get(i.partition, -1)]
        replayed = len(items) - len(fresh)
        if replayed:
            self.metrics.events_skipped.labels("watermark").inc(replayed)
        if not fresh:
            return None, []
        result = score(
            profile,
            stored.state,
            (i.event for i in fresh),
            self.model,
            memory=self.settings.worker.event_memory,
        )
        if result.duplicates:
            self.metrics.events_skipped.labels("event_id").inc(result.duplicates)
        watermarks: dict[Partition, int] = {}
        for item in fresh:
            watermarks[item.partition] = max(item.offset, watermarks.get(item.partition, -1))
        write = Write(profile, stored.version, result.state, watermarks)
        if not profile.is_lead and not self.settings.worker.emit_anonymous:
            return write, []
        return write, result.outputs

    def publish(self, outputs: list[Output], dead_letters: list[Record]) -> None:
        """Send the outputs and dead letters and wait until every one is acknowledged.

        If the broker refuses a record, the whole batch is sent again (with the same ids:
        at-least-once) until all of it is acknowledged.
        """
        topic = self.settings.kafka.output_topic
        records = dead_letters + [Record(topic, *self.encode(o)) for o in outputs]

        def send_and_wait() -> None:
            for record in records:
                self.producer.send(*record)
            while self.producer.flush(1.0):
                self._check_shutdown_deadline("publish")
                self.consumer.keep_alive()  # type: ignore[union-attr]

        self.retry("publish", send_and_wait)
        now = self.clock()
        for output in outputs:
            self.metrics.outputs_produced.labels(output.kind).inc()
            self.metrics.event_to_publish.observe(max(now - output.occurred_at / 1000, 0))

    def commit(self, messages: list[Message]) -> None:
        """Commit the next offset of every partition in the batch.

        A failed commit is only logged: the next batch commits later offsets, and anything
        replayed meanwhile is caught by the watermarks.
        """
        assert self.consumer is not None
        next_offsets: dict[Partition, int] = {}
        for m in messages:
            next_offsets[(m.topic, m.partition)] = m.offset + 1
        try:
            self.consumer.commit(next_offsets)
        except KafkaUnavailable as exc:
            log.warning("%s; the next batch's commit will cover it", exc)

    # ---- outages and rebalances -------------------------------------------------------------

    def retry(self, what: str, step: Callable[[], T]) -> T:
        """Run `step`, retrying with back-off while Redis or Kafka is unavailable.

        The consumer stays in its group meanwhile, with fetching paused. Once told to stop,
        it gives up after the shutdown timeout: nothing of the batch is committed, so it is
        replayed after the restart.
        """
        assert self.consumer is not None
        for delay in _backoff():
            try:
                return step()
            except (StateUnavailable, KafkaUnavailable, DeliveryFailed) as exc:
                if isinstance(exc, StateUnavailable):
                    self.redis_ok = False
                self.metrics.ready.set(0)
                self._check_shutdown_deadline(what)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self.consumer.keep_alive()
                    time.sleep(min(0.2, delay))
                if isinstance(exc, StateUnavailable):
                    self.redis_ok = self.store.ping()
        raise AssertionError("unreachable")

    def _check_shutdown_deadline(self, what: str) -> None:
        if not self.stop.is_set():
            return
        now = time.monotonic()
        if self._give_up_at is None:
            self._give_up_at = now + self.settings.worker.shutdown_timeout_s
        elif now > self._give_up_at:
            raise LeadscoreError(
                f"stopping: {what} did not succeed within the shutdown timeout; the "
                "uncommitted batch will be processed again after a restart"
            )

    def ready(self) -> bool:
        return bool(self.consumer and self.consumer.connected and self.redis_ok)

    def _on_revoke(self, partitions: list[Partition]) -> None:
        # Nothing is in flight here: a batch is committed before the next poll, and the
        # worker keeps no per-partition cache yet.
        log.info("partitions revoked: %d", len(partitions))


def _backoff() -> Iterator[float]:
    delay = 0.1
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF_S)
