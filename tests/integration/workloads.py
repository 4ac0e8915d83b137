"""Workloads for the crash, scale-out and redelivery tests, and what the pure core makes
of them."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from leadscore.codec import InputDecoder
from leadscore.events import Event, ProfileKey
from leadscore.model import Model
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


def every_topic_per_lead(
    *, events: int, leads: int, prefix: str, start: int, spacing_ms: int, seed: int
) -> list[Record]:
    """`events` records (at least 4 per lead), event times increasing by `spacing_ms` in
    the order returned; every lead has events on every input topic, so each run may fold a
    lead's events in another order. Fields vary (pages, forms, calls, consent, traits,
    a bot now and then) so that the model of the crash test (tests/models/order_free.yaml)
    uses every rule, cap, category and attribute on them."""
    assert events >= 4 * leads
    rng = random.Random(seed)
    kinds = list(RECORD_TYPES)
    pairs = [(lead, kind) for lead in range(leads) for kind in kinds]
    pairs += [(rng.randrange(leads), rng.choice(kinds)) for _ in range(events - len(pairs))]
    rng.shuffle(pairs)
    records = []
    for i, (lead, kind) in enumerate(pairs):
        value = encoded(
            RECORD_TYPES[kind],
            f"{prefix}{lead}",
            event_id=f"{prefix.lower()}{i}",
            occurred_at=start + i * spacing_ms,
            **_varied(kind, rng),
        )
        records.append((kind, f"{prefix}{lead}", value))
    return records


def _varied(kind: str, rng: random.Random) -> dict[str, Any]:
    """Random fields of a record of topic `kind` (see tests/records.py for the rest)."""
    fields: dict[str, Any] = {
        "context": {
            "user_agent": "Googlebot/2.1" if rng.random() < 0.005 else "Mozilla/5.0",
            "ip": "192.0.2.1",
            "device": rng.choice(["DESKTOP", "DESKTOP", "MOBILE", "TABLET"]),
        },
        "source": {
            "channel": rng.choice(["paid_search", "organic_search", "email"]),
            "campaign": rng.choice(["spring-sale", "spring-webinar", "autumn", None]),
            "medium": None,
            "referrer": None,
        },
    }
    if rng.random() < 0.3:
        fields["traits"] = {
            name: rng.choice(values) for name, values in TRAITS.items() if rng.random() < 0.5
        }
    if kind == "visits":
        page = rng.choice(["pricing", "plans", "docs/getting-started", "analytics/reports", "blog"])
        fields["url"] = f"https://www.example.com/{page}"
        fields["duration_ms"] = rng.choice([5_000, 45_000, None])
    elif kind == "forms":
        fields["form_id"] = rng.choice(["demo-request", "quote-request", "webinar", "newsletter"])
        fields["fields"] = {
            "company": rng.choice(["Acme", "Globex", "Initech"]),
            "topic": rng.choice(["pricing", "billing", "other"]),
        }
        fields["fill_duration_ms"] = rng.choice([1_000, 40_000, 90_000, None])
        fields["completed_by"] = rng.choice(["SELF", "SELF", "AGENT"])
        fields["consent"] = (
            {"marketing": rng.random() < 0.5, "contact": rng.random() < 0.7}
            if rng.random() < 0.6
            else None
        )
    elif kind == "calls":
        fields["direction"] = rng.choice(["INBOUND", "OUTBOUND"])
        fields["answered"] = rng.random() < 0.7
        fields["duration_s"] = rng.choice([20, 90, 300])
        fields["outcome"] = rng.choice(["sale"] + [None] * 20 + ["no_interest"] * 4)
    return fields


TRAITS = {
    "plan": ["free", "pro", "enterprise-2024"],
    "country": ["DE", "AT", "FR", "US"],
    "industry": ["software", "finance", "retail"],
    "employees": ["5", "50", "800"],
    "email_domain": ["acme.com"] * 8 + ["rival.com", "uni.edu"],
    "job_title": ["VP Sales", "Engineer", "Chief of Staff"],
    "phone": ["+15550100"],
}


def pure_outcome(
    records: list[Record], clock: int, model: Model | None = None
) -> tuple[set[str], dict[ProfileKey, object]]:
    """Every output id and final state the core computes from each lead's records in
    order (`model`, by default the simple model; time-driven changes swept up to
    `clock`)."""
    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt in RECORD_TYPES.values()}
    by_lead: dict[ProfileKey, list[Event]] = defaultdict(list)
    for kind, _lead, value in records:
        event = decoders[RECORD_TYPES[kind]](value)
        by_lead[event.profile_key].append(event)
    model = model or simple_model()
    ids: set[str] = set()
    states: dict[ProfileKey, object] = {}
    for lead, events in by_lead.items():
        scored = score(lead, None, events, model)
        swept = advance(lead, scored.state, model, clock)
        ids |= {o.event_id for o in scored.outputs + swept.outputs}
        states[lead] = swept.state
    return ids, states
