"""Workers share eight partitions per topic: a third joins mid-stream, then one is killed.
The others take its partitions over, and every lead ends as the pure core says it must."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from leadscore.codec import decode_output
from leadscore.embedded import embedded_redis
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    KAFKA_OPTIONS,
    Env,
    Services,
    cluster_url,
    isolated_env,
    read_all,
    schedule_drained,
    wait_until,
    worker_environment,
    worker_process,
)
from tests.integration.proxy import FreezableProxy
from tests.integration.workloads import one_topic_per_lead, pure_outcome
from tests.kafka.apache import set_producer_quota
from tests.records import now_ms

PARTITIONS = 8
LEADS = 2_000
EVENTS = 20_000
START = now_ms() - 3_600_000
CLOCK = START + EVENTS * 100 + 60_000


def committed(env: Env, partitions: int = PARTITIONS) -> int:
    """Offsets the group committed, summed over every partition of the input topics."""
    return sum(max(o, 0) for o in env.committed_offsets(partitions).values())


def stop(workers: list[Any]) -> None:
    """SIGTERM every worker still running (also when the test failed): each must stop
    cleanly, after its last rebalance."""
    running = [w for w in workers if w.poll() is None]
    for worker in running:
        worker.terminate()
    for worker in running:
        assert worker.wait(60) == 0


def output_ids(env: Env) -> list[str]:
    """The event id of every record on the output topic, in order."""
    return [
        str(decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())["event_id"])
        for m in read_all(env, "scores")
    ]


def repeated_outputs(env: Env, log_path: Path) -> str:
    """What a failure shows: each output sent more than once, where, and the workers' log."""
    seen: dict[str, list[str]] = {}
    for m in read_all(env, "scores"):
        output = decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())
        where = f"{m.partition()}@{m.offset()} {output.get('lead_id')} {output.get('reason', '')}"
        seen.setdefault(str(output["event_id"]), []).append(
            f"{where} cause {output.get('cause_event_id')}"
        )
    lines = [f"{i}: {places}" for i, places in seen.items() if len(places) > 1]
    return "\n".join(["sent more than once:", *lines, "log:", log_path.read_text()[-20_000:]])


@pytest.mark.parametrize("redis_kind", ["standalone", "cluster"])
def test_three_workers_one_killed_midway(
    services: Services, tmp_path: Path, request: pytest.FixtureRequest, redis_kind: str
) -> None:
    events = one_topic_per_lead(
        events=EVENTS, leads=LEADS, prefix="S", start=START, spacing_ms=100, seed=21
    )
    reference_ids, reference_states = pure_outcome(events, CLOCK)
    cluster = cluster_url(request, redis_kind)
    with isolated_env(services, partitions=PARTITIONS, cluster_url=cluster) as env:
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
            stop(workers)
        store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
        ids = output_ids(env)
        stored = store.load(list(reference_states))
        assert set(ids) == reference_ids
        assert {p: s.state for p, s in stored.items()} == reference_states
        print(
            f"\nkilled one of three workers at {killed_at:,} of {EVENTS:,} events; the other "
            f"two finished {took:.1f} s later; {len(ids) - len(set(ids)):,} outputs sent again"
        )


