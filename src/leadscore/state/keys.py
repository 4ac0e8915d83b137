"""Every Redis key name, in one place.

Keys are hash-tagged by profile (`{<id>}`) so that all keys of one profile fall in one
Redis Cluster slot, and prefixed by a namespace so that a rebuild can write beside the
live state.
"""

from __future__ import annotations

from leadscore.events import ProfileKey


def profile_key(namespace: str, profile: ProfileKey) -> str:
    """The string holding a profile: its version, offset watermarks, schedule partition,
    pending outputs and state (`encoding.encode_profile`)."""
    return f"{namespace}:{profile.kind}:{{{profile.id}}}"


def schedule_key(namespace: str, topic: str, partition: int) -> str:
    """The sorted set of profiles due for a time-driven re-evaluation, scored by due time,
    one per input partition: its owner sweeps it, and it moves with the partition. Tagged
    by partition, so that each lies whole in one Redis Cluster slot."""
    return f"{namespace}:due:{{{topic}:{partition}}}"


def kept_key(namespace: str, topic: str, partition: int) -> str:
    """The hash of the outputs kept for a replay, one per input partition: one field per
    write call (a name unique to the worker and call), holding the encoded outputs with
    their cause offsets. A field lives from the state write until the batch is published
    (the next batch's write drops it)."""
    return f"{namespace}:kept:{{{topic}:{partition}}}"


def progress_key(namespace: str, topic: str, partition: int) -> str:
    """The string holding the highest offset (plus one) whose batch was written, one per
    input partition, never expiring: a committed offset above it means that Redis lost
    state the worker wrote (restarted empty, restored from an old snapshot)."""
    return f"{namespace}:progress:{{{topic}:{partition}}}"


def schedule_member(profile: ProfileKey) -> str:
    return f"{profile.kind}:{profile.id}"


def parse_schedule_member(member: str) -> ProfileKey:
    kind, _, profile_id = member.partition(":")
    return ProfileKey(kind, profile_id)


def wait_key(namespace: str, n: int) -> str:
    """Keys written just before a WAIT on a Redis Cluster node (the worker picks one per
    node, in a slot of that node): WAIT counts only its own connection's writes."""
    return f"{namespace}:wait:{{{n}}}"
