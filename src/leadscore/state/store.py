"""Profile state in Redis: one pipelined read and one script call that writes a batch.

A profile is one Redis string (`encoding.encode_profile`): its version, watermarks,
schedule partition, pending outputs and state. One string instead of a hash of fields: a
hash whose values are longer than 64 bytes is stored as a hash table, which cost 440 bytes
per profile more. The outputs a batch's events caused are kept apart, per input partition
(`keys.kept_key`), from the write until the batch is published."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

import redis

from leadscore.errors import StateRefused, StateUnavailable
from leadscore.events import ProfileKey
from leadscore.scoring.state import LeadState
from leadscore.state import keys
from leadscore.state.encoding import (
    StoredOutput,
    decode_outputs,
    decode_profile,
    encode_outputs,
    encode_profile,
)

Partition = tuple[str, int]

_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@dataclass(slots=True)
class Stored:
    """A profile as read: its version (0 if new), state, per input partition the highest
    offset applied (watermark), the partition whose schedule holds it, and the outputs of
    time-driven changes not yet acknowledged."""

    version: int = 0
    state: LeadState | None = None
    watermarks: dict[Partition, int] = field(default_factory=dict)
    schedule: Partition | None = None
    pending: list[StoredOutput] = field(default_factory=list)


class Due(NamedTuple):
    """A schedule entry: the profile is due for re-evaluation at `at` (epoch ms), in the
    schedule of `partition`; `at` None removes it from that schedule."""

    profile: ProfileKey
    partition: Partition
    at: int | None


@dataclass(slots=True)
class Write:
    """A new state for a profile, valid only if the profile is still as read (`base`, at
    its version).

    `outputs` are the outputs this write's events caused, by input partition, kept (in
    that partition's hash, by cause offset) until they are published. `pending` replaces
    the outputs of
    time-driven changes not yet acknowledged (None leaves them). `due` is the profile's
    schedule entry (None leaves it). `refresh_ttl` restarts the time to live (an event
    arrived); a time-driven change leaves it running.

    Neither a `Write` nor a `Stored` is changed once made (they are not frozen: a frozen
    dataclass costs several times as much to build, and one of each is made per write).
    """

    profile: ProfileKey
    base: Stored
    state: LeadState
    watermarks: dict[Partition, int]
    outputs: dict[Partition, list[StoredOutput]] = field(default_factory=dict)
    pending: list[StoredOutput] | None = None
    due: Due | None = None
    refresh_ttl: bool = True
    _after: Stored | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def expected_version(self) -> int:
        return self.base.version

    def after(self) -> Stored:
        """The profile as this write leaves it."""
        if self._after is None:
            before = self.base
            self._after = Stored(
                before.version + 1,
                self.state,
                {**before.watermarks, **self.watermarks},
                self.due.partition if self.due is not None else before.schedule,
                self.pending if self.pending is not None else before.pending,
            )
        return self._after


@dataclass(slots=True)
class Kept:
    """Outputs kept for a replay, as read: by (partition, cause offset), and the fields
    that hold them with the highest cause offset in each (a field can be dropped once every
    event up to it was published again)."""

    outputs: dict[tuple[Partition, int], list[StoredOutput]] = field(default_factory=dict)
    fields: dict[tuple[Partition, str], int] = field(default_factory=dict)


def _script(name: str) -> str:
    return resources.files("leadscore.state.lua").joinpath(name).read_text("utf-8")


class StateStore:
    """Reads and conditionally writes profile state; Redis errors become our own."""

    def __init__(self, client: redis.Redis, *, namespace: str, ttl_ms: int) -> None:
        self._client = client
        self.namespace = namespace
        self._ttl_ms = ttl_ms
        # kept outputs are dropped once published; a partition nobody consumes any more
        # loses them after this long
        self._kept_ttl_ms = 7 * 86_400_000
        # redis-py loads a script once and reloads it on NOSCRIPT, also in pipelines
        self._save = client.register_script(_script("save.lua"))

    def check(self) -> None:
        """Return once Redis answers a PING with the configured credentials; raise
        `StateRefused` if it refuses them (or the database), `StateUnavailable` if it
        cannot be reached."""
        try:
            self._client.ping()
        except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
            raise StateRefused(f"refused the credentials: {exc}") from exc
        except _UNAVAILABLE as exc:
            raise StateUnavailable(str(exc)) from exc
        except redis.ResponseError as exc:  # a database that does not exist, a NOPERM user
            raise StateRefused(str(exc)) from exc

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except (*_UNAVAILABLE, redis.ResponseError):
            return False

    def load(self, profiles: Sequence[ProfileKey]) -> dict[ProfileKey, Stored]:
        """Read many profiles in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for profile in profiles:
            pipe.get(keys.profile_key(self.namespace, profile))
        replies = self._execute(pipe)
        return {p: _stored(raw) for p, raw in zip(profiles, replies, strict=True)}

    def save(
        self,
        writes: Sequence[Write],
        schedule: Sequence[Due] = (),
        forget: Iterable[tuple[Partition, str]] = (),
        kept_field: str = "",
    ) -> list[ProfileKey]:
        """Apply every write that is not in conflict, with its schedule entry and its kept
        outputs (all of them under `kept_field` in each partition's hash: a name no other
        call uses), set the entries of `schedule`, and drop the kept outputs of `forget`
        (partition, field: published since), in one script call; return the profiles in
        conflict.

        A schedule entry is an index, not the truth: the sweep checks every entry against
        the profile's state, and a conflicting write is retried, which sets it again.
        """
        forget = list(forget)
        if not writes and not schedule and not forget:
            return []
        keys_: list[str] = [keys.profile_key(self.namespace, w.profile) for w in writes]
        others: dict[str, int] = {}

        def position(key: str) -> int:
            if key not in others:
                others[key] = len(writes) + len(others) + 1
            return others[key]

        def kept_position(partition: Partition) -> int:
            return position(keys.kept_key(self.namespace, *partition))

        if any(w.outputs for w in writes) and not kept_field:
            raise ValueError("outputs to keep need a kept_field")
        args: list[Any] = [len(writes), self._kept_ttl_ms, kept_field]
        for write in writes:
            after = write.after()
            assert after.state is not None
            due = write.due
            kept: list[Any] = []
            for partition, outputs in write.outputs.items():
                if outputs:
                    kept += [kept_position(partition), encode_outputs(outputs)]
            args += [
                write.expected_version,
                self._ttl_ms if write.refresh_ttl else 0,
                encode_profile(
                    after.version, after.state, after.watermarks, after.schedule, after.pending
                ),
                position(keys.schedule_key(self.namespace, *due.partition)) if due else 0,
                keys.schedule_member(write.profile),
                "" if due is None or due.at is None else due.at,
                len(kept) // 2,
                *kept,
            ]
        args.append(len(schedule))
        for entry in schedule:
            args += [
                position(keys.schedule_key(self.namespace, *entry.partition)),
                keys.schedule_member(entry.profile),
                "" if entry.at is None else entry.at,
            ]
        for partition, field_name in forget:
            args += [kept_position(partition), field_name]
        try:
            applied = self._save(keys=keys_ + list(others), args=args)
        except _UNAVAILABLE as exc:
            raise StateUnavailable(f"redis unavailable: {exc}") from exc
        except redis.ResponseError as exc:
            raise StateUnavailable(f"redis refused the request: {exc}") from exc
        return [w.profile for w, ok in zip(writes, applied, strict=True) if not ok]

    def kept(self, partitions: Iterable[Partition]) -> Kept:
        """The outputs kept for a replay on `partitions`: those not yet dropped (once
        published)."""
        partitions = list(partitions)
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.hgetall(keys.kept_key(self.namespace, *partition))
        kept = Kept()
        for partition, fields in zip(partitions, self._execute(pipe), strict=True):
            for name, value in fields.items():
                outputs = decode_outputs(value)
                for output in outputs:
                    kept.outputs.setdefault((partition, output.cause_offset), []).append(output)
                if outputs:
                    last = max(o.cause_offset for o in outputs)
                    kept.fields[(partition, name.decode())] = last
        return kept

    def due(self, partitions: Sequence[Partition], now: int, limit: int) -> list[Due]:
        """Up to `limit` profiles due at or before `now` in the schedules of `partitions`,
        earliest first."""
        pipe = self._client.pipeline(transaction=False)
        for topic, partition in partitions:
            key = keys.schedule_key(self.namespace, topic, partition)
            pipe.zrangebyscore(key, "-inf", now, start=0, num=limit, withscores=True)
        entries = [
            Due(keys.parse_schedule_member(member.decode()), partition, int(at))
            for partition, reply in zip(partitions, self._execute(pipe), strict=True)
            for member, at in reply
        ]
        return sorted(entries, key=lambda e: e.at or 0)[:limit]

    def settle(self, swept: Sequence[tuple[Stored, Due]]) -> None:
        """After the outputs of time-driven changes are acknowledged: forget them, for each
        profile still as it was written with them (a profile written since was taken over
        by that writer), and set its next schedule entry."""
        writes = [
            Write(
                entry.profile, profile, profile.state, {}, pending=[], due=entry, refresh_ttl=False
            )
            for profile, entry in swept
            if profile.pending and profile.state is not None
        ]
        self.save(writes, [entry for profile, entry in swept if not profile.pending])

    def schedule(self, entries: Sequence[Due]) -> None:
        """Set schedule entries as they are (`at` None removes one): for stale entries,
        whose profile expired or is scheduled in another partition."""
        pipe = self._client.pipeline(transaction=False)
        self._schedule(pipe, entries)
        self._execute(pipe)

    def _schedule(self, pipe: Any, entries: Sequence[Due]) -> None:
        for entry in entries:
            key = keys.schedule_key(self.namespace, *entry.partition)
            member = keys.schedule_member(entry.profile)
            if entry.at is None:
                pipe.zrem(key, member)
            else:
                pipe.zadd(key, {member: entry.at})

    def read(self, profile: ProfileKey) -> Stored:
        """One profile, for `inspect` and tests."""
        return self.load([profile])[profile]

    def _execute(self, pipe: Any) -> list[Any]:
        try:
            return list(pipe.execute())
        except _UNAVAILABLE as exc:
            raise StateUnavailable(f"redis unavailable: {exc}") from exc
        except redis.ResponseError as exc:
            raise StateUnavailable(f"redis refused the request: {exc}") from exc


def _stored(raw: bytes | None) -> Stored:
    if raw is None:
        return Stored()
    version, state, watermarks, schedule, pending = decode_profile(raw)
    return Stored(version, state, watermarks, schedule, pending)
