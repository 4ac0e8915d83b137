"""Every Redis key name, in one place.

Keys are hash-tagged by profile (`{<id>}`) so that all keys of one profile fall in one
Redis Cluster slot, and prefixed by a namespace so that a rebuild can write beside the
live state.
"""

from __future__ import annotations

from leadscore.scoring.events import ProfileKey

VERSION_FIELD = "v"
STATE_FIELD = "s"
WATERMARK_PREFIX = "w:"
OUTPUTS_PREFIX = "o:"


def profile_key(namespace: str, profile: ProfileKey) -> str:
    """The hash holding a profile's state, version and offset watermarks."""
    return f"{namespace}:{profile.kind}:{{{profile.id}}}"


def watermark_field(topic: str, partition: int) -> str:
    """The hash field holding the highest offset of `topic[partition]` applied to a profile."""
    return f"{WATERMARK_PREFIX}{topic}:{partition}"


def outputs_field(topic: str, partition: int) -> str:
    """The hash field holding the outputs of the last write caused by `topic[partition]`."""
    return f"{OUTPUTS_PREFIX}{topic}:{partition}"


def parse_partition_field(field: str) -> tuple[str, int]:
    """(topic, partition) of a watermark or outputs field."""
    topic, _, partition = field[2:].rpartition(":")
    return topic, int(partition)
