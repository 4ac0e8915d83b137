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

    addresses: list[str] = []

    def use_then_fail() -> None:
        with embedded_services() as services:
            addresses.append(services.bootstrap_servers)
            addresses.append(services.redis_url.removeprefix("redis://").removesuffix("/0"))
            ensure_topics({"bootstrap.servers": services.bootstrap_servers}, ["embedded.check"])
            client = redis.Redis.from_url(services.redis_url)
            assert client.set("k", "v")
            client.close()
            assert all(listening(a) for a in addresses)
            raise Boom

    with pytest.raises(Boom):
        use_then_fail()
    assert len(addresses) == 2
    assert not any(listening(a) for a in addresses)
