"""What a profile's new events, or the passing of time, make the worker write and publish.

Given a profile as stored and the events of a batch (or the time of a sweep), these steps
compute the conditional write (state, watermarks, kept outputs, schedule entry) and the
output records; Redis and Kafka calls stay in the worker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import NamedTuple

from leadscore.codec import OutputEncoder
from leadscore.events import Positioned, ProfileKey
from leadscore.kafka.consumer import Partition
from leadscore.kafka.producer import Record
from leadscore.metrics import Metrics
from leadscore.model import Model
from leadscore.scoring.outputs import Output
from leadscore.scoring.score import advance, score
from leadscore.scoring.timeline import next_change
from leadscore.settings import WorkerSettings
from leadscore.state.encoding import StoredOutput
from leadscore.state.store import Due, Stored, Write


class Publication(NamedTuple):
    """An encoded output; `partition` is the input partition whose replay would publish
    it again (None: a sweep's), `occurred_at` None for one published again after a replay."""

    record: Record
    kind: str
    partition: Partition | None
    occurred_at: int | None = None


class Swept(NamedTuple):
    """A due profile after a sweep: its write (None: nothing changed), the outputs to
    publish (those of earlier sweeps not yet acknowledged first), the profile as it is
    once written, and its next schedule entry."""

    write: Write | None
    publications: list[Publication]
    after: Stored
    due: Due


class ProfileUpdates:
    """Builds each profile's write and publications; counts what it skips."""

    def __init__(
        self,
        model: Model,
        settings: WorkerSettings,
        encode: OutputEncoder,
        metrics: Metrics,
        *,
        output_topic: str,
        input_topics: frozenset[str],
    ) -> None:
        self.model = model
        self.settings = settings
        self.encode = encode
        self.metrics = metrics
        self.output_topic = output_topic
        self.input_topics = input_topics

    def on_events(
        self,
        profile: ProfileKey,
        stored: Stored,
        items: list[Positioned],
        kept_outputs: Mapping[tuple[Partition, int], list[StoredOutput]],
        token: int,
    ) -> tuple[Write | None, list[Publication]]:
        """Fold the events not yet applied to this profile (above its watermarks), and
        publish again the kept outputs of those already applied (a replay: `kept_outputs`
        holds those not yet published, by partition and offset). The write keeps its
        outputs under `token` (`state/replay.py`).

        The events are folded into `stored.state` itself: the caller must drop `stored`
        (its cached copy) unless the write is applied."""
        fresh: list[Positioned] = []
        replayed: list[Positioned] = []
        for item in items:
            applied = item.offset <= stored.watermarks.get(item.partition, -1)
            (replayed if applied else fresh).append(item)
        publications = self.republish(profile, replayed, kept_outputs)
        if not fresh:
            return None, publications
        result = score(
            profile,
            stored.state,
            (i.event for i in fresh),
            self.model,
            memory=self.settings.event_memory,
            in_place=True,  # `stored` is the caller's, dropped unless the write succeeds
        )
        if result.duplicates:
            self.metrics.events_skipped.labels("event_id").inc(result.duplicates)
        if result.late:
            self.metrics.events_late.inc(result.late)
        if result.speed_to_lead_ms is not None and profile.is_lead:
            self.metrics.speed_to_lead.observe(result.speed_to_lead_ms / 1000)
        causes: dict[str, Positioned] = {}
        watermarks: dict[Partition, int] = {}
        for item in fresh:
            causes.setdefault(item.event.event_id, item)
            watermarks[item.partition] = max(item.offset, watermarks.get(item.partition, -1))
        # outputs of time-driven changes not yet acknowledged go first, kept with the
        # first fresh event so that its replay publishes them again
        first = fresh[0]
        kept: dict[Partition, list[StoredOutput]] = defaultdict(list)
        for pending in stored.pending:
            kept[first.partition].append(pending._replace(cause_offset=first.offset))
            publications.append(
                self.publication(profile, pending.kind, pending.value, first.partition)
            )
        if profile.is_lead or self.settings.emit_anonymous:
            for output, by in zip(result.outputs, result.emitted_by, strict=True):
                cause = causes[by]
                stored_output = self.encode_output(output, cause.offset)
                kept[cause.partition].append(stored_output)
                publications.append(
                    self.publication(
                        profile,
                        output.kind,
                        stored_output.value,
                        cause.partition,
                        output.occurred_at,
                    )
                )
        # the write moves the token of the partitions of its fresh events: the outputs of
        # replayed events there, republished in this batch, go under the new token too
        # (a crash before this batch is acknowledged must find them again)
        for item in replayed:
            if item.partition in watermarks:
                kept[item.partition].extend(kept_outputs.get((item.partition, item.offset), ()))
        partition = stored.schedule
        if partition is None or partition[0] not in self.input_topics:
            partition = first.partition
        due = next_change(result.state, self.model.for_profile(profile))
        return Write(
            profile,
            stored,
            result.state,
            watermarks,
            kept,
            pending=[] if stored.pending else None,
            due=Due(profile, partition, due.at if due else None),
            token=token,
        ), publications

    def rescheduled(self, profile: ProfileKey, stored: Stored) -> Due | None:
        """The schedule entry of a stored profile, computed from its state."""
        if stored.state is None or stored.schedule is None:
            return None
        due = next_change(stored.state, self.model.for_profile(profile))
        return Due(profile, stored.schedule, due.at if due else None)

    def encode_output(self, output: Output, cause_offset: int) -> StoredOutput:
        _key, value, _headers = self.encode(output)
        return StoredOutput(cause_offset, output.kind, value)

    def publication(
        self,
        profile: ProfileKey,
        kind: str,
        value: bytes,
        partition: Partition | None,
        occurred_at: int | None = None,
    ) -> Publication:
        """An output record, keyed by the profile; `occurred_at` for the latency metric."""
        topic = self.output_topic
        headers = [("leadscore-type", kind.encode())]
        record = Record(topic, profile.id.encode(), value, headers)
        return Publication(record, kind, partition, occurred_at)

    def republish(
        self,
        profile: ProfileKey,
        replayed: list[Positioned],
        kept_outputs: Mapping[tuple[Partition, int], list[StoredOutput]],
    ) -> list[Publication]:
        """The kept outputs caused by replayed messages, exactly as first published."""
        if not replayed:
            return []
        self.metrics.events_skipped.labels("watermark").inc(len(replayed))
        return [
            self.publication(profile, kept.kind, kept.value, item.partition)
            for item in replayed
            for kept in kept_outputs.get((item.partition, item.offset), [])
        ]

    def on_time(self, entry: Due, stored: Stored, now: int) -> Swept:
        """Apply the time-driven changes due by `now` to a scheduled profile."""
        assert stored.state is not None
        profile = entry.profile
        result = advance(profile, stored.state, self.model, now)
        pending = list(stored.pending)
        if profile.is_lead or self.settings.emit_anonymous:
            pending += [self.encode_output(o, -1) for o in result.outputs]
        write, after = None, stored
        if result.outputs:
            write = Write(profile, stored, result.state, {}, pending=pending, refresh_ttl=False)
            after = write.after()
        due = next_change(result.state, self.model.for_profile(profile))
        return Swept(
            write,
            [self.publication(profile, o.kind, o.value, None) for o in pending],
            after,
            Due(profile, entry.partition, due.at if due else None),
        )
