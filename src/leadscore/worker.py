"""The worker: one loop, batch by batch, in data-flow order.

    consume  a batch of up to N messages from the input topics
    decode   Avro -> typed event; undecodable or invalid -> dead-letter topic
    resolve  group the events by profile (the lead, or the anonymous profile)
    score    pure: previous state + events + model -> new state + outputs
    persist  per input partition: the outputs the batch's events caused, kept until they
             are published, the schedule entries and the progress marker; then per
             changed profile a conditional write of its state, offset watermarks and the
             token naming its kept outputs (`state/store.py`, `state/replay.py`)
    publish  outputs and dead letters, then commit the input offsets (at-least-once: at
             most every commit interval)
    sweep    about every second: the profiles of owned partitions whose time-driven change
             came due (inactivity, decay) are re-evaluated, persisted, published
             (`sweep.py`)

Why this order gives exactly-once state and at-least-once (or exactly-once) output:
- A profile's new state, the highest offset of each (topic, partition) folded into it and
  the token naming the outputs those events caused are written in one atomic Redis call,
  conditional on the version that was read; the outputs were kept before. A replayed
  message (offset at or below the profile's watermark) changes nothing, so after any
  crash, restart or rebalance every event changes the state exactly once; a conflicting
  writer (two workers briefly owning a partition) makes us re-read and recompute instead
  of overwriting.
- A replayed message whose outputs are still kept publishes them again, with their ids:
  a crash after the state write but before the outputs were acknowledged loses nothing.
  Once a batch is published, the next batch's write drops what it kept
  (`state/replay.py`).
- Each partition's progress marker (in Redis, written with the batch) is compared with
  its committed offset when the partition is assigned: a Redis that lost the state the
  offsets stand for stops the worker instead of scoring those leads from zero.
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
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import TypeVar

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
    StateLost,
    StateUnavailable,
)
from leadscore.events import Positioned, ProfileKey
from leadscore.kafka.consumer import InputConsumer, Message, Partition
from leadscore.kafka.dead_letter import dead_letter
from leadscore.kafka.producer import Record, RecordProducer, TransactionalProducer
from leadscore.kafka.publisher import AtLeastOnce, ExactlyOnce, Publisher
from leadscore.metrics import Metrics, MetricsServer
from leadscore.model import Model
from leadscore.profiles import ProfileUpdates, Publication
from leadscore.settings import Settings
from leadscore.startup import wait_for_services
from leadscore.state.cache import StateCache
from leadscore.state.client import redis_client
from leadscore.state.replay import ReplayBook
from leadscore.state.store import StateStore, Stored
from leadscore.sweep import Sweeper

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
        # next offset after the batches this worker wrote and published: the progress
        # marker of the partition is at least that while Redis keeps what it was told
        self.written: dict[Partition, int] = {}
        self.event_times: dict[Partition, int] = {}  # newest event time processed
        self.verified: set[Partition] = set()  # assigned, and Redis holds their state
        self.cache = StateCache(settings.worker.state_cache)
        self.handed_over: set[Partition] = set()  # revoked with the batch in flight committed
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
                    self.retry("check state", self.verify)
                    more = self.sweeper.sweep()
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
            self.store = StateStore(
                lambda: redis_client(s.redis),
                namespace=s.redis.namespace,
                ttl_ms=s.redis.state_ttl_ms,
                anonymous_ttl_ms=s.redis.anonymous_ttl_ms,
                replicas=s.redis.replicas,
                replica_timeout_ms=s.redis.replica_timeout_ms,
                on_round_trip=self.metrics.redis_round_trips.inc,
            )
            stack.callback(self.store.close)
            self.book = ReplayBook(self.store)
            if not wait_for_services(s, self.store, self.stop):
                yield  # stopped while waiting: no client was started, the loop does not run
                return
            self.consumer = InputConsumer(
                s.kafka.consumer_config(),
                list(self.decoders),
                on_revoke=self._revoked,
                partition_idle_s=s.worker.partition_idle_ms / 1000,
                on_wait=self.metrics.partition_wait.inc,
            )
            stack.callback(self._leave_group)
            self.publisher = self._publisher()
            self.sweeper = Sweeper(
                self.store,
                self.consumer,
                self.publisher,
                self.updates,
                self.cache,
                self.metrics,
                clock=self.clock,
                batch=s.worker.sweep_batch,
                positions=self.positions,
                event_times=self.event_times,
                count_published=self.count_published,
            )
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
            if self.book.forget() and self.store.healthy:  # not in an outage: they expire
                with contextlib.suppress(StateUnavailable):
                    self.store.save([], forget=self.book.forget())
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
            self.written.pop(partition, None)
            self.event_times.pop(partition, None)
            self.verified.discard(partition)
        self.book.revoked(partitions)

    def poll(self) -> list[Message]:
        w = self.settings.worker
        return self.consumer.poll_batch(w.batch_size, w.batch_linger_ms / 1000, IDLE_WAIT_S)

    def process(self, messages: list[Message]) -> None:
        """One batch, every step in order; returns once its offsets are committed."""
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(messages))
        offsets = next_offsets(messages)
        self.retry("check state", self.verify)
        events, dead_letters = self.retry("decode", lambda: self.decode(messages))
        try:
            outputs = self.retry("persist state", lambda: self.score_and_persist(events, offsets))
        except StateLost:  # a marker below what this worker wrote: Redis lost data meanwhile
            self.metrics.state_lost.inc()
            raise
        records = dead_letters + [(o.partition, o.record) for o in outputs]
        try:
            self.retry("publish", lambda: self.publisher.publish(self.owned(records), offsets))
        except PartitionsLost as exc:
            log.warning("%s: the partitions' new owner replays this batch", exc)
            self.book.abandoned()
            return
        owned = self.consumer.assignment  # not those revoked while the batch waited
        self.positions.update((p, o) for p, o in offsets.items() if p in owned)
        self.written.update((p, o) for p, o in offsets.items() if p in owned)
        # published: the next write drops what the batch kept (not on partitions a new
        # owner replays)
        finished = owned | self.handed_over
        self.handed_over = set()
        self.book.published(finished, self.positions)
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

    def verify(self) -> None:
        """Check that Redis holds the state of the partitions assigned since the last
        check: a committed offset above a partition's progress marker means Redis lost
        state the worker wrote (`StateLost`)."""
        unchecked = sorted(self.consumer.assignment - self.verified)
        if not unchecked:
            return
        committed = self.consumer.committed(unchecked)
        progress = self.store.progress(unchecked)
        lost = {
            p: (offset, progress[p])
            for p, offset in committed.items()
            # a group reset to the earliest retained offset skips nothing still readable
            if offset > (progress[p] or 0) and offset > self.consumer.log_start(p)
        }
        self.metrics.state_lost.set(len(lost))
        if lost and not self.settings.redis.accept_state_loss:
            raise StateLost(state_lost_message(lost, self.settings.redis.namespace))
        if lost:
            log.warning(
                "%s (going on: --accept-state-loss)",
                state_lost_message(lost, self.settings.redis.namespace).split(":\n")[0],
            )
        self.verified.update(unchecked)

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

    def score_and_persist(
        self, events: list[Positioned], offsets: dict[Partition, int]
    ) -> list[Publication]:
        """Score each profile's events and write the profiles, re-scoring on conflicts;
        the first write also moves the partitions' progress markers to `offsets`."""
        by_profile: dict[ProfileKey, list[Positioned]] = defaultdict(list)
        for item in events:
            by_profile[item.event.profile_key].append(item)
        outputs: list[Publication] = []
        todo = list(by_profile)
        progress = offsets
        while True:
            stored, missing = self.cache.lookup(todo)
            if missing:
                with self.metrics.redis_call("load"):
                    read = self.store.load(missing)
                stored.update(read)
                for profile, found in read.items():
                    self.cache.put(profile, found)
            replayed = {
                profile: (stored[profile], items)
                for profile in todo
                if (items := replays(stored[profile], by_profile[profile]))
            }
            kept_outputs = self.book.read_back(replayed)
            writes, produced, schedule = [], {}, []
            token = self.book.token()
            try:  # the states are folded in place: any failure drops them from the cache
                for profile in todo:
                    write, produced[profile] = self.updates.on_events(
                        profile, stored[profile], by_profile[profile], kept_outputs, token
                    )
                    if write is not None:
                        writes.append(write)
                    elif (entry := self.updates.rescheduled(profile, stored[profile])) is not None:
                        schedule.append(entry)  # a replay repairs an entry a crash left unset
                # a marker below what this worker published there: Redis lost data
                floors = {p: self.written[p] for p in progress if p in self.written}
                self.book.writing(token, {p for w in writes for p, o in w.outputs.items() if o})
                with self.metrics.redis_call("save"):
                    conflicted = self.store.save(
                        writes, schedule, self.book.forget(), progress, floors
                    )
            except BaseException:
                self.cache.evict(todo)
                raise
            conflicts = set(conflicted)
            progress = {}
            self.metrics.state_conflicts.inc(len(conflicts))
            self.cache.evict(conflicts)  # read again: another writer was first
            for write in writes:
                if write.profile not in conflicts:
                    self.cache.put(write.profile, write.after())
            self.book.saved()
            for profile, publications in produced.items():
                if profile not in conflicts:
                    outputs.extend(publications)
            todo = [p for p in todo if p in conflicts]
            if not todo:
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

    # ---- outages ----------------------------------------------------------------------------

    def retry(self, what: str, step: Callable[[], T]) -> T:
        """Run `step`, retrying with back-off while Redis or Kafka is unavailable.

        The consumer stays in its group meanwhile, with fetching paused. Once told to stop,
        it gives up after the shutdown timeout: nothing of the batch is committed, so it is
        replayed after the restart. Any other error (Redis refused a command) stops the
        worker: retrying would only repeat it.
        """
        for delay in _backoff():
            try:
                return step()
            except (StateUnavailable, KafkaUnavailable, DeliveryFailed) as exc:
                self.metrics.ready.set(0)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._waiting()
                    time.sleep(min(0.2, delay))
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
        return bool(consumer and consumer.connected and self.store.healthy)


def replays(stored: Stored, items: list[Positioned]) -> list[Positioned]:
    """The events already applied to a profile (at or below its watermarks): a replay."""
    return [i for i in items if i.offset <= stored.watermarks.get(i.partition, -1)]


def state_lost_message(lost: dict[Partition, tuple[int, int | None]], namespace: str) -> str:
    lines = [
        f"  {topic}[{partition}]: committed offset {committed}, Redis holds the state of "
        + ("no offset" if marker is None else f"the offsets below {marker}")
        for (topic, partition), (committed, marker) in sorted(lost.items())
    ]
    return (
        f"Redis does not hold the state the committed offsets stand for (namespace "
        f"{namespace!r}): it restarted empty or was restored from an older snapshot. Going "
        "on would score these partitions' leads from zero:\n"
        + "\n".join(lines)
        + "\nTo rebuild the state, stop every worker of the group, reset the group's "
        "offsets to the earliest retained ones (kafka-consumer-groups --reset-offsets "
        "--to-earliest --execute) and start again; see README, Operations."
    )


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
