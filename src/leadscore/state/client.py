"""The Redis client the settings ask for: standalone or Cluster, plain or TLS."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from leadscore.errors import ConfigError
from leadscore.settings import RedisSettings

# a short timeout: a call in flight when SIGTERM comes delays the shutdown by it
SOCKET_TIMEOUT_S = 2.0


def redis_client(
    settings: RedisSettings, timeout_s: float = SOCKET_TIMEOUT_S
) -> redis.Redis | RedisCluster:
    """A client for `settings`; connects lazily (the start-up checks make the first call)."""
    url = settings.url.value
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("--redis-url: expected redis://HOST:PORT/DB or rediss:// (TLS)")
    tls = url.startswith("rediss://")
    if not tls and (settings.ca_file or settings.cert_file or settings.key_file):
        raise ConfigError("--redis-ca-file and --redis-cert-file need a rediss:// URL")
    if bool(settings.cert_file) != bool(settings.key_file):
        raise ConfigError("--redis-cert-file and --redis-key-file go together")
    # a read must outlast a WAIT for the replicas: a timed-out read is sent again
    read_timeout_s = max(timeout_s, settings.replica_timeout_ms / 1000 + 1)
    options: dict[str, Any] = {
        "socket_timeout": read_timeout_s,
        "socket_connect_timeout": timeout_s,
        # one immediate retry (a pooled connection the server closed); an outage beyond
        # it reaches the worker at once, which backs off and reports not ready (redis-py's
        # default retries for seconds, and resends writes meanwhile)
        "retry": Retry(NoBackoff(), 1),
    }
    if tls:
        options.update(
            ssl_ca_certs=settings.ca_file,
            ssl_certfile=settings.cert_file,
            ssl_keyfile=settings.key_file,
        )
    if settings.cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)