def test_planned_rebalances_send_nothing_twice(services: Services, tmp_path: Path) -> None:
    """Workers join and leave (SIGTERM) while batches are in flight: every batch of a
    revoked partition is finished and committed by its owner, so nothing is replayed."""
    events = one_topic_per_lead(
        events=EVENTS, leads=LEADS, prefix="P", start=START, spacing_ms=100, seed=22
    )
    reference_ids, reference_states = pure_outcome(events, CLOCK)
    with isolated_env(services, partitions=PARTITIONS) as env:
        env.produce([(env.topic(kind), lead.encode(), value) for kind, lead, value in events])
        variables = worker_environment(
            env, batch_size="50", log_level="INFO", clock_speed="0", clock_start=str(CLOCK)
        )
        log_path = tmp_path / "workers.log"
        log = log_path.open("w")
        workers = [worker_process(variables, log)]
        try:
            for share in (8, 4, 2):  # a worker joins at each step
                wait_until(
                    lambda share=share: committed(env) > EVENTS // share,
                    timeout_s=120,
                    what="progress",
                )
                workers.append(worker_process(variables, log))
            wait_until(lambda: committed(env) > EVENTS * 2 // 3, timeout_s=120, what="2/3")
            workers[0].terminate()  # and one leaves
            assert workers[0].wait(60) == 0
            wait_until(
                lambda: committed(env) == EVENTS and schedule_drained(env, CLOCK),
                timeout_s=240,
                what="the others to finish",
            )
        finally:
            stop(workers)
        store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
        ids = output_ids(env)
        stored = store.load(list(reference_states))
        assert {p: s.state for p, s in stored.items()} == reference_states
        assert set(ids) == reference_ids
        revokes = log_path.read_text().count("revoked")
        print(f"\n{revokes} revocations; {len(ids) - len(set(ids))} outputs sent twice")
        assert len(ids) == len(set(ids)), repeated_outputs(env, log_path)


def test_a_batch_awaiting_acknowledgement_is_committed_before_its_partitions_leave(
    services: Services, tmp_path: Path
) -> None:
    """The broker throttles the worker's producer (a quota) while a batch is being
    published, and a second worker joins: the first still owns the batch's partitions
    when they are revoked, so it waits for the acknowledgements and commits their offsets
    right then. Their new owner starts after the batch: nothing is sent twice."""
    first = one_topic_per_lead(
        events=400, leads=100, prefix="A", start=START, spacing_ms=100, seed=23
    )
    second = one_topic_per_lead(
        events=400, leads=100, prefix="B", start=START + 60_000, spacing_ms=100, seed=24
    )
    if not services.description.startswith("Apache Kafka"):
        pytest.skip("quotas are set with Apache Kafka's own tool")
    reference_ids, reference_states = pure_outcome(first + second, CLOCK)
    with isolated_env(services, partitions=2) as env:
        client_id = f"{env.prefix}-worker"
        variables = worker_environment(
            env,
            batch_size="1000",
            log_level="INFO",
            clock_speed="0",
            clock_start=str(CLOCK),
            kafka_options=f"{KAFKA_OPTIONS} client.id={client_id}",
        )
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        workers = [worker_process(variables, logs[0].open("w"))]
        store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
        second_leads = {p for p in reference_states if p.id.startswith("B")}
        try:
            env.produce([(env.topic(k), lead.encode(), v) for k, lead, v in first])
            # first's time-driven changes swept too: a sweep publishing under the quota
            # would hold the worker before it reads the second batch
            wait_until(
                lambda: committed(env, 2) == len(first) and schedule_drained(env, CLOCK),
                timeout_s=60,
                what="first",
            )
            set_producer_quota(services.bootstrap_servers, client_id, 1000)
            env.produce([(env.topic(k), lead.encode(), v) for k, lead, v in second])
            # the second batch is written to Redis; its outputs cannot be acknowledged
            wait_until(
                lambda: all(s.state for s in store.load(list(second_leads)).values()),
                timeout_s=60,
                what="the second batch's state",
            )
            workers.append(worker_process(variables, logs[1].open("w")))
            wait_until(lambda: "revoked" in logs[0].read_text(), what="a revocation")
            time.sleep(1.0)
            set_producer_quota(services.bootstrap_servers, client_id, None)
            wait_until(
                lambda: (
                    committed(env, 2) == len(first) + len(second) and schedule_drained(env, CLOCK)
                ),
                timeout_s=120,
                what="everything committed",
            )
        finally:
            stop(workers)
        ids = output_ids(env)
        stored = store.load(list(reference_states))
        assert {p: s.state for p, s in stored.items()} == reference_states
        assert set(ids) == reference_ids
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} outputs sent twice"
        assert "committed the batch in flight of the revoked partitions" in logs[0].read_text()


def test_partitions_revoked_while_an_outage_holds_a_batch_are_published_by_their_new_owner(
    services: Services, tmp_path: Path
) -> None:
    """Redis hangs for the first worker while it holds a batch (a network partition
    between them: a proxy that stops forwarding); a second worker joins meanwhile, which
    reaches Redis, and takes half of the partitions. When Redis answers the first again,
    it publishes only the outputs of the partitions it still owns: the new owner replays
    the others (from the outputs kept with the profiles, if the first wrote them), so
    nothing is sent twice and every state is the reference's. (A worker starting while
    Redis hangs for every client would wait at its start-up check instead of joining.)"""
    first = one_topic_per_lead(
        events=800, leads=200, prefix="C", start=START, spacing_ms=100, seed=25
    )
    second = one_topic_per_lead(
        events=800, leads=200, prefix="D", start=START + 60_000, spacing_ms=100, seed=26
    )
    reference_ids, reference_states = pure_outcome(first + second, CLOCK)
    with (
        embedded_redis() as url,
        isolated_env(services, partitions=4) as env,
        FreezableProxy(_address(url)).running() as proxy,
    ):
        env = dataclasses.replace(env, redis=redis.Redis.from_url(url))
        variables = worker_environment(
            env,
            redis_url=url,
            batch_size="1000",
            log_level="INFO",
            clock_speed="0",
            clock_start=str(CLOCK),
        )
        through_proxy = {**variables, "LEADSCORE_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        workers = [worker_process(through_proxy, logs[0].open("w"))]
        try:
            env.produce([(env.topic(k), lead.encode(), v) for k, lead, v in first])
            wait_until(lambda: committed(env, 4) == len(first), timeout_s=60, what="first")
            proxy.freeze()  # every Redis call of the first worker times out
            try:
                env.produce([(env.topic(k), lead.encode(), v) for k, lead, v in second])
                wait_until(lambda: "persist state failed" in logs[0].read_text(), what="held")
                workers.append(worker_process(variables, logs[1].open("w")))
                wait_until(lambda: "revoked" in logs[0].read_text(), what="a revocation")
                wait_until(lambda: "assigned" in logs[1].read_text(), what="an assignment")
            finally:
                proxy.thaw()
            wait_until(
                lambda: (
                    committed(env, 4) == len(first) + len(second) and schedule_drained(env, CLOCK)
                ),
                timeout_s=120,
                what="everything committed",
            )
        finally:
            stop(workers)
        ids = output_ids(env)
        store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
        stored = store.load(list(reference_states))
        env.redis.close()
        assert {p: s.state for p, s in stored.items()} == reference_states
        assert set(ids) == reference_ids
        assert len(ids) == len(set(ids)), repeated_outputs(env, logs[0])


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)
