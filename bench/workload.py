"""The benchmark's standard workload: seeded, fast to generate, shaped like a busy site.

- `leads` known leads; `hot_leads` of them (20%) produce `hot_events` (80%) of the events;
- event types in the issue's mix: visit 55%, click 25%, form 12%, call 8%;
- `late` (5%) of the events are dated up to `late_ms` (an hour) before their neighbours;
- `redeliveries` (0.5%) re-send an earlier message unchanged (a producer retry: same
  event id, new offset);
- a lead's first event carries profile traits, so fit (and so grades and stages) vary.

Values hit the bundled model's rules: product, pricing, docs, analytics and careers pages,
ad clicks, demo and whitepaper forms, inbound and outbound calls.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

import fastavro

from leadscore.codec.schemas import schema

MIX = (("Visit", 0.55), ("Click", 0.25), ("FormSubmission", 0.12), ("Call", 0.08))
PAGES = (
    ("/product/overview", "Product"),
    ("/pricing", "Pricing"),
    ("/docs/getting-started", "Docs"),
    ("/blog/lead-scoring", "Blog"),
    ("/analytics", "Analytics"),
    ("/automation", "Automation"),
    ("/case-studies/acme", "Case study"),
    ("/", "Home"),
    ("/careers", "Careers"),
)
PAGE_WEIGHTS = (20, 12, 14, 25, 8, 8, 5, 7, 1)
FORMS = ("demo-request", "quote-request", "whitepaper", "newsletter", "job-application")
FORM_WEIGHTS = (30, 10, 30, 28, 2)
INDUSTRIES = ("software", "finance", "healthcare", "retail", "manufacturing", "education")
TITLES = ("VP Marketing", "Engineer", "Head of Sales", "Analyst", "CTO", "Student")
DOMAINS = ("acme.com", "globex.io", "initech.com", "gmail.com", "umbrella.org", "rivalsoft.com")


@dataclass(frozen=True)
class Workload:
    events: int = 500_000
    leads: int = 50_000
    hot_leads: float = 0.2
    hot_events: float = 0.8
    late: float = 0.05
    late_ms: int = 3_600_000
    redeliveries: float = 0.005
    seed: int = 7


class Generator:
    """Encoded input records of a `Workload`, one at a time, event times given by the caller."""

    def __init__(self, workload: Workload) -> None:
        self.w = workload
        self.rng = random.Random(workload.seed)
        self.hot = max(1, int(workload.leads * workload.hot_leads))
        self.seen: set[int] = set()
        self.sent: list[tuple[str, bytes, bytes]] = []  # a window of recent messages
        self.count = 0
        self._schemas = {rt: schema(rt) for rt, _ in MIX}
        self._types = [rt for rt, _ in MIX]
        self._type_weights = [share for _, share in MIX]

    def next(self, occurred_at: int, late: bool = True) -> tuple[str, bytes, bytes]:
        """(record type, key, value) of the next message, dated `occurred_at` (or up to
        an hour earlier for a late one when `late`)."""
        rng = self.rng
        if self.sent and rng.random() < self.w.redeliveries:
            return self.sent[rng.randrange(len(self.sent))]
        self.count += 1
        if rng.random() < self.w.hot_events:
            lead = rng.randrange(self.hot)
        else:
            lead = self.hot + rng.randrange(max(1, self.w.leads - self.hot))
        if late and rng.random() < self.w.late:
            occurred_at -= rng.randrange(self.w.late_ms)
        record_type = rng.choices(self._types, self._type_weights)[0]
        lead_id = f"lead-{lead:07d}"
        record = self._record(record_type, lead, lead_id, occurred_at)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self._schemas[record_type], record)
        message = (record_type, lead_id.encode(), buffer.getvalue())
        if len(self.sent) < 1000:
            self.sent.append(message)
        else:
            self.sent[rng.randrange(1000)] = message
        return message

    def _record(self, record_type: str, lead: int, lead_id: str, at: int) -> dict[str, Any]:
        rng = self.rng
        traits: dict[str, str] = {}
        if lead not in self.seen:
            self.seen.add(lead)
            traits = {
                "company": f"Company {lead % 5000}",
                "industry": INDUSTRIES[lead % len(INDUSTRIES)],
                "job_title": TITLES[(lead // 7) % len(TITLES)],
                "email_domain": DOMAINS[(lead // 3) % len(DOMAINS)],
                "company_size": str(10 + (lead * 37) % 2000),
            }
        record: dict[str, Any] = {
            "event_id": f"e{self.w.seed}-{self.count}",
            "occurred_at": at,
            "lead_id": lead_id,
            "anonymous_id": None,
            "source": {
                "channel": "paid_search",
                "campaign": None,
                "medium": None,
                "referrer": None,
            },
            "context": {"user_agent": "Mozilla/5.0", "ip": "192.0.2.1", "device": "DESKTOP"},
            "traits": traits,
        }
        if record_type == "Visit":
            path, title = rng.choices(PAGES, PAGE_WEIGHTS)[0]
            record.update(
                url=f"https://www.example.com{path}",
                title=title,
                session_id=f"s{lead}",
                duration_ms=rng.randrange(1000, 120_000),
            )
        elif record_type == "Click":
            record.update(url="https://ads.example.net/c", target_url=None, ad_id="ad-7")
        elif record_type == "FormSubmission":
            form = rng.choices(FORMS, FORM_WEIGHTS)[0]
            record.update(
                form_id=form,
                url="https://www.example.com/form",
                fields={"product": rng.choice(("analytics", "automation"))},
                fill_duration_ms=rng.randrange(5000, 120_000),
                completed_by="SELF",
                consent={"marketing": True, "contact": rng.random() < 0.7},
            )
        else:
            record.update(
                call_id=f"c{self.count}",
                direction=rng.choice(("INBOUND", "OUTBOUND")),
                tracking_number=None,
                duration_s=rng.randrange(0, 600),
                answered=rng.random() < 0.6,
                outcome=None,
            )
        return record
