"""Session fixtures: a real Kafka-protocol broker and a real Redis.

Which broker and which Redis (`--broker`, the order of auto mode, the session header) is
decided in tests/conftest.py; the `services` fixture starts them, once per session.

Each test gets its own topics, consumer group and Redis namespace, so tests never see each
other's data.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from leadscore.codec import InputDecoder
from leadscore.embedded import embedded_broker, embedded_redis
from leadscore.errors import InvalidEvent
from leadscore.events import ProfileKey
from leadscore.kafka.admin import ensure_topics
from leadscore.model import Model
from leadscore.settings import (
    InputTopic,
    KafkaSettings,
    MetricsSettings,
    RedisSettings,
    Secret,
    Settings,
    WorkerSettings,
)
from leadscore.state.store import StateStore
from leadscore.worker import Worker
from tests.conftest import BROKER_NAMES, broker_kind
from tests.integration.redis_servers import RedisCluster
from tests.kafka import apache
from tests.models import SIMPLE, simple_model

# Tansu answers a new group's first join after half the session timeout: keep it short.
CLIENT_OPTIONS = (("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500"))
KAFKA_OPTIONS = " ".join(f"{k}={v}" for k, v in CLIENT_OPTIONS)  # as LEADSCORE_KAFKA_OPTIONS
RECORD_TYPES = {"clicks": "Click", "visits": "Visit", "forms": "FormSubmission", "calls": "Call"}


@dataclass(frozen=True)
class Services:
    bootstrap_servers: str
    redis_url: str
    description: str
    broker_pid: int | None = None  # a broker process the tests started (can be paused)


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    kind = broker_kind(request.config)
    with contextlib.ExitStack() as stack:
        redis_url = os.environ.get("LEADSCORE_TEST_REDIS_URL")
        pid = None
        if kind == "env":
            bootstrap = os.environ["LEADSCORE_TEST_BOOTSTRAP"]
        elif kind == "docker":
            from testcontainers.kafka import KafkaContainer
            from testcontainers.redis import RedisContainer

            bootstrap = stack.enter_context(KafkaContainer().with_kraft()).get_bootstrap_server()
            if not redis_url:
                container = stack.enter_context(RedisContainer())
                host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
                redis_url = f"redis://{host}:{port}/0"
        elif kind == "kafka":
            kafka = stack.enter_context(apache.apache_kafka())
            bootstrap, pid = kafka.bootstrap_servers, kafka.process.pid
        else:
            bootstrap = stack.enter_context(embedded_broker())
            pid = _listening_pid(bootstrap)
        if not redis_url:
            redis_url = stack.enter_context(embedded_redis())
        yield Services(bootstrap, redis_url, BROKER_NAMES[kind], pid)


def _listening_pid(address: str) -> int | None:
    """The process started with this listener address (the embedded broker)."""
    found = subprocess.run(["pgrep", "-f", f"tcp://{address}"], capture_output=True, text=True)
    pids = found.stdout.split()
    return int(pids[0]) if pids else None


@dataclass
class Env:
    """One test's isolated slice of the services: topics, group, namespace; its Redis is
    the session's standalone one, or a Redis Cluster (`cluster_url`)."""

    services: Services
    prefix: str
    redis: redis.Redis | redis.RedisCluster
    partitions: int = 1
    workers: list[WorkerHandle] = field(default_factory=list)
    cluster_url: str | None = None

    @property
    def redis_url(self) -> str:
        return self.cluster_url or self.services.redis_url

    @property
    def redis_settings(self) -> RedisSettings:
        return RedisSettings(
            url=Secret(self.redis_url), namespace=self.prefix, cluster=bool(self.cluster_url)
        )

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    @property
    def input_topics(self) -> dict[str, str]:
        """record type -> topic name"""
        return {rt: self.topic(kind) for kind, rt in RECORD_TYPES.items()}

    def settings(
        self,
        group_id: str | None = None,
        kafka: KafkaSettings | None = None,
        guarantee: str = "at-least-once",
        **worker: Any,
    ) -> Settings:
        """Worker settings for this test's topics; `kafka` overrides how to connect."""
        return Settings(
            kafka=kafka
            or KafkaSettings(
                bootstrap_servers=self.services.bootstrap_servers,
                group_id=group_id or f"{self.prefix}-group",
                input_topics=tuple(InputTopic(t, rt) for rt, t in self.input_topics.items()),
                output_topic=self.topic("scores"),
                dlq_topic=self.topic("dlq"),
                options=CLIENT_OPTIONS,
                processing_guarantee=guarantee,
                transactional_id=f"{self.prefix}-tx",
            ),
            redis=self.redis_settings,
            metrics=MetricsSettings(port=0),
            worker=replace(WorkerSettings(), **worker),
        )

    def start_worker(
        self,
        model: Model | None = None,
        group_id: str | None = None,
        kafka: KafkaSettings | None = None,
        guarantee: str = "at-least-once",
        clock: Callable[[], float] | None = None,
        **worker: Any,
    ) -> WorkerHandle:
        settings = self.settings(group_id, kafka, guarantee, **worker)
        handle = WorkerHandle(Worker(settings, model or simple_model(), clock=clock))
        self.workers.append(handle)
        return handle

    def produce(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        """(topic, key, value) records, in order, acknowledged before returning.

        Idempotent: a retried request (a partition of a new topic without its leader yet)
        cannot land behind the ones sent after it.
        """
        producer = Producer(
            {"bootstrap.servers": self.services.bootstrap_servers, "enable.idempotence": True}
        )
        for topic, key, value in messages:
            producer.produce(topic, value=value, key=key)
        assert producer.flush(30) == 0

    def consume(self, kind: str, count: int, timeout_s: float = 60) -> list[Any]:
        """The first `count` records of a topic, read from the beginning (no group)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.services.bootstrap_servers,
                "group.id": "unused",
                "enable.auto.commit": False,
            }
        )
        consumer.assign(
            [TopicPartition(self.topic(kind), p, OFFSET_BEGINNING) for p in range(self.partitions)]
        )
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(records) < count and time.monotonic() < deadline:
                for record in consumer.consume(count - len(records), 0.5):
                    if record.error() is None:
                        records.append(record)
        finally:
            consumer.close()
        return records

    def committed(self) -> dict[str, int]:
        """Committed offsets of the worker group, per input topic (partition 0)."""
        return {t: o for (t, _p), o in self.committed_offsets(partitions=1).items()}

    def committed_offsets(self, partitions: int) -> dict[tuple[str, int], int]:
        """Committed offsets of the worker group, per input partition (negative: none).

        read_uncommitted: do not wait for a pending transactional commit to settle (after a
        SIGKILL it stays pending until the next instance fences it); it is not counted.
        """
        consumer = Consumer(
            {
                "bootstrap.servers": self.services.bootstrap_servers,
                "group.id": f"{self.prefix}-group",
                "isolation.level": "read_uncommitted",
            }
        )
        wanted = [
            TopicPartition(t, p) for t in self.input_topics.values() for p in range(partitions)
        ]
        deadline = time.monotonic() + 60
        try:
            while True:
                try:
                    parts = consumer.committed(wanted, timeout=10)
                    break
                except KafkaException:  # coordinator loading or moving: ask again
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            consumer.close()
        return {(tp.topic, tp.partition): tp.offset for tp in parts}


class WorkerHandle:
    """A worker running in a thread of the test process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run(self.stop_event)
        except BaseException as exc:
            self.error = exc
            raise

    def stop(self, timeout_s: float = 30) -> None:
        self.stop_event.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error:
            raise self.error


@contextlib.contextmanager
def isolated_env(
    services: Services, partitions: int = 1, cluster_url: str | None = None
) -> Iterator[Env]:
    """Fresh topics (`partitions` each), group and namespace on `services` (and on the
    Redis Cluster at `cluster_url`, if given); workers left running are stopped."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client: redis.Redis | redis.RedisCluster = (
        redis.RedisCluster.from_url(cluster_url)
        if cluster_url
        else redis.Redis.from_url(services.redis_url)
    )
    e = Env(services, prefix, client, partitions, cluster_url=cluster_url)
    ensure_topics(
        {"bootstrap.servers": services.bootstrap_servers},
        [*e.input_topics.values(), e.topic("scores"), e.topic("dlq")],
        partitions=partitions,
    )
    try:
        yield e
    finally:
        for handle in e.workers:
            if handle.thread.is_alive():
                handle.stop()
        client.close()


@pytest.fixture
def env(services: Services) -> Iterator[Env]:
    with isolated_env(services) as e:
        yield e


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster of three masters on loopback, for the session."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_env(services: Services, redis_cluster: RedisCluster) -> Iterator[Env]:
    """An Env whose state lives in the session's Redis Cluster."""
    with isolated_env(services, cluster_url=redis_cluster.url) as e:
        yield e


@pytest.fixture(params=["standalone", "cluster"])
def any_env(request: pytest.FixtureRequest) -> Env:
    """The test runs twice: on a standalone Redis and on a Redis Cluster."""
    name = "env" if request.param == "standalone" else "cluster_env"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def cluster_url(request: pytest.FixtureRequest, redis_kind: str) -> str | None:
    """The session's Redis Cluster URL if `redis_kind` is "cluster" (started on first use)."""
    if redis_kind != "cluster":
        return None
    return request.getfixturevalue("redis_cluster").url  # type: ignore[no-any-return]


def wait_until(check: Callable[[], bool], timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def read_all(env: Env, kind: str, idle_s: float = 3.0) -> list[Any]:
    """Every record of a topic (read_committed), until none arrives for `idle_s`."""
    consumer = Consumer(
        {
            "bootstrap.servers": env.services.bootstrap_servers,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign(
        [TopicPartition(env.topic(kind), p, OFFSET_BEGINNING) for p in range(env.partitions)]
    )
    records: list[Any] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            batch = [r for r in consumer.consume(1000, 0.5) if r.error() is None]
            if batch:
                records.extend(batch)
                last = time.monotonic()
    finally:
        consumer.close()
    return records


def worker_environment(env: Env, **overrides: str) -> dict[str, str]:
    """LEADSCORE_* variables that point `leadscore run` at this test's topics and namespace."""
    return {
        **os.environ,
        "LEADSCORE_BOOTSTRAP_SERVERS": env.services.bootstrap_servers,
        "LEADSCORE_REDIS_URL": env.redis_url,
        "LEADSCORE_REDIS_CLUSTER": "1" if env.cluster_url else "",
        "LEADSCORE_INPUT_TOPICS": ",".join(f"{t}={rt}" for rt, t in env.input_topics.items()),
        "LEADSCORE_OUTPUT_TOPIC": env.topic("scores"),
        "LEADSCORE_DLQ_TOPIC": env.topic("dlq"),
        "LEADSCORE_GROUP_ID": f"{env.prefix}-group",
        "LEADSCORE_STATE_NAMESPACE": env.prefix,
        "LEADSCORE_METRICS_PORT": "0",
        "LEADSCORE_KAFKA_OPTIONS": KAFKA_OPTIONS,
        "LEADSCORE_MODEL": str(SIMPLE),
        **{f"LEADSCORE_{k.upper()}": v for k, v in overrides.items()},
    }


def worker_process(environment: dict[str, str], output: Any = subprocess.PIPE) -> Any:
    """`leadscore run` as a process with `environment`; its output (text) to `output`."""
    return subprocess.Popen(
        [sys.executable, "-m", "leadscore", "run"],
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def worker_exit(environment: dict[str, str], timeout_s: float = 90) -> tuple[int, str]:
    """Run `leadscore run` until it exits by itself: its status and output."""
    process = worker_process(environment)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, str(output)


def worker_until_committed(
    env: Env, environment: dict[str, str], messages: Iterable[Any]
) -> tuple[int, str]:
    """Run `leadscore run` until it committed every one of `messages`, then SIGTERM it:
    its exit status and output."""
    process = worker_process(environment)
    try:
        committed_all(env, messages)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    return process.returncode, str(output)


def rewind(env: Env, offsets: dict[str, int] | None = None) -> None:
    """Reset the worker group's offsets to the beginning of every input topic (partition
    0), as kafka-consumer-groups --reset-offsets --to-earliest --execute does, or to
    `offsets` (topic: offset)."""
    consumer = Consumer(
        {"bootstrap.servers": env.services.bootstrap_servers, "group.id": f"{env.prefix}-group"}
    )
    try:
        consumer.commit(
            offsets=[
                TopicPartition(t, 0, (offsets or {}).get(t, 0)) for t in env.input_topics.values()
            ],
            asynchronous=False,
        )
    finally:
        consumer.close()


def schedule_drained(env: Env, until_ms: int) -> bool:
    """No profile of this test is due for a time-driven change at or before `until_ms`
    (a sweep's entries stay due until its outputs are acknowledged)."""
    keys = list(env.redis.scan_iter(f"{env.prefix}:due:*"))
    return all(env.redis.zcount(k, "-inf", until_ms) == 0 for k in keys)


class ManualClock:
    """A clock a test sets: seconds since the epoch, like time.time()."""

    def __init__(self, now_s: float | None = None) -> None:
        self.now_s = time.time() if now_s is None else now_s

    def __call__(self) -> float:
        return self.now_s

    def set_ms(self, ms: int) -> None:
        self.now_s = ms / 1000


def committed_all(env: Env, messages: Iterable[Any], timeout_s: float = 120) -> None:
    """Wait until the worker group committed every one of `messages` (with record_type)."""
    ends: dict[str, int] = defaultdict(int)
    for message in messages:
        ends[env.input_topics[message.record_type]] += 1
    wait_until(
        lambda: all(env.committed()[t] == n for t, n in ends.items()),
        timeout_s=timeout_s,
        what="every message committed",
    )


def counted_events(
    store: StateStore, messages: Iterable[Any]
) -> tuple[dict[ProfileKey, int], dict[ProfileKey, int]]:
    """Per profile of `messages` (with record_type): the events its stored state counts
    (0 if it has none), and its number of distinct valid event ids."""
    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt in RECORD_TYPES.values()}
    expected: dict[ProfileKey, set[str]] = defaultdict(set)
    for message in messages:
        try:
            event = decoders[message.record_type](message.value)
        except InvalidEvent:
            continue
        expected[event.profile_key].add(event.event_id)
    found = store.load(list(expected))
    counted = {p: s.state.events if s.state is not None else 0 for p, s in found.items()}
    return counted, {p: len(ids) for p, ids in expected.items()}


def assert_counted_once(store: StateStore, messages: Iterable[Any]) -> int:
    """Every valid event of `messages` changed its profile exactly once: each profile's
    event count equals its number of distinct valid event ids. Returns the total."""
    counted, expected = counted_events(store, messages)
    assert counted == expected
    return sum(counted.values())
