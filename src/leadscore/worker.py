"""The worker: one loop, batch by batch, in data-flow order.

    consume  a batch of up to N messages from the input topics
    decode   Avro -> typed event; undecodable or invalid -> dead-letter topic
    resolve  group the events by profile (the lead, or the anonymous profile)
    score    pure: previous state + events + model -> new state + outputs
    persist  one script call: per changed profile a conditional write of its state and
             offset watermarks, the time of its next time-driven change in its
             partition's schedule, and the outputs its events caused, kept (per input
             partition and offset) until they are published
    publish  outputs and dead letters, then commit the input offsets (at-least-once: at
             most every commit interval)
    sweep    about every second: the profiles of owned partitions whose time-driven change
             came due (inactivity, decay) are re-evaluated, persisted, published

Why this order gives exactly-once state and at-least-once (or exactly-once) output:
- A profile's new state, the highest offset of each (topic, partition) folded into it and
  the outputs those events caused are written in one atomic Redis call (the batch's
  script), conditional on the version that was read. A replayed message (offset at or
  below the profile's watermark) changes nothing, so after any crash, restart or
  rebalance every event changes the state exactly once; a conflicting writer (two
  workers briefly owning a partition) makes us re-read and recompute instead of
  overwriting.
- A replayed message whose outputs are still kept publishes them again, with their ids:
  a crash after the state write but before the outputs were acknowledged loses nothing.
  Once a batch is published, the next batch's write drops what it kept.
- Input offsets are committed only with or after the batch's outputs and dead letters:
  at-least-once commits them after every record is acknowledged, at most every commit
  interval (a crash before the commit replays those batches: the watermarks skip their
  events, outputs not yet acknowledged are re-sent with the same ids, dead letters are
  sent again; consumers deduplicate), exactly-once commits records and offsets in one
  Kafka transaction (`read_committed` consumers see each output once).
- Outages (Redis or Kafka unreachable) hold the batch where it is and retry with back-off,
  keeping the consumer in its group; nothing is skipped. Partitions revoked meanwhile are
  replayed by their new owner, so the batch publishes only the records of those it still
  owns (the others' outputs stay kept for that replay).
- A time-driven change has no input offset to replay, so its outputs are kept with the
  profile (`pending`) and its schedule entry stays due until they are acknowledged (no
  partition can be revoked in between: no consumer call is made meanwhile): a crash
  in between sweeps the profile again, which republishes them (same ids, derived from the
  profile and the due time) and changes the state no further. The next event write of the
  profile takes them over with its own outputs. In exactly-once mode a crash after the
  transaction commits but before they are forgotten re-sends them in a new transaction:
  consumers deduplicate by id.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis

from leadscore.clock import Clock
from leadscore.codec import InputDecoder, OutputEncoder
from leadscore.codec.framed import FramedInputDecoder, FramedOutputEncoder
from leadscore.codec.registry import connect
from leadscore.errors import (
    DeliveryFailed,
    InvalidEvent,
    KafkaUnavailable,
    LeadscoreError,
    PartitionsLost,
    StateUnavailable,
)
from leadscore.events import ProfileKey
from leadscore.kafka.consumer import InputConsumer, Message, Partition
from leadscore.kafka.dead_letter import dead_letter
from leadscore.kafka.producer import Record, RecordProducer, TransactionalProducer
from leadscore.kafka.publisher import AtLeastOnce, ExactlyOnce, Publisher
from leadscore.metrics import Metrics, MetricsServer
from leadscore.model import Model
from leadscore.profiles import Positioned, ProfileUpdates, Publication
from leadscore.settings import Settings
from leadscore.startup import wait_for_services
from leadscore.state.cache import StateCache
from leadscore.state.store import Due, Kept, StateStore, Stored

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
GC_INTERVAL_S = 30.0
IDLE_WAIT_S = 0.1  # the longest a poll waits while idle: how soon a stop or sweep is noticed

T = TypeVar("T")


class StopRequest(threading.Event):
    """A stop request that remembers when it was made: the shutdown timeout runs from it,
    even while a call that blocks (Redis unreachable) delays noticing it."""

    at: float | None = None

    def set(self) -> None:
        if self.at is None:
            self.at = time.monotonic()
        super().set()


class Worker:
    """Consumes, scores, persists and publishes until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        model: Model,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics or Metrics()
        w = settings.worker
        self.clock = clock = clock or Clock(w.clock_speed, w.clock_start_ms)
        skew = settings.worker.max_clock_skew_ms
        sr = settings.schema_registry
        registry = connect(sr.client_config(), sr.display_url) if sr.url else None
        self.decoders = {
            t.name: FramedInputDecoder(t.record_type, registry, max_clock_skew_ms=skew, clock=clock)
            if registry
            else InputDecoder(t.record_type, max_clock_skew_ms=skew, clock=clock)
            for t in settings.kafka.input_topics
        }
        self.encode = (
            FramedOutputEncoder(registry, settings.kafka.output_topic, clock)
            if registry
            else OutputEncoder(clock)
        )
        self.updates = ProfileUpdates(
            model,
            settings.worker,
            self.encode,
            self.metrics,
            output_topic=settings.kafka.output_topic,
            input_topics=frozenset(self.decoders),
        )
        self.positions: dict[Partition, int] = {}  # next offset to process, as committed
        self.event_times: dict[Partition, int] = {}  # newest event time processed
        self.cache = StateCache(settings.worker.state_cache)
        # outputs kept for a replay, by (partition, field): those the batch in hand wrote,
        # those published (dropped by the next write), and those read back for a replay
        # (dropped once every event up to their last was published again)
        self.kept_names = (f"{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count())
        self.batch_kept: list[tuple[Partition, str]] = []
        self.published_kept: list[tuple[Partition, str]] = []
        self.replayed_kept: dict[tuple[Partition, str], int] = {}
        self.handed_over: set[Partition] = set()  # revoked with the batch in flight committed
        self.redis_ok = False
        self.stop = threading.Event()
        self._give_up_at: float | None = None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then finish the batch in hand, commit and leave the group."""
        self.stop = stop
        with self.connected(), collecting_garbage_between_batches():
            last_report = last_sweep = last_collect = time.monotonic()
            while not stop.is_set():
                messages = self.retry("consume", self.poll)
                if messages:
                    self.process(messages)
                self.publisher.commit_due()
                if time.monotonic() - last_sweep >= self.settings.worker.sweep_interval_s:
                    more = self.sweep()
                    last_sweep = 0.0 if more else time.monotonic()
                if time.monotonic() - last_collect >= GC_INTERVAL_S:
                    gc.collect(0)  # the young objects only: see collecting_garbage_...
                    last_collect = time.monotonic()
                if time.monotonic() - last_report >= 1.0:
                    self.metrics.set_lag(self.consumer.lag())
                    self.metrics.ready.set(1 if self.ready() else 0)
                    last_report = time.monotonic()

    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        """Metrics server, Redis, producer and consumer, closed (group left) on exit; the
        clients start once the start-up checks found the broker, the topics and Redis
        (`/readyz` says not ready until then)."""
        s = self.settings
        with contextlib.ExitStack() as stack:
            if s.metrics.port:
                server = MetricsServer(self.metrics, s.metrics.port, self.ready, s.metrics.host)
                server.start()
                stack.callback(server.stop)
                log.info("metrics on http://%s:%d/metrics", s.metrics.host, server.port)
            # a short timeout: a call in flight when SIGTERM comes delays the shutdown by it
            client = redis.Redis.from_url(
                s.redis.url.value, socket_timeout=2, socket_connect_timeout=2
            )
            stack.callback(client.close)
            self.store = StateStore(
                client, namespace=s.redis.namespace, ttl_ms=s.redis.state_ttl_ms
            )
            if not wait_for_services(s, self.store, self.stop):
                yield  # stopped while waiting: no client was started, the loop does not run
                return
            self.redis_ok = True
            self.consumer = InputConsumer(
                s.kafka.consumer_config(),
                list(self.decoders),
                on_revoke=self._revoked,
                partition_idle_s=s.worker.partition_idle_ms / 1000,
                on_wait=self.metrics.partition_wait.inc,
            )
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
        w = self.settings.worker
        return AtLeastOnce(
            self.producer, self.consumer, self._waiting, w.shutdown_timeout_s, w.commit_interval_s
        )

    def _leave_group(self) -> None:
        log.info("stopping: leaving the consumer group")
        if hasattr(self, "publisher"):
            owned = self.consumer.assignment
            self.publisher.finish({p: o for p, o in self.positions.items() if p in owned})
            if self.published_kept and self.redis_ok:  # not in an outage: they expire
                with contextlib.suppress(StateUnavailable):
                    self.store.save([], (), self.published_kept)
        self.consumer.close()
        if hasattr(self, "producer"):
            self.producer.close(self.settings.worker.shutdown_timeout_s)

    def _revoked(self, partitions: list[Partition]) -> None:
        if hasattr(self, "publisher"):  # commit what was done on them, and the batch in flight
            done = {p: self.positions[p] for p in partitions if p in self.positions}
            self.handed_over |= self.publisher.revoked(partitions, done)
        self.cache.clear()
        for partition in partitions:
            self.positions.pop(partition, None)
            self.event_times.pop(partition, None)
        for kept in [k for k in self.replayed_kept if k[0] in partitions]:
            del self.replayed_kept[kept]  # the new owner replays them and drops them

    def poll(self) -> list[Message]:
        w = self.settings.worker
        return self.consumer.poll_batch(w.batch_size, w.batch_linger_ms / 1000, IDLE_WAIT_S)

    def process(self, messages: list[Message]) -> None:
        """One batch, every step in order; returns once its offsets are committed."""
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(messages))
        events, dead_letters = self.retry("decode", lambda: self.decode(messages))
        outputs = self.retry("persist state", lambda: self.score_and_persist(events))
        records = dead_letters + [(o.partition, o.record) for o in outputs]
        offsets = next_offsets(messages)
        try:
            self.retry("publish", lambda: self.publisher.publish(self.owned(records), offsets))
        except PartitionsLost as exc:
            log.warning("%s: the partitions' new owner replays this batch", exc)
            return
        owned = self.consumer.assignment  # not those revoked while the batch waited
        self.positions.update((p, o) for p, o in offsets.items() if p in owned)
        # published: the next write drops them (not those a new owner replays)
        finished = owned | self.handed_over
        self.handed_over = set()
        self.published_kept = [kept for kept in self.batch_kept if kept[0] in finished] + [
            kept
            for kept, last in self.replayed_kept.items()
            if last < self.positions.get(kept[0], 0)
        ]
        for kept in self.published_kept:
            self.replayed_kept.pop(kept, None)
        for item in events:
            if item.partition not in owned:
                continue
            seen = self.event_times.get(item.partition, item.event.occurred_at)
            self.event_times[item.partition] = max(seen, item.event.occurred_at)
        self.count_published([o for o in outputs if o.partition in finished])
        self.metrics.batch_duration.observe(time.perf_counter() - started)

    def owned(self, records: list[tuple[Partition | None, Record]]) -> list[Record]:
        """The records to publish now: not those caused by messages of partitions revoked
        since the batch was consumed (while an outage held it). Their new owner replays
        those messages and publishes them (kept with the profiles if written here)."""
        owned = self.consumer.assignment
        return [r for p, r in records if p is None or p in owned]

    # ---- the steps --------------------------------------------------------------------------

    def decode(
        self, messages: list[Message]
    ) -> tuple[list[Positioned], list[tuple[Partition | None, Record]]]:
        """Typed events, and dead letters (with their input partition) for everything that
        cannot be scored. Counted at the end: an unreachable schema registry makes the
        worker decode the batch again."""
        events: list[Positioned] = []
        dead_letters: list[tuple[Partition | None, Record]] = []
        dlq_topic = self.settings.kafka.dlq_topic
        decoders = self.decoders
        consumed: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for message in messages:
            decoder = decoders.get(message.topic)
            try:
                if decoder is None:
                    raise InvalidEvent("unknown-topic", f"no record type for {message.topic}")
                event = decoder(message.value)
            except InvalidEvent as exc:
                record = dead_letter(message, dlq_topic, exc.reason, str(exc))
                dead_letters.append(((message.topic, message.partition), record))
                rejected[exc.reason] += 1
                continue
            consumed[event.type.value] += 1
            events.append(Positioned(event, (message.topic, message.partition), message.offset))
        for kind, count in consumed.items():
            self.metrics.events_consumed.labels(kind).inc(count)
        for reason, count in rejected.items():
            self.metrics.events_dead_lettered.labels(reason).inc(count)
        return events, dead_letters

    def score_and_persist(self, events: list[Positioned]) -> list[Publication]:
        """Score each profile's events and write the profiles, re-scoring on conflicts.

        The outputs kept for a replay are those of this batch (dropped by the next
        batch's write, once this one is published) and, for replayed events, those read
        back (dropped the same way)."""
        by_profile: dict[ProfileKey, list[Positioned]] = defaultdict(list)
        for item in events:
            by_profile[item.event.profile_key].append(item)
        outputs: list[Publication] = []
        kept: list[tuple[Partition, str]] = []
        todo = list(by_profile)
        while todo:
            stored, missing = self.cache.lookup(todo)
            if missing:
                with self.metrics.redis_call("load"):
                    read = self.store.load(missing)
                stored.update(read)
                for profile, found in read.items():
                    self.cache.put(profile, found)
            replayed = {
                item.partition
                for profile in todo
                for item in by_profile[profile]
                if item.offset <= stored[profile].watermarks.get(item.partition, -1)
            }
            replay = self.store.kept(replayed) if replayed else Kept()
            self.replayed_kept.update(replay.fields)
            kept_outputs = replay.outputs
            writes, produced, schedule = [], {}, []
            field_name = next(self.kept_names)
            try:  # the states are folded in place: any failure drops them from the cache
                for profile in todo:
                    write, produced[profile] = self.updates.on_events(
                        profile, stored[profile], by_profile[profile], kept_outputs
                    )
                    if write is not None:
                        writes.append(write)
                    elif (entry := self.updates.rescheduled(profile, stored[profile])) is not None:
                        schedule.append(entry)  # a replay repairs an entry a crash left unset
                with self.metrics.redis_call("save"):
                    conflicted = self.store.save(writes, schedule, self.published_kept, field_name)
            except BaseException:
                self.cache.evict(todo)
                raise
            conflicts = set(conflicted)
            self.published_kept = []
            self.redis_ok = True
            self.metrics.state_conflicts.inc(len(conflicts))
            self.cache.evict(conflicts)  # read again: another writer was first
            written: set[Partition] = set()
            for write in writes:
                if write.profile not in conflicts:
                    self.cache.put(write.profile, write.after())
                    written.update(p for p, outputs in write.outputs.items() if outputs)
            kept += [(partition, field_name) for partition in written]
            for profile, publications in produced.items():
                if profile not in conflicts:
                    outputs.extend(publications)
            todo = [p for p in todo if p in conflicts]
        self.batch_kept = kept
        return outputs

    def count_published(self, outputs: list[Publication]) -> None:
        now = self.clock()
        observe = self.metrics.event_to_publish.observe
        kinds: Counter[str] = Counter()
        for output in outputs:
            kinds[output.kind] += 1
            if output.occurred_at is not None:
                observe(max(now - output.occurred_at / 1000, 0))
        for kind, count in kinds.items():
            self.metrics.outputs_produced.labels(kind).inc(count)

    # ---- time-driven changes -------------------------------------------------------------

    def sweep(self) -> bool:
        """Apply the time-driven changes that came due in the schedules of the owned
        partitions; True if more are due than one sweep takes."""
        owned = sorted(self.consumer.assignment)
        if not owned:
            return False
        missing = [p for p in owned if p not in self.positions]
        if missing:
            try:
                self.positions.update(self.consumer.committed(missing))
            except KafkaUnavailable as exc:
                log.warning("sweep skipped: %s", exc)
                return False
        now = self.sweep_horizon(owned, int(self.clock() * 1000))
        if now is None:
            return False
        limit = self.settings.worker.sweep_batch
        try:
            with self.metrics.redis_call("sweep"):
                entries = self.store.due(owned, now, limit)
                overdue = now - (entries[0].at or now) if entries else 0
                self.metrics.sweep_overdue.set(overdue / 1000)
                swept = self._sweep(entries, now) if entries else 0
        except StateUnavailable as exc:
            self.redis_ok = False
            log.warning("sweep skipped: %s", exc)
            return False
        except (KafkaUnavailable, DeliveryFailed, PartitionsLost) as exc:
            log.warning("sweep not published (%s); the next sweep publishes it again", exc)
            return False
        return len(entries) == limit and swept > 0

    def sweep_horizon(self, owned: list[Partition], now: int) -> int | None:
        """How far a sweep may move the leads' clocks: to now, but not past the newest
        event time processed on a partition that is still behind, whose unread events
        may prevent a change (None: not known yet)."""
        horizon = now
        for partition in owned:
            end = self.consumer.end_offset(partition)
            if end is None:
                return None
            # the consumer's position: past a commit marker of transactional producers,
            # which ends their partitions and is never consumed (sweeps run between
            # batches: every message it handed out is processed)
            done = max(self.positions[partition], self.consumer.position(partition) or 0)
            if done >= end:
                continue
            seen = self.event_times.get(partition)
            if seen is None:
                return None
            horizon = min(horizon, seen - 1)  # an unread event may carry that very time
        return horizon

    def _sweep(self, entries: list[Due], now: int) -> int:
        """Sweep due entries; returns how many were handled (not left for a replay)."""
        self.cache.evict(e.profile for e in entries)  # read, written and settled here
        stored = self.store.load([e.profile for e in entries])
        writes, settled, stale = [], [], []
        left = 0
        publications: dict[ProfileKey, list[Publication]] = {}
        for entry in entries:
            profile, found = entry.profile, stored[entry.profile]
            if found.state is None or found.schedule != entry.partition:
                # expired, erased, or scheduled in another partition
                stale.append(entry._replace(at=None))
                if (right := self.updates.rescheduled(profile, found)) is not None:
                    stale.append(right)
                continue
            if not self.replayed_all(found):
                left += 1  # an event of it is about to be replayed: that replay goes first
                continue
            swept = self.updates.on_time(entry, found, now)
            if swept.write is not None:
                writes.append(swept.write)
            publications[profile] = swept.publications
            settled.append((swept.after, swept.due))
        conflicts = set(self.store.save(writes)) if writes else set()
        self.metrics.state_conflicts.inc(len(conflicts))
        self.store.schedule(stale)
        # a profile in conflict was written meanwhile (by an event): that write took over
        # its pending outputs and rescheduled it
        published = [
            p for profile, ps in publications.items() if profile not in conflicts for p in ps
        ]
        if published:  # no consumer call meanwhile: no partition leaves before the settle
            self.publisher.publish_untied([p.record for p in published])
        self.count_published(published)
        self.metrics.time_driven_changes.inc(len(writes) - len(conflicts))
        self.store.settle([s for s in settled if s[1].profile not in conflicts])
        return len(entries) - left

    def replayed_all(self, stored: Stored) -> bool:
        """No owned partition will replay an event applied to the profile (it would
        republish that event's outputs after the newer outputs of a sweep): every
        watermark on an owned partition is below the offsets done there."""
        owned = self.consumer.assignment
        return all(
            offset < self.positions.get(partition, 0)
            for partition, offset in stored.watermarks.items()
            if partition in owned
        )

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
                asked = getattr(self.stop, "at", None) or now  # a StopRequest knows when
                self._give_up_at = asked + self.settings.worker.shutdown_timeout_s
            if now > self._give_up_at:
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


@contextlib.contextmanager
def collecting_garbage_between_batches() -> Iterator[None]:
    """Python's cyclic garbage collector runs whenever enough objects were made, and each
    run walks the live ones: a batch's events and outputs and the cached states. Measured,
    that took a third of the worker's CPU. Nothing the worker makes per batch forms a
    reference cycle (reference counting frees it), so the collector is only run between
    batches, every GC_INTERVAL_S seconds (`run()`), for the rare cycle (an exception's
    traceback), and on the youngest generation only: the objects made since its last run.
    A full collection walks every cached state: measured, 0.9-1.5 s with 31,000 profiles
    cached, a stall of the whole loop every run (the latency's p99) and 3% of the CPU.
    What survives a young collection is not walked again, so a cycle still referenced then
    and dropped later would not be freed; the worker keeps none (an `except ... as`
    variable is deleted when its block ends)."""
    gc.freeze()  # what start-up made lives as long as the process: never walk it
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def _backoff() -> Iterator[float]:
    delay = 0.1
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF_S)
