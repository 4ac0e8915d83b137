"""The worker on a Redis Cluster of three masters (loopback): slots move while it runs
(MOVED and ASK redirections, keys migrating under a batch's write) and every event still
counts once. The end-to-end, crash and scale-out tests also run on the Cluster
(`any_env`, `redis_kind`)."""

from __future__ import annotations

import threading
import time

import redis

from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from tests.integration.conftest import Env, assert_counted_once, committed_all
from tests.integration.redis_servers import RedisCluster

RESHARDS = 9
SLOTS = 1000


def redirections(cluster: RedisCluster) -> int:
    """MOVED and ASK replies the nodes sent so far (INFO errorstats)."""
    total = 0
    for node in cluster.nodes:
        host, port = node.split(":")
        stats = redis.Redis(host=host, port=int(port)).info("errorstats")
        total += sum(stats.get(f"errorstat_{e}", {}).get("count", 0) for e in ("MOVED", "ASK"))
    return total


def test_slots_move_while_the_worker_runs(cluster_env: Env, redis_cluster: RedisCluster) -> None:
    env = cluster_env
    worker = env.start_worker()
    traffic = Traffic(seed=51, leads=300, late_rate=0, malformed_rate=0)
    sent: list = []  # type: ignore[type-arg]
    done = threading.Event()

    def produce() -> None:
        while not done.is_set():
            batch = traffic.next(50)
            env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in batch])
            sent.extend(batch)
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    redirected = redirections(redis_cluster)
    try:
        nodes = redis_cluster.nodes
        for n in range(RESHARDS):  # round the ring: each node gives slots to the next
            time.sleep(0.5)
            redis_cluster.reshard(SLOTS, nodes[n % 3], nodes[(n + 1) % 3])
    finally:
        done.set()
        producer.join()
    committed_all(env, sent)
    worker.stop()
    assert worker.worker.store.healthy
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    counted = assert_counted_once(store, sent)
    assert counted > 500
    moved = redirections(redis_cluster) - redirected
    print(f"\n{RESHARDS} reshards of {SLOTS} slots: {counted} events, {moved} redirections")
    assert moved > 0  # the worker was sent elsewhere while slots moved
    # the state is spread over the three nodes by lead
    per_node = [
        sum(1 for _ in node.redis_connection.scan_iter(match=f"{env.prefix}:lead:*", count=1000))
        for node in env.redis.get_primaries()  # type: ignore[union-attr]
    ]
    assert len(per_node) == 3
    assert all(n > 0 for n in per_node), per_node
