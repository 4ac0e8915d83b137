"""Profile state in Redis, standalone or Cluster: pipelined reads, and a batch's write in
calls that each touch one slot.

A profile is one Redis string (`encoding.encode_profile`): its version, watermarks and
write tokens, schedule partition, pending outputs and state. One string instead of a hash
of fields: a hash whose values are longer than 64 bytes is stored as a hash table, which
cost 440 bytes per profile more.

A batch is written in two steps (`save`), each made of calls that touch one slot:

1. per input partition (keys tagged by partition, `partition.lua`): the outputs the
   batch's events caused, kept under the batch's write token until they are published;
   the kept outputs published since, dropped; the progress marker; the schedule entries;
2. per profile (or per slot: `profiles.lua`): the state, its watermarks and, for the
   partitions of the batch's events, the write token, conditional on the version read.

Step 2 commits a profile's state, watermarks and the token that names its kept outputs
together; step 1 comes first, so a crash between them leaves only outputs that no
profile's token names (never read back) and schedule entries the sweep checks against the
profiles. Step 2 starts once step 1 is acknowledged (one round trip each: in one
pipeline, a failed step-1 call would not stop the step-2 calls behind it). With
`replicas` set, the write returns only once that many replicas acknowledged it (`WAIT`).

Redis errors become ours: an outage (`StateUnavailable`: unreachable, loading, failing
over, resharding, out of memory) is retried by the worker; anything else
(`StateRefused`: a missing ACL permission, a script error, a wrong key type) stops it.
A script Redis lost (restart, failover) is loaded again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

import redis
import redis.exceptions as rx
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from leadscore.durations import DAY_MS
from leadscore.errors import StateLost, StateRefused, StateUnavailable
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
Client = redis.Redis | RedisCluster

# replies that mean "not now": the worker holds the batch and retries
_OUTAGES = (
    rx.ConnectionError,  # also LOADING (BusyLoadingError)
    rx.TimeoutError,
    rx.TryAgainError,
    rx.ClusterDownError,  # also MASTERDOWN
    rx.ReadOnlyError,  # a primary that became a replica: the failover is under way
    rx.ClusterError,
)
_REFUSED_CREDENTIALS = (rx.AuthenticationError, rx.AuthorizationError)
# error replies redis-py has no class for that say "not now": fewer replicas than
# min-replicas-to-write, a failed snapshot (disk full), another client's long script
_RETRYABLE_REPLIES = ("NOREPLICAS", "MISCONF", "BUSY ")


@dataclass(slots=True)
class Stored:
    """A profile as read: its version (0 if new), state, per input partition the highest
    offset applied (watermark), the partition whose schedule holds it, the outputs of
    time-driven changes not yet acknowledged, and per input partition the token of the
    last write of its events there (the outputs they caused are kept under that token:
    `state/replay.py`)."""

    version: int = 0
    state: LeadState | None = None
    watermarks: dict[Partition, int] = field(default_factory=dict)
    schedule: Partition | None = None
    pending: list[StoredOutput] = field(default_factory=list)
    tokens: dict[Partition, int] = field(default_factory=dict)


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

    `outputs` are the outputs this write's events caused, by input partition, kept under
    the write's `token` until they are published; the token becomes the profile's for the
    partitions of `watermarks` (None: a time-driven write, which keeps none and leaves
    the tokens). `pending` replaces the outputs of time-driven changes not
    yet acknowledged (None leaves them). `due` is the profile's schedule entry (None
    leaves it). `refresh_ttl` restarts the time to live (an event arrived); a time-driven
    change leaves it running.

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
    token: int | None = None
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
                before.tokens
                if self.token is None
                else {**before.tokens, **dict.fromkeys(self.watermarks, self.token)},
            )
        return self._after


def kept_field(token: int) -> str:
    """The field of the kept-output hashes that holds the outputs of the writes with
    `token`."""
    return format(token, "x")


@dataclass(slots=True)
class _PartitionCall:
    """What one save writes about one input partition (`partition.lua`)."""

    kept: list[bytes] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    progress: int | None = None
    floor: int | None = None  # the marker must already be at least this
    schedule: dict[str, int | None] = field(default_factory=dict)


def _script(name: str) -> str:
    return resources.files("leadscore.state.lua").joinpath(name).read_text("utf-8")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class StateStore:
    """Reads and conditionally writes profile state; Redis errors become our own."""

    def __init__(
        self,
        client: Client | Callable[[], Client],
        *,
        namespace: str,
        ttl_ms: int,
        anonymous_ttl_ms: int | None = None,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
        on_round_trip: Callable[[], None] = lambda: None,
    ) -> None:
        self._made: Client | None = None if callable(client) else client
        self._make = client if callable(client) else None
        self.namespace = namespace
        self._ttl_ms = ttl_ms  # of a lead's profile, from its last event
        self._anonymous_ttl_ms = ttl_ms if anonymous_ttl_ms is None else anonymous_ttl_ms
        self._replicas = replicas
        self._replica_timeout_ms = replica_timeout_ms
        # kept outputs are dropped once published; a partition nobody consumes any more
        # loses them after this long
        self._kept_ttl_ms = 7 * DAY_MS
        self._bodies = {name: _script(f"{name}.lua") for name in ("profiles", "partition")}
        self._sha = {name: _sha1(body) for name, body in self._bodies.items()}
        self.healthy = False  # whether the last call reached Redis (for readiness)
        self._wait_keys: dict[str, str] = {}  # Cluster node -> a key in one of its slots
        self._on_round_trip = on_round_trip  # each pipeline sent (a metric counts them)

    @property
    def _client(self) -> Client:
        """The client, made on first use: a Cluster client asks the nodes for the slots as
        it is made, which fails while no node answers."""
        if self._made is None:
            assert self._make is not None
            try:
                self._made = self._make()
            except (RedisClusterException, rx.RedisError) as exc:
                # a Cluster client wraps what the nodes replied in its own exception
                refused = ("WRONGPASS", "NOAUTH", "invalid username-password", "NOPERM")
                if isinstance(exc, _REFUSED_CREDENTIALS) or any(r in str(exc) for r in refused):
                    raise StateRefused(f"refused the credentials: {exc}") from exc
                raise StateUnavailable(f"no node of the Redis Cluster answered: {exc}") from exc
        return self._made

    @property
    def _cluster(self) -> bool:
        return isinstance(self._client, RedisCluster)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()

    # ---- health ---------------------------------------------------------------------------

    def check(self) -> None:
        """Return once Redis answers a PING with the configured credentials; raise
        `StateRefused` if it refuses them (or the database), `StateUnavailable` if it
        cannot be reached."""
        try:
            self._client.ping()
        except _REFUSED_CREDENTIALS as exc:
            raise StateRefused(f"refused the credentials: {exc}") from exc
        except _OUTAGES as exc:
            raise StateUnavailable(str(exc)) from exc
        except rx.RedisError as exc:  # a database that does not exist, a NOPERM user
            raise StateRefused(str(exc)) from exc

    # ---- reads ----------------------------------------------------------------------------

    def load(self, profiles: Sequence[ProfileKey]) -> dict[ProfileKey, Stored]:
        """Read many profiles in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for profile in profiles:
            pipe.get(keys.profile_key(self.namespace, profile))
        replies = self._execute(pipe, "GET")
        return {p: _stored(raw) for p, raw in zip(profiles, replies, strict=True)}

    def read(self, profile: ProfileKey) -> Stored:
        """One profile, for `inspect` and tests."""
        return self.load([profile])[profile]

    def kept(
        self, partitions: Iterable[Partition]
    ) -> dict[tuple[Partition, str], list[StoredOutput]]:
        """The outputs kept for a replay on `partitions`, by (partition, field): those not
        yet dropped (once published)."""
        partitions = list(partitions)
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.hgetall(keys.kept_key(self.namespace, *partition))
        return {
            (partition, name.decode()): decode_outputs(value)
            for partition, fields in zip(partitions, self._execute(pipe, "HGETALL"), strict=True)
            for name, value in fields.items()
        }

    def progress(self, partitions: Sequence[Partition]) -> dict[Partition, int | None]:
        """The progress marker of each partition: one past the highest offset whose batch
        was written here (None: never written, or lost)."""
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.get(keys.progress_key(self.namespace, *partition))
        replies = self._execute(pipe, "GET")
        return {
            p: None if raw is None else int(raw) for p, raw in zip(partitions, replies, strict=True)
        }

    def due(self, partitions: Sequence[Partition], now: int, limit: int) -> list[Due]:
        """Up to `limit` profiles due at or before `now` in the schedules of `partitions`,
        earliest first."""
        pipe = self._client.pipeline(transaction=False)
        for topic, partition in partitions:
            key = keys.schedule_key(self.namespace, topic, partition)
            pipe.zrangebyscore(key, "-inf", now, start=0, num=limit, withscores=True)
        entries = [
            Due(keys.parse_schedule_member(member.decode()), partition, int(at))
            for partition, reply in zip(
                partitions, self._execute(pipe, "ZRANGEBYSCORE"), strict=True
            )
            for member, at in reply
        ]
        return sorted(entries, key=lambda e: e.at or 0)[:limit]

    # ---- writes ---------------------------------------------------------------------------

    def save(
        self,
        writes: Sequence[Write],
        schedule: Sequence[Due] = (),
        forget: Iterable[tuple[Partition, str]] = (),
        progress: dict[Partition, int] | None = None,
        floors: Mapping[Partition, int] | None = None,
    ) -> list[ProfileKey]:
        """Apply every write that is not in conflict; set the schedule entries of the
        writes and of `schedule`; keep the writes' outputs under their token; drop the
        kept outputs of `forget` (partition, field: published since); move the progress
        markers of `progress` (partition: the batch's next offset) up, first checking
        that each is at least its `floors` entry (what the caller knows was written there
        before: a marker below it means Redis lost data, `StateLost`). Returns the
        profiles in conflict.

        A schedule entry is an index, not the truth: the sweep checks every entry against
        the profile's state, and a conflicting write is retried, which sets it again.
        """
        calls: dict[Partition, _PartitionCall] = defaultdict(_PartitionCall)
        tokens = {w.token for w in writes if w.outputs}
        if len(tokens) > 1 or None in tokens:
            raise ValueError("the writes of one save keep their outputs under one token")
        token = tokens.pop() or 0 if tokens else 0
        for write in writes:
            for partition, outputs in write.outputs.items():
                if outputs:
                    calls[partition].kept.append(encode_outputs(outputs))
            if write.due is not None:
                calls[write.due.partition].schedule[keys.schedule_member(write.profile)] = (
                    write.due.at
                )
        for entry in schedule:
            calls[entry.partition].schedule[keys.schedule_member(entry.profile)] = entry.at
        for partition, name in forget:
            calls[partition].forget.append(name)
        for partition, offset in (progress or {}).items():
            calls[partition].progress = offset
            if floors and partition in floors:
                calls[partition].floor = floors[partition]
        if not writes and not calls:
            return []
        # step 2 only once step 1 is acknowledged: in one pipeline, a failed step-1 call
        # (out of memory, say) would not stop the step-2 calls behind it
        self._run([self._partition_call(p, c, token) for p, c in calls.items()], wait=False)
        wait = self._replicas > 0
        profile_calls, order = self._profile_calls(writes)
        applied = self._run(profile_calls, wait=wait and not self._cluster)
        if wait and self._cluster:
            self._wait_on_every_primary()
        # the replies come per call (per slot), not in the order of `writes`
        done = [ok for reply in applied for ok in reply]
        return [writes[i].profile for i, ok in zip(order, done, strict=True) if not ok]

    def _partition_call(
        self, partition: Partition, call: _PartitionCall, token: int
    ) -> tuple[Any, ...]:
        ns = self.namespace
        args: list[Any] = [
            self._kept_ttl_ms,
            kept_field(token),
            b"".join(call.kept),
            "" if call.progress is None else call.progress,
            "" if call.floor is None else call.floor,
            len(call.forget),
            *call.forget,
        ]
        for member, at in call.schedule.items():
            args += [member, "" if at is None else at]
        return (
            "partition",
            [
                keys.kept_key(ns, *partition),
                keys.schedule_key(ns, *partition),
                keys.progress_key(ns, *partition),
            ],
            args,
        )

    def _profile_calls(
        self, writes: Sequence[Write]
    ) -> tuple[list[tuple[str, list[str], list[Any]]], list[int]]:
        """One call per slot on a Cluster, one for all on a standalone Redis, and the
        index in `writes` of each write, in the order the calls' replies list them."""
        groups: dict[int, list[tuple[int, str, list[Any]]]] = defaultdict(list)
        for index, write in enumerate(writes):
            key = keys.profile_key(self.namespace, write.profile)
            after = write.after()
            assert after.state is not None
            value = encode_profile(
                after.version,
                after.state,
                after.watermarks,
                after.schedule,
                after.pending,
                after.tokens,
            )
            ttl = 0  # left running
            if write.refresh_ttl:
                ttl = self._ttl_ms if write.profile.is_lead else self._anonymous_ttl_ms
            groups[key_slot(key.encode()) if self._cluster else 0].append(
                (index, key, [write.expected_version, ttl, value])
            )
        calls = [
            ("profiles", [key for _, key, _ in group], [x for _, _, args in group for x in args])
            for group in groups.values()
        ]
        return calls, [index for group in groups.values() for index, _, _ in group]

    def _run(self, calls: list[tuple[str, list[str], list[Any]]], wait: bool) -> list[Any]:
        """Run script calls in one pipeline; with `wait`, then WAIT for the replicas on the
        same connection (standalone Redis). A script Redis lost is loaded again and the
        calls that failed for it run again, in order."""
        if not calls and not wait:
            return []
        pipe = self._client.pipeline(transaction=False)
        cluster: Any = self._client if self._cluster else None
        for name, keys_, args in calls:
            command = ("EVALSHA", self._sha[name], len(keys_), *keys_, *args)
            if cluster is None:
                pipe.execute_command(*command)
            else:  # routed by the local slot table (a MOVED reply re-routes it by key):
                # by key, redis-py would ask a node for the keys of every call first
                node = cluster.get_node_from_key(keys_[0])
                pipe.execute_command(*command, target_nodes=node)
        if wait:  # WAIT counts this connection's writes: one just before it covers all
            pipe.set(keys.wait_key(self.namespace, 0), 1)
            pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms)
        replies = self._execute(pipe, "EVALSHA", allow=rx.NoScriptError)
        acknowledged = replies[-1] if wait else None
        replies = replies[: len(calls)]
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, rx.NoScriptError)]
        if lost:  # run again, and WAIT again: this WAIT came before their writes
            self._load_scripts()
            again = self._run([calls[i] for i in lost], wait=wait)
            for i, reply in zip(lost, again, strict=True):
                replies[i] = reply
        elif wait:
            self._acknowledged(acknowledged)
        return replies

    def _load_scripts(self) -> None:
        try:
            for body in self._bodies.values():
                if self._cluster:  # replicas too: a promoted one has them already
                    cluster: Any = self._client
                    cluster.execute_command(
                        "SCRIPT LOAD", body, target_nodes=RedisCluster.ALL_NODES
                    )
                else:
                    self._client.script_load(body)
        except rx.RedisError as exc:
            raise _translated(exc, "SCRIPT LOAD") from exc

    def _acknowledged(self, replicas: Any) -> None:
        if int(replicas) < self._replicas:
            self.healthy = False
            raise StateUnavailable(
                f"only {replicas} of {self._replicas} Redis replicas acknowledged the batch "
                f"within {self._replica_timeout_ms} ms (--redis-replicas)"
            )

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

    def _wait_on_every_primary(self) -> None:
        """WAIT on each primary of the Cluster. WAIT counts the writes of the connection
        it runs on, so each goes after a write on the same connection: a key of
        `keys.wait_key` in a slot of that node, whose replication covers every write
        the node took before it."""
        cluster: Any = self._client  # redis-py's Cluster methods are not annotated
        for node in cluster.get_primaries():
            key = self._wait_keys.get(node.name)
            if key is None or cluster.get_node_from_key(key).name != node.name:
                key = self._wait_keys[node.name] = self._wait_key(cluster, node.name)
            pipe: Any = cluster.get_redis_connection(node).pipeline(transaction=False)
            pipe.set(key, 1)
            pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms)
            replies = self._execute(pipe, "WAIT", allow=rx.AskError)
            if isinstance(replies[0], rx.AskError):  # MOVED or ASK: the slots moved
                cluster.nodes_manager.initialize()
                self._wait_keys.clear()
                self.healthy = False
                raise StateUnavailable(f"redis unavailable (WAIT): slots moving ({replies[0]})")
            self._acknowledged(replies[1])

    def _wait_key(self, cluster: Any, node: str) -> str:
        for n in range(100_000):  # a few tries per node: the slots are spread evenly
            key = keys.wait_key(self.namespace, n)
            if cluster.get_node_from_key(key).name == node:
                return key
        raise StateUnavailable(f"no slot of Redis Cluster node {node} found")

    def _execute(self, pipe: Any, command: str, allow: type[Exception] | None = None) -> list[Any]:
        """Execute a pipeline; an error reply raises ours (but `allow`'s are returned)."""
        self._on_round_trip()
        try:
            replies = list(pipe.execute(raise_on_error=False))
            for reply in replies:
                if isinstance(reply, Exception) and not (allow and isinstance(reply, allow)):
                    raise reply
        except (rx.RedisError, RedisClusterException) as exc:
            error = _translated(exc, command)
            self.healthy = not isinstance(error, StateUnavailable)
            raise error from exc
        self.healthy = True
        return replies


