"""A Redis primary with a replica fails over mid-stream, behind a stable address (as a
managed Redis's endpoint moves to the promoted replica).

Redis replicates asynchronously. The replica's link to the primary is held back (it
goes through a proxy that is frozen) while the worker goes on, then the primary is killed
and the replica promoted: what the replica never got is gone. Without `--redis-replicas`
the worker committed those events' offsets, so they are lost for good (the first test
shows it happen); with `--redis-replicas 1` no batch is committed until the replica has
it, so every event counts once."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import pytest
import redis

from leadscore.settings import Secret
from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from leadscore.worker import Worker
from tests.integration.conftest import (
    Env,
    WorkerHandle,
    committed_all,
    counted_events,
    wait_until,
)
from tests.integration.proxy import FreezableProxy
from tests.integration.redis_servers import ReplicatedRedis
from tests.models import simple_model

EVENTS = 200
HELD_S = 4.0  # how long the replica is held back while the worker goes on


class Failover:
    """The primary, the replica replicating through `link` (a proxy), and `endpoint`, the
    stable address clients use."""

    def __init__(self, servers: ReplicatedRedis) -> None:
        self.servers = servers
        self.endpoint = FreezableProxy(("127.0.0.1", servers.primary.port))
        self.link = FreezableProxy(("127.0.0.1", servers.primary.port))

    @contextlib.contextmanager
    def running(self) -> Iterator[Failover]:
        with self.endpoint.running(), contextlib.ExitStack() as stack:
            stack.enter_context(self.link.running())
            self._link_stack = stack.pop_all()
            replica = self.servers.replica
            replica.execute("REPLICAOF", "127.0.0.1", str(self.link.port))
            wait_until(
                lambda: (
                    replica.info("replication").get("master_link_status") == "up"
                    and replica.info("replication").get("master_port") == self.link.port
                ),
                what="the replica linked through the proxy",
            )
            try:
                yield self
            finally:
                self._link_stack.close()

    def hold_back_replica(self) -> None:
        self.link.freeze()

    def fail_over(self) -> None:
        """Kill the primary, cut the link (what it held never reaches the replica),
        promote the replica, give it a replica of its own and point the endpoint at it."""
        self.servers.kill_primary()
        self._link_stack.close()
        self.servers.promote_replica()
        self.servers.add_replica()
        self.endpoint.target = ("127.0.0.1", self.servers.replica.port)


@pytest.fixture
def failover() -> Iterator[Failover]:
    with ReplicatedRedis() as servers, Failover(servers).running() as f:
        yield f


def _fail_over(env: Env, failover: Failover, replicas: int) -> int:
    """Run a worker through the failover (every event committed); return how many events
    the promoted replica counted."""
    settings = env.settings()
    url = f"redis://127.0.0.1:{failover.endpoint.port}/0"
    settings = dataclasses.replace(
        settings,
        redis=dataclasses.replace(
            settings.redis, url=Secret(url), replicas=replicas, replica_timeout_ms=300
        ),
    )
    worker = WorkerHandle(Worker(settings, simple_model()))
    env.workers.append(worker)
    traffic = Traffic(seed=31, leads=40, late_rate=0, malformed_rate=0, duplicate_rate=0)
    before, during = traffic.next(EVENTS // 2), traffic.next(EVENTS // 2)
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in before])
    committed_all(env, before)

    failover.hold_back_replica()
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in during])
    time.sleep(HELD_S)
    ready = worker.worker.metrics.ready._value.get()
    failover.fail_over()
    committed_all(env, before + during)
    worker.stop()
    if replicas:  # the replica did not acknowledge: the worker said it was not ready
        assert ready == 0
    client = redis.Redis.from_url(failover.servers.replica_url)  # the primary now
    try:
        store = StateStore(client, namespace=env.prefix, ttl_ms=0)
        counted, expected = counted_events(store, before + during)
        assert sum(expected.values()) == EVENTS
        return sum(counted.values())
    finally:
        client.close()


def test_without_waiting_for_the_replica_a_failover_loses_committed_events(
    env: Env, failover: Failover
) -> None:
    counted = _fail_over(env, failover, replicas=0)
    print(f"\nwithout --redis-replicas: {counted} of {EVENTS} events counted after the failover")
    assert counted < EVENTS


def test_waiting_for_one_replica_a_failover_loses_nothing(env: Env, failover: Failover) -> None:
    assert _fail_over(env, failover, replicas=1) == EVENTS  # each once, none lost
