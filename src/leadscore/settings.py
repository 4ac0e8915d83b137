"""One typed, frozen settings object, built from command-line flags and LEADSCORE_* variables.

Secrets (SASL and key passwords, a password inside the Redis URL) are wrapped in `Secret`
and never appear in `repr()`, logs or errors.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from leadscore.codec.schemas import INPUT_TYPES
from leadscore.durations import DAY_MS
from leadscore.errors import ConfigError

TOPIC_SUFFIXES = {
    ".clicks": "Click",
    ".visits": "Visit",
    ".forms": "FormSubmission",
    ".calls": "Call",
}
DEFAULT_INPUT_TOPICS = "leads.clicks,leads.visits,leads.forms,leads.calls"
PROCESSING_GUARANTEES = ("at-least-once", "exactly-once")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def redacted_url(url: str) -> str:
    """The URL with any password replaced by `***`: in its user part, and in a query
    parameter (`?password=...`, which the Redis client also accepts)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{name}=***" if name.lower() in _SECRET_PARAMETERS else item
        for item in parts.query.split("&")
        if item
        for name in (item.split("=", 1)[0],)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_SECRET_PARAMETERS = {"password", "pass", "passwd"}


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must not be printed."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class InputTopic:
    name: str
    record_type: str


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "leadscore"
    group_instance_id: str | None = None
    client_id: str = "leadscore"
    input_topics: tuple[InputTopic, ...] = ()
    output_topic: str = "leads.scores"
    dlq_topic: str = "leads.dlq"
    processing_guarantee: str = "at-least-once"
    transactional_id: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: Secret | None = None
    options: tuple[tuple[str, str], ...] = ()

    def common_config(self) -> dict[str, Any]:
        """librdkafka settings shared by the consumer, the producer and the admin client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
        }
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.value if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.value if self.ssl_key_password else None,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        config.update(dict(self.options))
        return config

    def consumer_config(self) -> dict[str, Any]:
        config = {"group.id": self.group_id, **self.common_config()}
        if self.group_instance_id:
            config["group.instance.id"] = self.group_instance_id
        return _only_for(config, "consumer")

    def producer_config(self) -> dict[str, Any]:
        config = {"linger.ms": 5, **self.common_config()}
        if self.processing_guarantee == "exactly-once":
            config["transactional.id"] = self.transactional_id or self.default_transactional_id()
        return _only_for(config, "producer")

    def default_transactional_id(self) -> str:
        """Stable across restarts of one worker (so a restart fences its predecessor's open
        transaction at once) and different between the workers of a group."""
        return f"leadscore-{self.group_id}-{self.group_instance_id or socket.gethostname()}"

    def admin_config(self) -> dict[str, Any]:
        return _only_for(self.common_config(), "admin")


# pass-through options that only make sense for one client type; others would warn
_CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "isolation.level",
    "group.",
    "queued.",
    "enable.auto.",
)
_PRODUCER_ONLY = (
    "linger.ms",
    "batch.",
    "acks",
    "compression.",
    "enable.idempotence",
    "message.send.max.retries",
    "queue.buffering.",
    "delivery.timeout.ms",
    "transactional.",
    "request.required.acks",
)


def _only_for(config: dict[str, Any], client: str) -> dict[str, Any]:
    def keep(key: str) -> bool:
        if client != "consumer" and key.startswith(_CONSUMER_ONLY):
            return False
        return not (client != "producer" and key.startswith(_PRODUCER_ONLY))

    return {k: v for k, v in config.items() if keep(k)}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where the state lives: a standalone Redis or a Cluster (`cluster`: the URL names any
    node), over TLS with `rediss://` (`ca_file` verifies the server, `cert_file` and
    `key_file` authenticate the worker); `replicas` > 0 makes every batch wait for that
    many replicas to acknowledge its writes before its offsets are committed."""

    url: Secret = Secret("redis://localhost:6379/0")
    namespace: str = "ls"
    state_ttl_ms: int = 180 * DAY_MS
    anonymous_ttl_ms: int = 30 * DAY_MS
    cluster: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    replicas: int = 0
    replica_timeout_ms: int = 1000
    accept_state_loss: bool = False  # go on from the committed offsets anyway

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={redacted_url(self.url.value)!r}, "
            f"namespace={self.namespace!r}, state_ttl_ms={self.state_ttl_ms}, "
            f"anonymous_ttl_ms={self.anonymous_ttl_ms}, "
            f"cluster={self.cluster}, ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r}, replicas={self.replicas}, "
            f"replica_timeout_ms={self.replica_timeout_ms}, "
            f"accept_state_loss={self.accept_state_loss})"
        )


