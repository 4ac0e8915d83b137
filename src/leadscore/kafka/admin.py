"""Topic creation for the demo, the simulator and tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from leadscore.errors import KafkaUnavailable


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
