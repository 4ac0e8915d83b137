"""Workloads for the crash, scale-out and redelivery tests, and what the pure core makes
of them."""

from __future__ import annotations

import random
from collections import defaultdict

from leadscore.codec import InputDecoder
from leadscore.events import Event, ProfileKey
from leadscore.scoring.score import advance, score
from tests.integration.conftest import RECORD_TYPES
from tests.models import simple_model
from tests.records import encoded

Record = tuple[str, str, bytes]  # (topic kind, lead id, value)


def one_topic_per_lead(
    *, events: int, leads: int, prefix: str, start: int, spacing_ms: int, seed: int
) -> list[Record]:
    """`events` records, event times increasing by `spacing_ms`; each lead's on one topic
    (so on one partition, in order: every run folds a lead's events in the same order)."""
    rng = random.Random(seed)
    kinds = list(RECORD_TYPES)
    records = []
    for i in range(events):
        lead = rng.randrange(leads)
        kind = kinds[lead % 4]
        value = encoded(
            RECORD_TYPES[kind],
            f"{prefix}{lead}",
            event_id=f"{prefix.lower()}{i}",
            occurred_at=start + i * spacing_ms,
        )
        records.append((kind, f"{prefix}{lead}", value))
    return records


def pure_outcome(records: list[Record], clock: int) -> tuple[set[str], dict[ProfileKey, object]]:
    """Every output id and final state the core computes from each lead's records in
    order (the simple model; time-driven changes swept up to `clock`)."""
    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt in RECORD_TYPES.values()}
    by_lead: dict[ProfileKey, list[Event]] = defaultdict(list)
    for kind, _lead, value in records:
        event = decoders[RECORD_TYPES[kind]](value)
        by_lead[event.profile_key].append(event)
    model = simple_model()
    ids: set[str] = set()
    states: dict[ProfileKey, object] = {}
    for lead, events in by_lead.items():
        scored = score(lead, None, events, model)
        swept = advance(lead, scored.state, model, clock)
        ids |= {o.event_id for o in scored.outputs + swept.outputs}
        states[lead] = swept.state
    return ids, states
