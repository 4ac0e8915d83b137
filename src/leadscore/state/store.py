"""Profile state in Redis: one pipelined read and one pipelined conditional write per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import resources
from typing import Any

import redis

from leadscore.errors import StateUnavailable
from leadscore.scoring.events import ProfileKey
from leadscore.scoring.state import LeadState
from leadscore.state import keys
from leadscore.state.encoding import (
    StoredOutput,
    decode_outputs,
    decode_state,
    encode_outputs,
    encode_state,
)

Partition = tuple[str, int]

_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class ApplyStatus(IntEnum):
    """Status codes returned by `lua/apply.lua`."""

    APPLIED = 1
    CONFLICT = 2


@dataclass(frozen=True, slots=True)
class Stored:
    """A profile as read: its version (0 if new), state, and per input partition the
    highest offset applied (watermark) and the outputs of the last write it caused."""

    version: int = 0
    state: LeadState | None = None
    watermarks: dict[Partition, int] = field(default_factory=dict)
    outputs: dict[Partition, list[StoredOutput]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Write:
    """A new state for a profile, valid only if the profile is still at `expected_version`.

    `outputs` replaces, for each partition in `watermarks`, the outputs kept from the
    previous write (none: the field is removed).
    """

    profile: ProfileKey
    expected_version: int
    state: LeadState
    watermarks: dict[Partition, int]
    outputs: dict[Partition, list[StoredOutput]] = field(default_factory=dict)


def _script(name: str) -> str:
    return resources.files("leadscore.state.lua").joinpath(name).read_text("utf-8")


class StateStore:
    """Reads and conditionally writes profile state; Redis errors become our own."""

    def __init__(self, client: redis.Redis, *, namespace: str, ttl_ms: int) -> None:
        self._client = client
        self.namespace = namespace
        self._ttl_ms = ttl_ms
        # redis-py loads the script once and reloads it on NOSCRIPT, also in pipelines
        self._apply = client.register_script(_script("apply.lua"))

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except (*_UNAVAILABLE, redis.ResponseError):
            return False

    def load(self, profiles: Sequence[ProfileKey]) -> dict[ProfileKey, Stored]:
        """Read many profiles in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for profile in profiles:
            pipe.hgetall(keys.profile_key(self.namespace, profile))
        replies = self._execute(pipe)
        return {p: _stored(reply) for p, reply in zip(profiles, replies, strict=True)}

    def save(self, writes: Sequence[Write]) -> list[ProfileKey]:
        """Apply every write that is not in conflict; return the profiles that were."""
        pipe = self._client.pipeline(transaction=False)
        for write in writes:
            args: list[Any] = [write.expected_version, encode_state(write.state), self._ttl_ms]
            for (topic, partition), offset in write.watermarks.items():
                outputs = write.outputs.get((topic, partition), [])
                args += [
                    keys.watermark_field(topic, partition),
                    offset,
                    keys.outputs_field(topic, partition),
                    encode_outputs(outputs),
                ]
            self._apply(
                keys=[keys.profile_key(self.namespace, write.profile)], args=args, client=pipe
            )
        replies = self._execute(pipe)
        conflicts: list[ProfileKey] = []
        for write, (status, _version) in zip(writes, replies, strict=True):
            if ApplyStatus(status) is ApplyStatus.CONFLICT:
                conflicts.append(write.profile)
        return conflicts

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


def _stored(reply: dict[bytes, bytes]) -> Stored:
    if not reply:
        return Stored()
    watermarks: dict[Partition, int] = {}
    outputs: dict[Partition, list[StoredOutput]] = {}
    for name, value in reply.items():
        field_name = name.decode()
        if field_name.startswith(keys.WATERMARK_PREFIX):
            watermarks[keys.parse_partition_field(field_name)] = int(value)
        elif field_name.startswith(keys.OUTPUTS_PREFIX):
            outputs[keys.parse_partition_field(field_name)] = decode_outputs(value)
    raw = reply.get(keys.STATE_FIELD.encode())
    return Stored(
        version=int(reply.get(keys.VERSION_FIELD.encode(), b"0")),
        state=decode_state(raw) if raw else None,
        watermarks=watermarks,
        outputs=outputs,
    )
