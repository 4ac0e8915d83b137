"""Profiles as last read or written by this worker, so a busy lead is not read back from
Redis for every batch.

The cache is only a shortcut for the read: every write stays conditional on the version
the cached copy has, so a copy made stale by another writer (a partition that moved, a
sweep on another worker) fails its write, is dropped, and the profile is read again.
It is emptied when partitions are revoked, and bounded: the least recently used profiles
go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from leadscore.events import ProfileKey
from leadscore.state.store import Stored


class StateCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._profiles: OrderedDict[ProfileKey, Stored] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._profiles)

    def lookup(
        self, profiles: Sequence[ProfileKey]
    ) -> tuple[dict[ProfileKey, Stored], list[ProfileKey]]:
        """The cached profiles, and those to read from Redis."""
        found, missing = {}, []
        cached = self._profiles
        for profile in profiles:
            stored = cached.get(profile)
            if stored is None:
                missing.append(profile)
            else:
                found[profile] = stored
                cached.move_to_end(profile)
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def put(self, profile: ProfileKey, stored: Stored) -> None:
        if not self.capacity:
            return
        self._profiles[profile] = stored
        self._profiles.move_to_end(profile)
        while len(self._profiles) > self.capacity:
            self._profiles.popitem(last=False)

    def evict(self, profiles: Iterable[ProfileKey]) -> None:
        for profile in profiles:
            self._profiles.pop(profile, None)

    def clear(self) -> None:
        self._profiles.clear()
