"""Workers share eight partitions per topic: a third joins mid-stream, then one is killed.
The others take its partitions over, and every lead ends as the pure core says it must."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from leadscore.codec import InputDecoder, decode_output
from leadscore.scoring.events import Event, ProfileKey
from leadscore.scoring.score import advance, score
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    RECORD_TYPES,
    Env,
    Services,
    isolated_env,
    read_all,
    schedule_drained,
    wait_until,
    worker_environment,
    worker_process,
)
from tests.models import simple_model
from tests.records import encoded, now_ms

PARTITIONS = 8
LEADS = 2_000
EVENTS = 20_000
START = now_ms() - 3_600_000
CLOCK = START + EVENTS * 100 + 60_000


def workload() -> list[tuple[str, str, bytes]]:
    """(topic kind, lead, value): each lead on one topic (so one partition), in time order."""
    rng = random.Random(21)
    kinds = list(RECORD_TYPES)
    events = []
    for i in range(EVENTS):
        lead = rng.randrange(LEADS)
        kind = kinds[lead % 4]
        value = encoded(
            RECORD_TYPES[kind], f"S{lead}", event_id=f"s{i}", occurred_at=START + i * 100
        )
        events.append((kind, f"S{lead}", value))
    return events


def committed(env: Env) -> int:
    """Offsets the group committed, summed over every partition of the input topics."""
    consumer = Consumer(
        {"bootstrap.servers": env.services.bootstrap_servers, "group.id": f"{env.prefix}-group"}
    )
    try:
        parts = consumer.committed(
            [TopicPartition(t, p) for t in env.input_topics.values() for p in range(PARTITIONS)],
            timeout=10,
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in parts)


def expected(events: list[tuple[str, str, bytes]]) -> tuple[set[str], dict[ProfileKey, object]]:
    """What the pure core makes of each lead's events, swept up to the workers' clock."""
    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt in RECORD_TYPES.values()}
    by_lead: dict[ProfileKey, list[Event]] = defaultdict(list)
    for kind, _lead, value in events:
        event = decoders[RECORD_TYPES[kind]](value)
        by_lead[event.profile_key].append(event)
    model = simple_model()
    ids: set[str] = set()
    states: dict[ProfileKey, object] = {}
    for lead, lead_events in by_lead.items():
        scored = score(lead, None, lead_events, model)
        swept = advance(lead, scored.state, model, CLOCK)
        ids |= {o.event_id for o in scored.outputs + swept.outputs}
        states[lead] = swept.state
    return ids, states


def test_three_workers_one_killed_midway(services: Services, tmp_path: Path) -> None:
    events = workload()
    reference_ids, reference_states = expected(events)
    with isolated_env(services, partitions=PARTITIONS) as env:
        env.produce([(env.topic(kind), lead.encode(), value) for kind, lead, value in events])
        variables = worker_environment(
            env, batch_size="100", log_level="WARNING", clock_speed="0", clock_start=str(CLOCK)
        )
        log = (tmp_path / "workers.log").open("w")
        workers = [worker_process(variables, log) for _ in range(2)]
        try:
            # a third joins mid-stream: partitions move while batches are in flight
            wait_until(lambda: committed(env) > EVENTS // 8, timeout_s=120, what="an eighth")
            workers.append(worker_process(variables, log))
            wait_until(lambda: committed(env) > EVENTS // 3, timeout_s=120, what="a third")
            killed_at = committed(env)
            workers[0].kill()
            workers[0].wait()
            started = time.monotonic()
            wait_until(
                lambda: committed(env) == EVENTS and schedule_drained(env, CLOCK),
                timeout_s=240,
                what="the survivors to finish",
            )
            took = time.monotonic() - started
        finally:
            for worker in workers[1:]:
                worker.terminate()
            for worker in workers[1:]:
                assert worker.wait(60) == 0  # a clean stop, after the rebalance
        store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
        ids = [
            str(decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())["event_id"])
            for m in read_all(env, "scores")
        ]
        stored = store.load(list(reference_states))
        assert set(ids) == reference_ids
        assert {p: s.state for p, s in stored.items()} == reference_states
        print(
            f"\nkilled one of three workers at {killed_at:,} of {EVENTS:,} events; the other "
            f"two finished {took:.1f} s later; {len(ids) - len(set(ids)):,} outputs sent again"
        )