def _translated(exc: Exception, command: str) -> Exception:
    """Our error for a Redis error: an outage is retried, anything else stops the worker
    (retrying a refused permission or a script error would only repeat it)."""
    if isinstance(exc, _REFUSED_CREDENTIALS):
        return StateRefused(f"Redis refused the credentials ({command}): {exc}")
    if isinstance(exc, rx.ClusterError) and "TTL exhausted" in str(exc):
        return StateUnavailable(
            f"redis unavailable ({command}): the Redis Cluster kept redirecting the call or "
            f"asking to try again (a slot migrating): {exc}"
        )
    if isinstance(exc, (*_OUTAGES, RedisClusterException)):  # slots moving, not covered
        return StateUnavailable(f"redis unavailable ({command}): {exc}")
    if isinstance(exc, rx.OutOfMemoryError):  # keys expire, an operator adds memory
        return StateUnavailable(f"redis is out of memory ({command}): {exc}")
    if str(exc).startswith("STATELOST"):
        return StateLost(
            f"Redis lost state the worker wrote: {str(exc).removeprefix('STATELOST ')}. It "
            "restarted empty or from an older snapshot, or failed over to a replica that "
            "was behind (see --redis-replicas); going on would score those leads from an "
            "older state. To rebuild, see README, Operations."
        )
    if isinstance(exc, rx.ResponseError) and str(exc).startswith(_RETRYABLE_REPLIES):
        return StateUnavailable(f"redis unavailable ({command}): {exc}")
    if isinstance(exc, rx.MovedError):
        return StateRefused(
            f"Redis answered {command} with a redirection ({exc}): it is a Redis Cluster; "
            "set --redis-cluster"
        )
    return StateRefused(f"Redis refused {command}: {exc}")


def _stored(raw: bytes | None) -> Stored:
    if raw is None:
        return Stored()
    return Stored(*decode_profile(raw))
