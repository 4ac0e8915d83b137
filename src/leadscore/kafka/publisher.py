"""Publishing a batch's records and committing its input offsets, by delivery guarantee.

- at-least-once: produce, wait for every acknowledgement, then commit the offsets. A crash
  in between publishes the batch again (the same ids); consumers deduplicate by id.
- exactly-once: produce and commit the offsets in one Kafka transaction. A
  `read_committed` consumer sees each record once: an aborted or unfinished transaction is
  invisible to it, and its records are published again in a later one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from leadscore.errors import KafkaUnavailable
from leadscore.kafka.consumer import InputConsumer, Partition
from leadscore.kafka.producer import Record, RecordProducer, TransactionalProducer

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, records: list[Record], next_offsets: dict[Partition, int]) -> None:
        """Publish `records`, then make `next_offsets` the group's committed offsets."""


class AtLeastOnce:
    def __init__(
        self, producer: RecordProducer, consumer: InputConsumer, waiting: Callable[[], None]
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.waiting = waiting

    def publish(self, records: list[Record], next_offsets: dict[Partition, int]) -> None:
        for record in records:
            self.producer.send(*record)
        while self.producer.flush(1.0):
            self.waiting()
        try:
            self.consumer.commit(next_offsets)
        except KafkaUnavailable as exc:
            # the next batch commits later offsets; a replay meanwhile is caught by the
            # watermarks and re-publishes the stored outputs
            log.warning("%s; the next batch's commit will cover it", exc)


class ExactlyOnce:
    def __init__(self, producer: TransactionalProducer, consumer: InputConsumer) -> None:
        self.producer = producer
        self.consumer = consumer

    def publish(self, records: list[Record], next_offsets: dict[Partition, int]) -> None:
        self.producer.begin()
        for record in records:
            self.producer.send(*record)
        self.producer.commit(next_offsets, self.consumer.group_metadata())