@dataclass(frozen=True, slots=True)
class SchemaRegistrySettings:
    """A Confluent Schema Registry; without a URL the wire format is plain Avro."""

    url: Secret | None = None  # may hold user:password
    user_info: Secret | None = None  # USER:PASSWORD for HTTP basic auth

    def __repr__(self) -> str:
        url = redacted_url(self.url.value) if self.url else None
        return f"SchemaRegistrySettings(url={url!r}, user_info={self.user_info!r})"

    @property
    def display_url(self) -> str:
        return redacted_url(self.url.value) if self.url else ""

    def client_config(self) -> dict[str, Any]:
        """Settings of confluent-kafka's `SchemaRegistryClient`."""
        if self.url is None:
            raise ConfigError("no schema registry URL")
        for url in self.url.value.split(","):
            if not url.strip().startswith(("http://", "https://", "mock://")):
                raise ConfigError(
                    f"--schema-registry-url {redacted_url(url.strip())!r}: expected "
                    "http://HOST:PORT or https://HOST:PORT (a comma list for several)"
                )
        config: dict[str, Any] = {"url": self.url.value, "timeout": 10}
        if self.user_info:
            if ":" not in self.user_info.value:
                raise ConfigError("--schema-registry-user-info: expected USER:PASSWORD")
            if "@" in urlsplit(self.url.value.split(",")[0].strip()).netloc:
                raise ConfigError(
                    "schema registry credentials given twice: in --schema-registry-url and "
                    "in --schema-registry-user-info; keep one"
                )
            config["basic.auth.user.info"] = self.user_info.value
        return config


@dataclass(frozen=True, slots=True)
class ModelSettings:
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    port: int = 9400
    host: str = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    batch_size: int = 2000
    batch_linger_ms: int = 0
    commit_interval_s: float = 1.0
    max_clock_skew_ms: int = 300_000
    event_memory: int = 100
    emit_anonymous: bool = False
    shutdown_timeout_s: float = 30.0
    sweep_interval_s: float = 1.0
    sweep_batch: int = 1000
    state_cache: int = 100_000
    clock_speed: float = 1.0
    clock_start_ms: int | None = None
    partition_idle_ms: int = 500
    startup_timeout_s: float = 30.0
    wait_for_services: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    model: ModelSettings = ModelSettings()
    metrics: MetricsSettings = MetricsSettings()
    worker: WorkerSettings = WorkerSettings()


def parse_input_topics(text: str) -> tuple[InputTopic, ...]:
    """`TOPIC=RecordType` entries, or topics named `*.clicks|visits|forms|calls`."""
    topics: list[InputTopic] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, record_type = entry.partition("=")
        name, record_type = name.strip(), record_type.strip()
        if not record_type:
            record_type = next(
                (rt for suffix, rt in TOPIC_SUFFIXES.items() if name.endswith(suffix)), ""
            )
            if not record_type:
                raise ConfigError(
                    f"input topic {name!r}: name the record type (TOPIC=RecordType, one of "
                    f"{', '.join(INPUT_TYPES)}) or use a name ending in "
                    f"{', '.join(TOPIC_SUFFIXES)}"
                )
        if record_type not in INPUT_TYPES:
            raise ConfigError(
                f"input topic {name!r}: unknown record type {record_type!r}; "
                f"one of {', '.join(INPUT_TYPES)}"
            )
        check_topic_name(name)
        if any(t.name == name for t in topics):
            raise ConfigError(f"input topic {name!r} is listed twice")
        topics.append(InputTopic(name, record_type))
    if not topics:
        raise ConfigError("no input topics given")
    return tuple(topics)


def check_topic_name(name: str) -> str:
    if not _TOPIC_NAME.match(name):
        raise ConfigError(
            f"{name!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-')"
        )
    return name


def parse_options(entries: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """librdkafka pass-through settings given as `KEY=VALUE`."""
    options = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"Kafka option {entry!r}: expected KEY=VALUE, e.g. linger.ms=5")
        options.append((key.strip(), value.strip()))
    return tuple(options)
