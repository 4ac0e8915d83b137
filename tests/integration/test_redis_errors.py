"""Redis errors by class, against a real Redis: a lost script is loaded again, an outage
(out of memory here; unreachable and hung in test_outage.py, failover and resharding in
the replication and Cluster tests) holds the worker not ready until it passes, and an
error retrying cannot fix stops the worker with the command and Redis's reply."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from leadscore.codec import InputDecoder
from leadscore.embedded import free_port, stop_process
from leadscore.errors import StateRefused, StateUnavailable
from leadscore.events import ProfileKey
from leadscore.scoring.score import score
from leadscore.simulate import Traffic
from leadscore.state import keys
from leadscore.state.store import StateStore, Stored, Write
from tests.integration.conftest import (
    Env,
    assert_counted_once,
    committed_all,
    wait_until,
    worker_environment,
    worker_exit,
)
from tests.integration.redis_servers import RedisCluster, ReplicatedRedis, TlsRedis
from tests.models import simple_model
from tests.records import encoded, now_ms

LEAD = ProfileKey("lead", "e-1")
VISITS = ("t.visits", 0)


def _write(store: StateStore, base: Stored) -> Write:
    event = InputDecoder("Visit", max_clock_skew_ms=300_000)(
        encoded("Visit", LEAD.id, occurred_at=now_ms())
    )
    state = score(LEAD, None, [event], simple_model()).state
    return Write(LEAD, base, state, {VISITS: base.version}, token=1)


def test_a_script_redis_lost_is_loaded_again(any_env: Env) -> None:
    """On a Cluster, SCRIPT FLUSH reaches every node, as a restart of all would."""
    env = any_env
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert store.save([_write(store, Stored())], progress={VISITS: 1}) == []
    env.redis.script_flush()  # as after a restart or a failover to a replica
    assert store.save([_write(store, store.read(LEAD))], progress={VISITS: 2}) == []
    assert store.read(LEAD).version == 2
    assert store.progress([VISITS]) == {VISITS: 2}


def test_out_of_memory_is_an_outage_the_worker_waits_out(env: Env) -> None:
    """Redis refuses writes while over maxmemory (noeviction): the worker reports not
    ready and retries the batch, and once memory is freed counts every event once."""
    used = int(env.redis.info("memory")["used_memory"])
    traffic = Traffic(seed=12, leads=30, late_rate=0, malformed_rate=0, duplicate_rate=0)
    first, second = traffic.next(60), traffic.next(60)
    worker = env.start_worker()
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in first])
    committed_all(env, first)
    old = env.redis.config_get("maxmemory")["maxmemory"]
    env.redis.config_set("maxmemory", used // 2)
    try:
        env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in second])
        wait_until(lambda: worker.worker.metrics.ready._value.get() == 0, what="not ready")
        assert not worker.worker.store.healthy
    finally:
        env.redis.config_set("maxmemory", old)
    committed_all(env, first + second)
    wait_until(lambda: worker.worker.metrics.ready._value.get() == 1, what="ready again")
    worker.stop()
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert assert_counted_once(store, first + second) == len(first) + len(second)


def test_a_wrong_key_type_stops_the_worker_with_the_command_and_the_reply(env: Env) -> None:
    """Retrying cannot fix it: the worker exits non-zero and says what Redis replied,
    instead of reporting not ready for ever."""
    env.redis.hset(keys.profile_key(env.prefix, LEAD), mapping={"v": 1})
    env.produce([(env.topic("visits"), LEAD.id.encode(), encoded("Visit", LEAD.id))])
    code, output = worker_exit(worker_environment(env))
    assert code == 1
    assert "Redis refused GET: WRONGTYPE" in output
    assert "retrying" not in output
    assert env.committed()[env.topic("visits")] <= 0  # nothing committed: replayed later


def test_a_missing_acl_permission_stops_the_worker_and_says_which(env: Env) -> None:
    """A user that may read but not run scripts: the first write is refused (NOPERM) and
    the worker exits with that reply, naming the command."""
    with TlsRedis(
        acl_lines=[f"user reader on >pw ~{env.prefix}:* +@read +ping +hello +client"]
    ) as server:
        tls = server.ssl_options()
        url = server.url("reader", "pw")
        store = StateStore(redis.Redis.from_url(url, **tls), namespace=env.prefix, ttl_ms=0)
        store.check()  # PING is allowed: the start-up check passes
        assert store.read(LEAD) == Stored()
        with pytest.raises(StateRefused, match=r"EVALSHA: .*(NOPERM|no permissions)"):
            store.save([_write(store, Stored())])

        env.produce([(env.topic("visits"), LEAD.id.encode(), encoded("Visit", LEAD.id))])
        environment = worker_environment(
            env,
            redis_url=url,
            redis_ca_file=str(server.certificates.ca),
            redis_cert_file=str(server.certificates.client_certificate),
            redis_key_file=str(server.certificates.client_key),
        )
        code, output = worker_exit(environment)
        assert code == 1
        assert "Redis refused EVALSHA" in output
        assert "reader:pw" not in output  # the URL's password is never printed


def test_a_redis_loading_its_dataset_is_an_outage(tmp_path: Path) -> None:
    """After a restart, Redis answers LOADING until its snapshot is read: the store says
    unavailable (the worker waits, not ready), then reads."""
    port = free_port()
    server = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
        "--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
    ]  # fmt: skip
    first = subprocess.Popen(server, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        wait_until(lambda: _answers(client), what="redis-server")
        client.execute_command("DEBUG", "POPULATE", 5000)
        client.save()
        client.close()
    finally:
        stop_process(first)
    # 5,000 keys at 300 µs each: over a second of LOADING
    second = subprocess.Popen(
        [*server, "--key-load-delay", "300", "--loading-process-events-interval-bytes", "1024"],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
        store = StateStore(client, namespace="x", ttl_ms=0)
        refused = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                assert store.read(LEAD) == Stored()
                break
            except StateUnavailable as exc:
                refused.append(str(exc))
                time.sleep(0.05)
        assert any("loading" in r.lower() for r in refused), refused[:3]
        assert store.healthy
        client.close()
    finally:
        stop_process(second)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_an_unreachable_redis_is_an_outage() -> None:
    store = StateStore(
        redis.Redis(port=1, socket_connect_timeout=1),
        namespace="x",
        ttl_ms=0,
    )
    with pytest.raises(StateUnavailable, match="unavailable"):
        store.read(LEAD)
    assert not store.healthy


def test_writing_to_a_replica_is_an_outage() -> None:
    """READONLY: the address now leads to a replica (a failover under way)."""
    with ReplicatedRedis() as servers:
        client = redis.Redis.from_url(servers.replica_url)
        store = StateStore(client, namespace="x", ttl_ms=0)
        assert store.read(LEAD) == Stored()  # reads work
        with pytest.raises(StateUnavailable, match=r"READONLY|read only"):
            store.save([_write(store, Stored())])
        client.close()


def test_a_cluster_without_the_cluster_setting_is_refused_with_a_hint(
    redis_cluster: RedisCluster,
) -> None:
    """A standalone client on a Cluster node gets MOVED for most keys: retrying would not
    help, the message says which setting is missing."""
    host, port = redis_cluster.nodes[0].split(":")
    client = redis.Redis(host=host, port=int(port))
    store = StateStore(client, namespace="x", ttl_ms=0)
    with pytest.raises(StateRefused, match="set --redis-cluster"):
        store.load([ProfileKey("lead", f"L{n}") for n in range(20)])
    client.close()
