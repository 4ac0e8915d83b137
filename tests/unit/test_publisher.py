"""At-least-once publishing commits input offsets at most every commit interval, only
those of batches published, and only for partitions still owned.

The logic alone, with stand-ins for the consumer and producer (their real interplay with
a broker is tested in tests/integration: test_worker, test_scale_out, test_outage)."""

from __future__ import annotations

import time

from leadscore.errors import KafkaUnavailable
from leadscore.kafka.publisher import AtLeastOnce

P, Q = ("leads.visits", 0), ("leads.visits", 1)


class Consumer:
    def __init__(self, assigned: set[tuple[str, int]]) -> None:
        self.assigned = set(assigned)
        self.commits: list[dict[tuple[str, int], int]] = []
        self.refuse = 0  # commits to refuse, as when no coordinator answers

    @property
    def assignment(self) -> set[tuple[str, int]]:
        return set(self.assigned)

    def commit(self, next_offsets: dict[tuple[str, int], int], *, wait: bool = True) -> None:
        if self.refuse:
            self.refuse -= 1
            raise KafkaUnavailable("offset commit failed: no coordinator")
        if next_offsets:
            self.commits.append(dict(next_offsets))


class Producer:
    def send(self, *record: object) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0  # every record acknowledged


def publisher(consumer: Consumer, interval_s: float) -> AtLeastOnce:
    return AtLeastOnce(Producer(), consumer, lambda: None, 5.0, commit_interval_s=interval_s)  # type: ignore[arg-type]


def test_batches_published_within_the_interval_are_committed_together() -> None:
    consumer = Consumer({P, Q})
    pub = publisher(consumer, 0.2)
    pub.publish([], {P: 10, Q: 5})  # the first at once
    pub.publish([], {P: 20})
    pub.publish([], {Q: 8})
    pub.commit_due()  # the interval has not run out
    assert consumer.commits == [{P: 10, Q: 5}]
    time.sleep(0.25)
    pub.commit_due()  # as the worker's loop does, also while idle
    assert consumer.commits == [{P: 10, Q: 5}, {P: 20, Q: 8}]
    pub.commit_due()
    assert len(consumer.commits) == 2  # nothing new to commit


def test_stopping_and_revoking_commit_what_the_interval_held_back() -> None:
    consumer = Consumer({P, Q})
    pub = publisher(consumer, 3600)
    pub.publish([], {P: 10, Q: 5})
    pub.publish([], {P: 20, Q: 8})
    consumer.assigned.discard(P)
    pub.revoked([P], {P: 20})  # the worker passes the offsets done on the leaving partitions
    assert consumer.commits[-1] == {P: 20}
    pub.finish({Q: 8})
    assert consumer.commits[-1] == {Q: 8}


def test_a_partition_revoked_during_an_outage_and_given_back_gets_no_offset_of_that_batch() -> None:
    """A batch held by an outage publishes no record of a partition revoked meanwhile (its
    new owner replays them): its offset must not be committed either, even if the
    partition comes back before the next commit."""
    consumer = Consumer({P, Q})
    pub = publisher(consumer, 0.1)
    pub.publish([], {P: 100, Q: 10})
    consumer.assigned.discard(P)
    pub.revoked([P], {P: 100})
    pub.publish([], {P: 200, Q: 20})  # the held batch: P's records left out by the worker
    consumer.assigned.add(P)  # given back before the interval ran out
    time.sleep(0.15)
    pub.commit_due()
    assert all(commit.get(P, 0) <= 100 for commit in consumer.commits), consumer.commits
    assert consumer.commits[-1] == {Q: 20}


def test_a_commit_that_cannot_be_sent_is_tried_again() -> None:
    consumer = Consumer({P})
    pub = publisher(consumer, 0.0)
    consumer.refuse = 1
    pub.publish([], {P: 10})
    assert consumer.commits == []
    pub.commit_due()
    assert consumer.commits == [{P: 10}]
