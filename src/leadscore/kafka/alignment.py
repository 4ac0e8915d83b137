"""Event-time alignment of input partitions: which buffered record goes next.

A lead's events arrive on several partitions (one per input topic). While catching up a
backlog, the client fetches them by bytes, not by time: taken as fetched, one topic could
be read hours of event time ahead of another, whose events would then all be late for
their leads. As Kafka Streams does for a task's partitions (`max.task.idle.ms`), records
are taken in order of their timestamps across the partitions, and a partition that has
more records than were fetched but none buffered holds the others back at its own time,
for at most `idle_s` (then the others go on without it: a slow partition never stops
the worker). A partition with nothing more to read (caught up) holds nothing back, so
at a normal load nothing waits.

A partition's records are taken in their order (never reordered within it); a partition
is ordered among the others by its next record's own timestamp (one without a timestamp
takes its partition's time, the highest so far), so that one record dated far in the
future does not push every later record of its partition behind the others'.

Pure: the consumer adapter feeds it records and says which partitions have more to read.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterable
from typing import Generic, TypeVar

Partition = tuple[str, int]
T = TypeVar("T")
INFINITY = float("inf")


class Alignment(Generic[T]):
    """Records buffered per partition, taken in event-time order across partitions."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._buffers: dict[Partition, deque[tuple[int, T]]] = {}
        self._times: dict[Partition, int] = {}  # the highest timestamp added, per partition
        self._since: dict[Partition, float] = {}  # when a partition was first waited for

    def add(self, partition: Partition, timestamp: int | None, item: T) -> None:
        """Buffer a record (after the partition's earlier ones)."""
        known = self._times.get(partition, -1)
        time = timestamp if timestamp is not None and timestamp >= 0 else known
        self._times[partition] = max(known, time)
        self._buffers.setdefault(partition, deque()).append((time, item))
        self._since.pop(partition, None)

    def buffered(self, partition: Partition) -> list[T]:
        """The records of a partition not taken yet, in order."""
        return [item for _, item in self._buffers.get(partition, ())]

    def first(self, partition: Partition) -> T | None:
        """The next record of a partition to be taken, if any."""
        buffer = self._buffers.get(partition)
        return buffer[0][1] if buffer else None

    def count(self, partition: Partition) -> int:
        return len(self._buffers.get(partition, ()))

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def trim(self, partition: Partition, keep: int) -> list[T]:
        """Drop all but the first `keep` (at least one) records of a partition; returns
        those dropped, to be fetched again."""
        buffer = self._buffers.get(partition)
        if buffer is None or len(buffer) <= max(keep, 1):
            return []
        dropped = [buffer.pop()[1] for _ in range(len(buffer) - max(keep, 1))]
        dropped.reverse()
        self._times[partition] = max(time for time, _ in buffer)
        return dropped

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop everything about partitions that left (their new owner reads them again)."""
        for partition in partitions:
            self._buffers.pop(partition, None)
            self._times.pop(partition, None)
            self._since.pop(partition, None)

    def wait_s(self, more: Collection[Partition], now: float) -> float | None:
        """How long to wait for the partitions that hold back the earliest buffered record:
        None if it may be taken now (or nothing is buffered).

        `more`: the partitions with records not fetched yet (or not known not to have any).
        """
        heads = [b[0][0] for b in self._buffers.values() if b]
        if not heads:
            return None
        until = [
            self._since[p] + self.idle_s
            for p, time in self._waited_for(more, now).items()
            if time < min(heads)
        ]
        return max(min(until) - now, 0.0) if until else None

    def take(self, limit: int, more: Collection[Partition], now: float) -> list[T]:
        """Up to `limit` records in timestamp order across partitions, none later than the
        time of a partition that is waited for."""
        waited = self._waited_for(more, now)
        bound = min(waited.values(), default=INFINITY)
        heads = [(b[0][0], p) for p, b in self._buffers.items() if b]
        heapq.heapify(heads)
        taken: list[T] = []
        while heads and len(taken) < limit:
            time, partition = heapq.heappop(heads)
            if time > bound:
                break
            # its head, and the run of its records up to the next partition's head
            stop = min(heads[0][0] if heads else INFINITY, bound)
            buffer = self._buffers[partition]
            taken.append(buffer.popleft()[1])
            while buffer and len(taken) < limit and buffer[0][0] <= stop:
                taken.append(buffer.popleft()[1])
            if buffer:
                heapq.heappush(heads, (buffer[0][0], partition))
            elif partition in more and self._waits(partition, now):
                # it ran out: the others go on up to its time (its next record is no older)
                bound = min(bound, self._times[partition])
        return taken

    def _waited_for(self, more: Collection[Partition], now: float) -> dict[Partition, float]:
        """The partitions waited for now, with the time their next record is at least:
        those with more to read, none buffered, and waited for less than `idle_s`."""
        waited: dict[Partition, float] = {}
        for partition in more:
            if self._buffers.get(partition) or not self._waits(partition, now):
                continue
            waited[partition] = self._times.get(partition, -INFINITY)
        for partition in [p for p in self._since if p not in more]:
            del self._since[partition]  # caught up: waited for afresh when it falls behind
        return waited

    def _waits(self, partition: Partition, now: float) -> bool:
        """Start or continue waiting for an empty partition: False once `idle_s` ran out
        (until records of it come)."""
        since = self._since.setdefault(partition, now)
        return now - since < self.idle_s
