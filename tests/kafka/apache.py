"""A real Apache Kafka (KRaft, one combined broker + controller) for tests and benchmarks.

The jars come from Maven Central through `pom.xml` beside this file, fetched once into a
cache directory (`LEADSCORE_KAFKA_CACHE`, default `~/.cache/leadscore`) and reused. Each
start formats a fresh storage directory, writes a `server.properties` for free loopback
ports, starts `kafka.Kafka` with a small heap, waits until it answers and stops it
(also when the caller fails).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from leadscore.embedded import free_port, stop_process
from leadscore.kafka.admin import wait_for_broker

POM = Path(__file__).with_name("pom.xml")
START_TIMEOUT_S = 90.0
LOG4J2 = """\
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
"""


def available() -> bool:
    """Java and Maven are here (the jars may still have to be fetched)."""
    return bool(shutil.which("java") and (shutil.which("mvn") or _cached_libs().is_dir()))


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert match, "pom.xml names no kafka.version"
    return match.group(1)


def _cached_libs() -> Path:
    root = Path(os.environ.get("LEADSCORE_KAFKA_CACHE", Path.home() / ".cache" / "leadscore"))
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return root / f"kafka-{kafka_version()}-{digest}"


def fetch_jars() -> Path:
    """The directory of Kafka's jars, fetched with Maven on first use."""
    libs = _cached_libs()
    if libs.is_dir():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="fetching-", dir=libs.parent))
    try:
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={partial}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        partial.rename(libs)  # atomic: a half-fetched directory is never used
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"fetching Apache Kafka's jars failed:\n{exc.stdout}{exc.stderr}"
        ) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return libs


@dataclass
class ApacheKafka:
    """A running broker: where to connect, and where its files are."""

    bootstrap_servers: str
    workdir: Path
    process: subprocess.Popen[bytes]
    listeners: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> str:
        path = self.workdir / "logs" / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _cluster_id() -> str:
    """A random KRaft cluster id; like Kafka's own, never starting with '-' (an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@contextlib.contextmanager
def apache_kafka(
    *,
    extra_listeners: dict[str, str] | None = None,
    extra_properties: dict[str, str] | None = None,
    format_args: list[str] | None = None,
) -> Iterator[ApacheKafka]:
    """Start Apache Kafka on free loopback ports; yields it, stops it on exit.

    `extra_listeners` maps a listener name to its security protocol (e.g. `SSL`); each gets
    a free port, written back into `ApacheKafka.listeners` as `host:port`.
    """
    libs = fetch_jars()
    workdir = Path(tempfile.mkdtemp(prefix="leadscore-kafka-"))
    try:
        port, controller = free_port(), free_port()
        listeners = {"PLAINTEXT": f"127.0.0.1:{port}"}
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        for name, protocol in (extra_listeners or {}).items():
            listeners[name] = f"127.0.0.1:{free_port()}"
            protocols[name] = protocol
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": ",".join(
                [f"{n}://{a}" for n, a in listeners.items()]
                + [f"CONTROLLER://127.0.0.1:{controller}"]
            ),
            "advertised.listeners": ",".join(f"{n}://{a}" for n, a in listeners.items()),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(f"{n}:{p}" for n, p in protocols.items()),
            "log.dirs": str(workdir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "group.initial.rebalance.delay.ms": "0",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            **(extra_properties or {}),
        }
        config = workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (workdir / "log4j2.properties").write_text(LOG4J2)
        (workdir / "logs").mkdir()
        java = [
            "java",
            "-Xms128m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={workdir / 'logs'}",
            f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]
        formatted = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(config),
                *(format_args or []),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if formatted.returncode != 0:
            raise RuntimeError(
                f"formatting the KRaft storage failed:\n{formatted.stdout}{formatted.stderr}"
            )
        with open(workdir / "logs" / "stdout.log", "wb") as output:
            process = subprocess.Popen(
                [*java, "kafka.Kafka", str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        broker = ApacheKafka(listeners["PLAINTEXT"], workdir, process, listeners)
        try:
            _wait(broker)
            yield broker
        finally:
            stop_process(process, grace_s=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(broker: ApacheKafka) -> None:
    """Until the port accepts connections (no client yet: it would log every refusal)."""
    host, port = broker.bootstrap_servers.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if broker.process.poll() is not None:
            stdout = (broker.workdir / "logs" / "stdout.log").read_text(errors="replace")
            raise RuntimeError(
                f"Apache Kafka exited ({broker.process.returncode}):\n"
                f"{stdout[-3000:]}{broker.log[-3000:]}"
            )
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Apache Kafka did not listen within {START_TIMEOUT_S} s"
                ) from None
        time.sleep(0.1)
    wait_for_broker({"bootstrap.servers": broker.bootstrap_servers}, START_TIMEOUT_S)


def set_producer_quota(bootstrap_servers: str, client_id: str, bytes_per_s: int | None) -> None:
    """Throttle the producers of `client_id` to `bytes_per_s` (None: lift the quota), with
    Kafka's own kafka-configs tool (the Python client has no quota API)."""
    change = (
        ["--add-config", f"producer_byte_rate={bytes_per_s}"]
        if bytes_per_s is not None
        else ["--delete-config", "producer_byte_rate"]
    )
    subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            f"{fetch_jars()}/*",
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            bootstrap_servers,
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            client_id,
            *change,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
