"""Embedded services start on free ports, answer, and stop even when the caller fails."""

from __future__ import annotations

import socket

import pytest
import redis

from leadscore.embedded import embedded_services
from leadscore.kafka.admin import ensure_topics


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_services_answer_and_are_stopped_when_the_caller_fails() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), embedded_services() as services:
        bootstrap = services.bootstrap_servers
        redis_address = services.redis_url.removeprefix("redis://").removesuffix("/0")
        ensure_topics({"bootstrap.servers": bootstrap}, ["embedded.check"])
        client = redis.Redis.from_url(services.redis_url)
        assert client.set("k", "v")
        client.close()
        raise Boom
    assert not listening(bootstrap)
    assert not listening(redis_address)
