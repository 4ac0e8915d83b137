"""The worker on a Redis Cluster of three masters (loopback): slots move while it runs
(MOVED and ASK redirections, keys migrating under a batch's write) and every event still
counts once. The end-to-end, crash and scale-out tests also run on the Cluster
(`any_env`, `redis_kind`)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from click.testing import CliRunner
from redis.crc import key_slot

from leadscore.cli import main
from leadscore.errors import StateUnavailable
from leadscore.events import ProfileKey
from leadscore.scoring.state import LeadState
from leadscore.simulate import Traffic
from leadscore.state import keys
from leadscore.state.store import Due, StateStore, Stored, Write
from tests.integration.conftest import Env, assert_counted_once, committed_all, wait_until
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

    # `leadscore inspect` reads a lead from the Cluster
    lead = next(m.key.decode() for m in sent if m.key and m.key.startswith(b"lead-"))
    result = CliRunner().invoke(
        main,
        [
            *("inspect", lead, "--json", "--redis-cluster"),
            *("--redis-url", env.redis_url, "--state-namespace", env.prefix),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["lead_id"] == lead


def _admin(node: str) -> redis.Redis:
    host, port = node.split(":")
    return redis.Redis(host=host, port=int(port), decode_responses=True)


def _cluster_ok(cluster: RedisCluster) -> bool:
    return all(
        "cluster_state:ok" in _admin(n).execute_command("CLUSTER", "INFO") for n in cluster.nodes
    )


PARTITION = ("t.visits", 0)


def _store(cluster: RedisCluster) -> tuple[StateStore, redis.RedisCluster]:
    client = redis.RedisCluster.from_url(cluster.url)
    return StateStore(client, namespace="e", ttl_ms=0), client


def _keep_and_mark(store: StateStore, offset: int) -> None:
    """A partition call (three keys of one slot): a schedule entry, a kept field dropped,
    the progress marker."""
    profile = ProfileKey("lead", f"p{offset}")
    store.save(
        [],
        [Due(profile, PARTITION, 1_000 + offset)],
        forget=[(PARTITION, "none")],
        progress={PARTITION: offset},
    )


def test_a_slot_caught_mid_migration_is_an_outage_until_it_settles() -> None:
    """The partition's three keys are split between two nodes while their slot migrates:
    Redis answers TRYAGAIN, the client retries briefly, then the store says unavailable
    (the worker holds the batch); once the migration ends the write goes through."""
    with RedisCluster() as cluster:
        store, client = _store(cluster)
        _keep_and_mark(store, 5)
        progress = keys.progress_key("e", *PARTITION)
        slot = key_slot(progress.encode())
        source = client.get_node_from_key(progress).name
        target = next(n for n in cluster.nodes if n != source)
        ids = cluster.node_ids()
        _admin(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        _admin(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        host, port = target.split(":")
        _admin(source).execute_command("MIGRATE", host, port, progress, 0, 5000)
        with pytest.raises(StateUnavailable, match="slot migrating") as caught:
            _keep_and_mark(store, 6)
        print(f"\nmid-migration: {caught.value}")
        for key in _admin(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            _admin(source).execute_command("MIGRATE", host, port, key, 0, 5000)
        for node in cluster.nodes:
            _admin(node).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        _keep_and_mark(store, 7)
        assert store.progress([PARTITION]) == {PARTITION: 7}
        assert client.get_node_from_key(progress).name == target
        client.close()


def test_a_cluster_down_is_an_outage_until_it_is_back() -> None:
    """A slot without a node takes the whole Cluster down (cluster-require-full-coverage):
    CLUSTERDOWN makes the store say unavailable, and it writes again once the slot is
    served."""
    with RedisCluster() as cluster:
        store, client = _store(cluster)
        _keep_and_mark(store, 5)
        progress = keys.progress_key("e", *PARTITION)
        slot = key_slot(progress.encode())
        owner = client.get_node_from_key(progress).name
        unrelated = next(s for s in range(16384) if s != slot and _owner(client, s) == owner)
        _admin(owner).execute_command("CLUSTER", "DELSLOTS", unrelated)
        wait_until(lambda: not _cluster_ok(cluster), what="the cluster to go down")
        with pytest.raises(StateUnavailable, match="cluster is down") as caught:
            _keep_and_mark(store, 6)
        print(f"\ncluster down: {caught.value}")
        _admin(owner).execute_command("CLUSTER", "ADDSLOTS", unrelated)
        wait_until(lambda: _cluster_ok(cluster), what="the cluster to come back")
        _keep_and_mark(store, 7)
        assert store.progress([PARTITION]) == {PARTITION: 7}
        client.close()


def _owner(client: redis.RedisCluster, slot: int) -> str:
    return str(client.nodes_manager.get_node_from_slot(slot).name)


def test_conflicts_are_reported_for_the_right_profiles_when_slots_interleave(
    redis_cluster: RedisCluster,
) -> None:
    """The calls go per slot, so their replies do not come in the order of the writes."""
    client = redis.RedisCluster.from_url(redis_cluster.url)
    store = StateStore(client, namespace="order", ttl_ms=0)
    first = ProfileKey("lead", "a")
    slot = key_slot(keys.profile_key("order", first).encode())
    same = next(
        p
        for n in range(100_000)
        if key_slot(keys.profile_key("order", p := ProfileKey("lead", f"s{n}")).encode()) == slot
    )
    other = ProfileKey("lead", "b")
    assert key_slot(keys.profile_key("order", other).encode()) != slot
    state = LeadState()
    store.save([Write(other, Stored(), state, {PARTITION: 0}, token=1)])  # now at version 1
    writes = [
        Write(first, Stored(), state, {PARTITION: 1}, token=2),
        Write(other, Stored(), state, {PARTITION: 1}, token=2),  # expects 0: a conflict
        Write(same, Stored(), state, {PARTITION: 1}, token=2),
    ]
    assert store.save(writes) == [other]
    assert store.read(first).version == store.read(same).version == 1
    client.close()
