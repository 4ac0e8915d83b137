"""Redis over TLS, as the ACL user of deploy/redis/users.acl: the worker scores with only
those commands and keys (a client certificate required, certificates made by a fixture),
anything outside the ACL is refused, and a Redis the worker cannot verify stops it at
start-up with a line naming the setting. The same user also drives a Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    Env,
    assert_counted_once,
    worker_environment,
    worker_exit,
    worker_until_committed,
)
from tests.integration.redis_servers import RedisCluster, TlsRedis, make_certificates

ACL_FILE = Path(__file__).parents[2] / "deploy" / "redis" / "users.acl"
PASSWORD = "s3cret-for-tests"


def acl_line(namespace: str) -> str:
    """The shipped user line, with a password and the test's namespace."""
    (line,) = [x for x in ACL_FILE.read_text().splitlines() if x.startswith("user ")]
    assert " ~ls:* " in line
    assert ">CHANGE-ME" in line
    return line.replace(">CHANGE-ME", f">{PASSWORD}").replace(" ~ls:* ", f" ~{namespace}:* ")


@pytest.fixture
def tls_env(env: Env) -> Iterator[tuple[Env, TlsRedis]]:
    with TlsRedis(acl_lines=[acl_line(env.prefix)], auth_clients="yes") as server:
        yield env, server


def test_the_worker_scores_over_tls_as_the_least_privileged_user(
    tls_env: tuple[Env, TlsRedis],
) -> None:
    env, server = tls_env
    certificates = server.certificates
    url = server.url("leadscore", PASSWORD)
    environment = worker_environment(
        env,
        redis_url=url,
        redis_ca_file=str(certificates.ca),
        redis_cert_file=str(certificates.client_certificate),
        redis_key_file=str(certificates.client_key),
        redis_replicas="0",
    )
    sent = Traffic(seed=61, leads=30, late_rate=0, malformed_rate=0).next(200)
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in sent])
    code, output = worker_until_committed(env, environment, sent)
    assert code == 0, output
    assert "persist state failed" not in output, output
    assert "NOPERM" not in output, output
    assert PASSWORD not in output

    client = redis.Redis.from_url(url, **server.ssl_options())
    try:
        store = StateStore(client, namespace=env.prefix, ttl_ms=0)
        assert assert_counted_once(store, sent) > 150
        # outside the ACL: another key pattern, a command the worker does not need
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("other:key")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.keys(f"{env.prefix}:*")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
    finally:
        client.close()


def test_without_a_client_certificate_or_the_right_ca_redis_is_unreachable(
    tls_env: tuple[Env, TlsRedis], tmp_path: Path
) -> None:
    """A TLS failure is a start-up problem naming --redis-url, not a hang."""
    env, server = tls_env
    other_ca = make_certificates(tmp_path).ca
    environment = worker_environment(
        env,
        redis_url=server.url("leadscore", PASSWORD),
        redis_ca_file=str(other_ca),
        startup_timeout="3s",
    )
    code, output = worker_exit(environment)
    assert code == 1
    assert "--redis-url: cannot reach Redis at rediss://leadscore:***@" in output
    assert "CERTIFICATE_VERIFY_FAILED" in output
    assert PASSWORD not in output


def test_the_acl_user_is_enough_on_a_redis_cluster(
    cluster_env: Env, redis_cluster: RedisCluster
) -> None:
    """The Cluster client also reads the slot and command tables: the shipped line allows
    them. Every write path of the store runs as that user."""
    env = cluster_env
    for node in redis_cluster.nodes:
        host, port = node.split(":")
        admin = redis.Redis(host=host, port=int(port))
        admin.execute_command("ACL", "SETUSER", *acl_line(env.prefix).split()[1:])
        admin.close()
    host, port = redis_cluster.nodes[0].split(":")
    env.cluster_url = url = f"redis://leadscore:{PASSWORD}@{host}:{port}/0"
    sent = Traffic(seed=62, leads=30, late_rate=0, malformed_rate=0).next(100)
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in sent])
    code, output = worker_until_committed(env, worker_environment(env), sent)
    assert code == 0, output
    assert "persist state failed" not in output, output
    assert "NOPERM" not in output, output
    client = redis.RedisCluster.from_url(url)
    try:
        store = StateStore(client, namespace=env.prefix, ttl_ms=0)
        assert assert_counted_once(store, sent) > 50
    finally:
        client.close()
