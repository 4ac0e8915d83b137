"""Time-driven changes: the profiles whose inactivity or decay came due are re-evaluated,
written and published, with no input event to cause them.

Each owned input partition has a schedule (a sorted set in Redis, `keys.schedule_key`) of
the profiles it scores, by the time of their next time-driven change. About every second
the worker sweeps the due entries of its partitions:

    load     the due profiles (an entry is an index: the profile's state is the truth)
    advance  pure: the state moved to the sweep's time -> new state + outputs, kept with
             the profile (`pending`) in its conditional write
    publish  the outputs (ids derived from the profile and the due time)
    settle   forget the pending outputs, set the next entry

A crash before the settle sweeps the profile again, which republishes the pending outputs
(same ids) and changes the state no further. No consumer call is made between the write
and the settle, so no partition leaves in between.

The sweep's clock is the wall clock, held back to the newest event time processed on a
partition that is still behind (its unread events may prevent a change), and a profile
with an event about to be replayed waits for that replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from leadscore.errors import DeliveryFailed, KafkaUnavailable, PartitionsLost, StateUnavailable
from leadscore.events import ProfileKey
from leadscore.kafka.consumer import InputConsumer, Partition
from leadscore.kafka.publisher import Publisher
from leadscore.metrics import Metrics
from leadscore.profiles import ProfileUpdates, Publication
from leadscore.state.cache import StateCache
from leadscore.state.store import Due, StateStore, Stored

log = logging.getLogger(__name__)


class Sweeper:
    """Sweeps the schedules of the owned partitions.

    `positions` (the next offset to process per owned partition, as committed) and
    `event_times` (the newest event time processed per partition) are the worker's,
    shared: the sweep reads them, and fills in `positions` of partitions not yet
    processed from the committed offsets."""

    def __init__(
        self,
        store: StateStore,
        consumer: InputConsumer,
        publisher: Publisher,
        updates: ProfileUpdates,
        cache: StateCache,
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        batch: int,
        positions: dict[Partition, int],
        event_times: Mapping[Partition, int],
        count_published: Callable[[list[Publication]], None],
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.publisher = publisher
        self.updates = updates
        self.cache = cache
        self.metrics = metrics
        self.clock = clock
        self.batch = batch
        self.positions = positions
        self.event_times = event_times
        self.count_published = count_published

    def sweep(self) -> bool:
        """Apply the time-driven changes that came due in the schedules of the owned
        partitions; True if more are due than one sweep takes. An outage skips the sweep
        (the next one catches up)."""
        owned = sorted(self.consumer.assignment)
        if not owned:
            return False
        missing = [p for p in owned if p not in self.positions]
        try:
            if missing:
                self.positions.update(self.consumer.committed(missing))
            now = self.horizon(owned, int(self.clock() * 1000))
            if now is None:
                return False
            with self.metrics.redis_call("sweep"):
                entries = self.store.due(owned, now, self.batch)
                overdue = now - (entries[0].at or now) if entries else 0
                self.metrics.sweep_overdue.set(overdue / 1000)
                swept = self._sweep(entries, now) if entries else 0
        except (StateUnavailable, KafkaUnavailable) as exc:
            log.warning("sweep skipped: %s", exc)
            return False
        except (DeliveryFailed, PartitionsLost) as exc:
            log.warning("sweep not published (%s); the next sweep publishes it again", exc)
            return False
        return len(entries) == self.batch and swept > 0

    def horizon(self, owned: list[Partition], now: int) -> int | None:
        """How far a sweep may move the leads' clocks: to now, but not past the newest
        event time processed on a partition that is still behind, whose unread events
        may prevent a change (None: not known yet)."""
        horizon = now
        for partition in owned:
            end = self.consumer.end_offset(partition)
            if end is None:
                return None
            # the consumer's position: past a commit marker of transactional producers,
            # which ends their partitions and is never consumed (sweeps run between
            # batches: every message it handed out is processed)
            done = max(self.positions[partition], self.consumer.position(partition) or 0)
            if done >= end:
                continue
            seen = self.event_times.get(partition)
            if seen is None:
                return None
            horizon = min(horizon, seen - 1)  # an unread event may carry that very time
        return horizon

    def _sweep(self, entries: list[Due], now: int) -> int:
        """Sweep due entries; returns how many were handled (not left for a replay)."""
        self.cache.evict(e.profile for e in entries)  # read, written and settled here
        stored = self.store.load([e.profile for e in entries])
        writes, settled, stale = [], [], []
        left = 0
        publications: dict[ProfileKey, list[Publication]] = {}
        for entry in entries:
            profile, found = entry.profile, stored[entry.profile]
            if found.state is None or found.schedule != entry.partition:
                # expired, erased, or scheduled in another partition
                stale.append(entry._replace(at=None))
                if (right := self.updates.rescheduled(profile, found)) is not None:
                    stale.append(right)
                continue
            if not self.replayed_all(found):
                left += 1  # an event of it is about to be replayed: that replay goes first
                continue
            swept = self.updates.on_time(entry, found, now)
            if swept.write is not None:
                writes.append(swept.write)
            publications[profile] = swept.publications
            settled.append((swept.after, swept.due))
        conflicts = set(self.store.save(writes, stale)) if writes or stale else set()
        self.metrics.state_conflicts.inc(len(conflicts))
        # a profile in conflict was written meanwhile (by an event): that write took over
        # its pending outputs and rescheduled it
        published = [
            p for profile, ps in publications.items() if profile not in conflicts for p in ps
        ]
        if published:  # no consumer call meanwhile: no partition leaves before the settle
            self.publisher.publish_untied([p.record for p in published])
        self.count_published(published)
        self.metrics.time_driven_changes.inc(len(writes) - len(conflicts))
        self.store.settle([s for s in settled if s[1].profile not in conflicts])
        return len(entries) - left

    def replayed_all(self, stored: Stored) -> bool:
        """No owned partition will replay an event applied to the profile (it would
        republish that event's outputs after the newer outputs of a sweep): every
        watermark on an owned partition is below the offsets done there."""
        owned = self.consumer.assignment
        return all(
            offset < self.positions.get(partition, 0)
            for partition, offset in stored.watermarks.items()
            if partition in owned
        )
