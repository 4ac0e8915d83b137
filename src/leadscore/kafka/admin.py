"""The cluster's topics: the start-up check, and topic creation for the demo, the simulator
and tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from leadscore.errors import KafkaRefused, KafkaUnavailable
from leadscore.kafka.client_log import client_config, client_error

# errors that the same request with the same settings meets again
_REFUSED = {
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
}


class Cluster:
    """Asks the cluster for its topics, with the worker's settings and credentials."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._errors: list[KafkaError] = []
        settings: dict[str, Any] = {**client_config(), **config, "error_cb": self._on_error}
        self._admin = AdminClient(settings)

    def topics(self, timeout_s: float) -> set[str]:
        """The names of the cluster's topics.

        Raises `KafkaUnavailable` when no broker answered within `timeout_s`, and
        `KafkaRefused` when one refused the credentials; either says what the client
        last reported (a refused connection, a failed TLS handshake, ...)."""
        try:
            metadata = self._admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            self._admin.poll(0)  # serve the error callback: it says more than the request
            # the most telling: "Connection refused" rather than "1/1 brokers are down"
            told = [e for e in self._errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
            error = (told or self._errors or [exc.args[0]])[-1]
            self._errors.clear()
            if error.code() in _REFUSED:
                raise KafkaRefused(error.str()) from exc
            raise KafkaUnavailable(error.str()) from exc
        self._admin.poll(0)
        self._errors.clear()
        return set(metadata.topics)

    def _on_error(self, error: KafkaError) -> None:
        self._errors.append(error)
        client_error("admin", error)


def ensure_topics(
    config: dict[str, Any], topics: Iterable[str], *, partitions: int = 1, timeout_s: float = 30
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient({"log.connection.close": False, **config})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics],
        request_timeout=timeout_s,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaUnavailable(f"cannot create topic {topic}: {exc}") from exc


def wait_for_broker(config: dict[str, Any], timeout_s: float) -> None:
    """Return once the broker answers a metadata request; raise after `timeout_s`."""
    admin = AdminClient({"log.connection.close": False, **config})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"broker did not answer within {timeout_s:.0f} s: {exc}") from exc


def committed_offsets(
    config: dict[str, Any], group_id: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The offsets a consumer group has committed (negative: nothing committed yet)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"log.connection.close": False, **config, "group.id": group_id, "enable.auto.commit": False}
    )
    try:
        result = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read committed offsets of {group_id}: {exc}") from exc
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in result}
