"""Event-time alignment on a real broker: a worker catching up a backlog of several topics
reads them in event-time order, so that no topic's events become late for their leads.

The backlog: the same leads' events spread over six hours on the four input topics, each
topic in event-time order and every record's timestamp (CreateTime) its `occurred_at`.
The producers make no event late themselves, so every late event (older than an event of
its lead processed before it) is the worker's doing. The order in which the worker's
`process()` receives the messages is recorded directly."""

from __future__ import annotations

import random
import threading
from typing import Any

from confluent_kafka import Producer

from leadscore.kafka.consumer import Message
from leadscore.worker import Worker
from tests.integration.conftest import RECORD_TYPES, Env, WorkerHandle, wait_until
from tests.models import simple_model
from tests.records import encoded, now_ms

HOUR = 3_600_000
PER_TOPIC = 1500
LEADS = 100


def backlog(env: Env) -> dict[tuple[str, int], tuple[str, int]]:
    """Produce the backlog; returns (topic, offset) -> (lead, occurred_at)."""
    rng = random.Random(7)
    start = now_ms() - 7 * HOUR
    times = rng.sample(range(start, start + 6 * HOUR), 4 * PER_TOPIC)  # all distinct
    producer = Producer(
        {"bootstrap.servers": env.services.bootstrap_servers, "enable.idempotence": True}
    )
    events: dict[tuple[str, int], tuple[str, int]] = {}
    for i, (kind, record_type) in enumerate(RECORD_TYPES.items()):
        topic = env.topic(kind)
        for offset, at in enumerate(sorted(times[i * PER_TOPIC : (i + 1) * PER_TOPIC])):
            lead = f"L{rng.randrange(LEADS)}"
            value = encoded(record_type, lead, event_id=f"{kind}-{offset}", occurred_at=at)
            producer.produce(topic, value=value, key=lead.encode(), timestamp=at)
            events[(topic, offset)] = (lead, at)
        producer.poll(0)
    assert producer.flush(30) == 0
    return events


def catch_up(env: Env, **worker: Any) -> list[tuple[str, int]]:
    """Start a worker on the backlog; the (lead, occurred_at) of every message in the order
    `process()` received them, once all are processed."""
    events = backlog(env)
    settings = env.settings(batch_size=500, **worker)
    processed: list[tuple[str, int]] = []
    lock = threading.Lock()

    class Recording(Worker):
        def process(self, messages: list[Message]) -> None:
            with lock:
                processed.extend(events[(m.topic, m.offset)] for m in messages)
            super().process(messages)

    handle = WorkerHandle(Recording(settings, simple_model()))
    env.workers.append(handle)
    wait_until(lambda: len(processed) >= len(events), timeout_s=120, what="the backlog")
    handle.stop()
    assert sorted(processed) == sorted(events.values())  # each once: no rebalance here
    return processed


def late_events(processed: list[tuple[str, int]]) -> list[int]:
    """How late (ms) each event was that came after a later event of its lead."""
    clocks: dict[str, int] = {}
    late = []
    for lead, at in processed:
        clock = clocks.get(lead, at)
        if at < clock:
            late.append(clock - at)
        clocks[lead] = max(clock, at)
    return late


def test_catching_up_a_backlog_of_several_topics_makes_no_event_late(env: Env) -> None:
    processed = catch_up(env)  # the default --partition-idle
    assert late_events(processed) == []
    # stronger: the topics were read as one stream in event-time order
    assert [at for _, at in processed] == sorted(at for _, at in processed)


def test_taken_as_fetched_one_topic_runs_hours_ahead(env: Env) -> None:
    """The check above would see the problem: without alignment (--partition-idle 0),
    batches follow the fetches, topic by topic."""
    late = late_events(catch_up(env, partition_idle_ms=0))
    assert len(late) > PER_TOPIC
    assert max(late) > HOUR
