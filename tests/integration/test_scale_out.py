"""Workers share eight partitions per topic: a third joins mid-stream, then one is killed.
The others take its partitions over, and every lead ends as the pure core says it must."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from leadscore.codec import decode_output
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    Env,
    Services,
    isolated_env,
    read_all,
    schedule_drained,
    wait_until,
    worker_environment,
    worker_process,
)
from tests.integration.workloads import one_topic_per_lead, pure_outcome
from tests.records import now_ms

PARTITIONS = 8
LEADS = 2_000
EVENTS = 20_000
START = now_ms() - 3_600_000
CLOCK = START + EVENTS * 100 + 60_000


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


def test_three_workers_one_killed_midway(services: Services, tmp_path: Path) -> None:
    events = one_topic_per_lead(
        events=EVENTS, leads=LEADS, prefix="S", start=START, spacing_ms=100, seed=21
    )
    reference_ids, reference_states = pure_outcome(events, CLOCK)
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
