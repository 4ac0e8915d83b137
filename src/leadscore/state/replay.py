"""The outputs kept for a replay: one owner for what is kept, what a replay reads back,
and what is forgotten when.

A batch's events change the profiles' state once (the watermarks skip a replayed offset),
but their outputs must be published at least once: a crash after the state write and
before the outputs were acknowledged would lose them. So every write keeps the outputs
its events caused, until they are published:

- **Kept.** The outputs of a batch go, per input partition, into that partition's
  kept-output hash (`keys.kept_key`), under a field named by the batch's *write token*
  (`token()`: unique to this worker and write call, for as long as fields live). Each
  profile the call writes records the token beside its watermark of each partition its
  events came from (`Stored.tokens`), in the profile's own conditional write, after the
  kept outputs (`StateStore.save`). A profile's kept outputs of a partition are those
  under its token for that partition: outputs of a write that lost a conflict, or whose
  profile write never happened (a crash between the two), are under a token no profile
  holds.
- **Read back.** An event at or below its profile's watermark is a replay: its outputs
  are read back (`read_back`) from the field named by the profile's token for the
  event's partition, by cause offset, and published again with the same ids. A newer
  token for that partition comes from a later write of its events: made once the older
  ones were published (the partition's owner publishes in order), or by a replay batch
  that also holds fresh events there, whose write keeps the outputs it republishes
  under the new token as well (`ProfileUpdates.on_events`), so nothing is missed.
  Tokens are per partition because a lead's partitions may be owned by different
  workers: another partition's write must not hide this one's outputs.
- **Forgotten.** Once a batch is published, its fields are dropped by the next save
  (`published`, then `forget`), except on partitions revoked meanwhile, whose new owner
  replays them. Fields read back for a replay are dropped once every event up to their
  last was published again; fields a replay read but no profile names are dropped the
  same way. A partition nobody consumes any more loses its hash after the kept time to
  live (`StateStore`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping

from leadscore.events import Positioned, ProfileKey
from leadscore.state.encoding import StoredOutput
from leadscore.state.store import Partition, StateStore, Stored, kept_field

Field = tuple[Partition, str]  # a kept-output hash (by partition) and a field of it


class ReplayBook:
    """The kept-output fields this worker wrote, read back and has yet to forget."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        # 32 bits: a field lives from a write until its batch is published, so tokens
        # need to differ only among the few fields a partition's hash holds at a time
        self._next_token = random.getrandbits(32)
        self._written: list[Field] = []  # by the batch in hand
        self._read: dict[Field, int] = {}  # read back for a replay: the last cause offset
        self._forget: list[Field] = []  # published: the next save drops them

    def token(self) -> int:
        """The token of a new write call (never 0, which means none)."""
        self._next_token = self._next_token % 0xFFFF_FFFF + 1
        return self._next_token

    def read_back(
        self, replayed: Mapping[ProfileKey, tuple[Stored, list[Positioned]]]
    ) -> dict[tuple[Partition, int], list[StoredOutput]]:
        """The kept outputs of replayed events (profile as stored, its replayed events), by
        (partition, cause offset): those under each profile's token for the partition."""
        partitions = {item.partition for _, items in replayed.values() for item in items}
        if not partitions:
            return {}
        fields = self._store.kept(partitions)
        for read, outputs in fields.items():
            if outputs:
                self._read[read] = max(o.cause_offset for o in outputs)
        by_offset: dict[tuple[Partition, int], list[StoredOutput]] = defaultdict(list)
        for stored, items in replayed.values():
            wanted = {(item.partition, item.offset) for item in items}
            for partition in {item.partition for item in items}:
                name = kept_field(stored.tokens.get(partition, 0))
                for output in fields.get((partition, name), ()):
                    if (partition, output.cause_offset) in wanted:
                        by_offset[(partition, output.cause_offset)].append(output)
        return by_offset

    def forget(self) -> list[Field]:
        """What the next save drops: fields published since the last one."""
        return self._forget

    def writing(self, token: int, partitions: Iterable[Partition]) -> None:
        """The batch in hand is about to keep outputs of `partitions` under `token`: the
        fields are dropped once it is published, whether or not the profile writes that
        name them go through (a conflict, a failure between the steps)."""
        name = kept_field(token)
        self._written += [(partition, name) for partition in partitions]

    def saved(self) -> None:
        """A save of the batch in hand applied: it dropped what `forget` gave it."""
        self._forget = []

    def published(self, finished: set[Partition], positions: Mapping[Partition, int]) -> None:
        """The batch in hand is published on the partitions of `finished` (the others'
        new owner replays it); `positions` are the offsets done on each partition."""
        self._forget += [f for f in self._written if f[0] in finished]
        self._forget += [f for f, last in self._read.items() if last < positions.get(f[0], 0)]
        for name in self._forget:
            self._read.pop(name, None)
        self._written = []

    def abandoned(self) -> None:
        """The batch in hand will not be published here (its partitions moved): its new
        owner replays it and drops what it kept."""
        self._written = []

    def revoked(self, partitions: Iterable[Partition]) -> None:
        gone = set(partitions)
        for name in [f for f in self._read if f[0] in gone]:
            del self._read[name]  # the new owner replays them and drops them
