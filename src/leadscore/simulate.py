"""Realistic traffic for the demo, tests and benchmarks.

People of several kinds act over time: buyers with intent (pricing pages, demo requests,
inbound calls answered by sales, outbound follow-ups, sometimes a purchase), long-term
researchers, competitors, job seekers, students, bots clicking in bursts, and anonymous
visitors who may identify themselves later. Each is interested in one of two product lines
(analytics or automation). With quiet spells, buyers and researchers stop for days or
weeks now and then (on an accelerated clock, that is when leads cool down). On top:
re-sent duplicates (a producer retry), late events and a few malformed messages. `Traffic`
is pure and seeded (the clock is injectable); `simulate()` sends it to Kafka at a steady
rate.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fastavro

from leadscore.codec import InputDecoder, encode_record
from leadscore.codec.schemas import schema_text
from leadscore.durations import DAY_MS
from leadscore.errors import InvalidEvent
from leadscore.events import ProfileKey
from leadscore.kafka.producer import RecordProducer
from leadscore.model import Model
from leadscore.scoring.score import score
from leadscore.scoring.state import LeadState

SITE = "https://www.example.com"
FINAL_FLUSH_S = 30.0
COMPETITOR_DOMAINS = ("rivalsoft.com", "competeco.io")
FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com")
INDUSTRIES = ("software", "manufacturing", "finance", "healthcare", "retail", "logistics")
TITLES = ("Head of Marketing", "CTO", "VP Sales", "Operations Manager", "Founder", "Analyst")
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1",
)
BOTS = ("Mozilla/5.0 (compatible; Googlebot/2.1)", "python-requests/2.32", "curl/8.5.0")
CHANNELS = ("organic_search", "paid_search", "social", "email", "directory", "print", "radio", "tv")
PRODUCTS = ("analytics", "automation")
# persona -> (chance that an action is followed by a quiet spell, its shortest and longest
# length in days); only with quiet spells on
QUIET_SPELLS = {"buyer": (0.08, 5, 45), "researcher": (0.08, 10, 60)}

# persona -> (share of people, actions with weights); an action names a method of `_Acts`
PERSONAS: dict[str, tuple[float, dict[str, int]]] = {
    "buyer": (
        0.15,
        {
            "visit_product": 5,
            "visit_pricing": 4,
            "click_ad": 2,
            "demo_form": 2,
            "inbound_call": 2,
            "outbound_call": 2,
            "purchase": 0,
        },
    ),
    "researcher": (0.22, {"visit_blog": 6, "visit_docs": 3, "whitepaper_form": 1}),
    "competitor": (0.05, {"visit_pricing": 4, "visit_product": 3, "competitor_form": 1}),
    "job_seeker": (0.10, {"visit_careers": 5, "job_application": 1}),
    "student": (0.10, {"visit_blog": 3, "visit_docs": 3, "student_form": 1}),
    "bot": (0.05, {"bot_burst": 1}),
    "anonymous": (0.33, {"visit_blog": 4, "visit_product": 3, "click_ad": 2, "identify": 1}),
}


@dataclass(frozen=True, slots=True)
class SimulatedMessage:
    record_type: str
    key: bytes | None
    value: bytes
    malformed: bool = False
    duplicate: bool = False


@dataclass
class SimulationStats:
    sent: int = 0
    by_record_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    malformed: int = 0
    unacknowledged: int = 0
    elapsed_s: float = 0.0

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.by_record_type.items()))
        return (
            f"{self.sent:,} sent in {self.elapsed_s:.1f} s ({kinds}; "
            f"{self.duplicates:,} duplicates, {self.malformed:,} malformed)"
        )


@dataclass
class Person:
    persona: str
    lead_id: str | None
    anonymous_id: str
    traits: dict[str, str]
    channel: str
    interest: str = PRODUCTS[0]
    actions: int = 0
    requested: bool = False
    quiet_until: int = 0  # event time (ms) before which the person does nothing


class Traffic:
    """An endless, seeded stream of simulated input messages."""

    def __init__(
        self,
        *,
        seed: int = 0,
        leads: int = 300,
        clock: Callable[[], float] = time.time,
        duplicate_rate: float = 0.01,
        late_rate: float = 0.02,
        malformed_rate: float = 0.003,
        quiet_spells: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.quiet_spells = quiet_spells
        self.duplicate_rate = duplicate_rate
        self.late_rate = late_rate
        self.malformed_rate = malformed_rate
        self._next_person = 0
        self.people = [self._new_person() for _ in range(leads)]
        self._recent: list[SimulatedMessage] = []
        self._acts = _Acts(self)

    def next(self, count: int) -> list[SimulatedMessage]:
        """The next `count` messages."""
        messages: list[SimulatedMessage] = []
        while len(messages) < count:
            roll = self.rng.random()
            if roll < self.malformed_rate:
                messages.append(self._malformed())
            elif roll < self.malformed_rate + self.duplicate_rate and self._recent:
                original = self.rng.choice(self._recent)
                messages.append(
                    SimulatedMessage(
                        original.record_type, original.key, original.value, duplicate=True
                    )
                )
            else:
                for message in self._act():
                    messages.append(message)
                    self._recent.append(message)
                del self._recent[:-200]
        return messages[:count] if len(messages) > count else messages

    # ---- people -----------------------------------------------------------------------------

    def _new_person(self) -> Person:
        personas = list(PERSONAS)
        persona = self.rng.choices(personas, [PERSONAS[p][0] for p in personas])[0]
        self._next_person += 1
        n = self._next_person
        known = persona not in ("anonymous", "bot") or self.rng.random() < 0.2
        company = f"Company{n % 997}"
        traits = (
            {"company": company, "industry": self.rng.choice(INDUSTRIES)}
            if persona in ("buyer", "researcher") and self.rng.random() < 0.6
            else {}
        )
        return Person(
            persona=persona,
            lead_id=f"lead-{n:06d}" if known else None,
            anonymous_id=f"anon-{self.rng.getrandbits(48):012x}",
            traits=traits,
            channel=self.rng.choice(CHANNELS),
            interest=self.rng.choice(PRODUCTS),
        )

    def _act(self) -> list[SimulatedMessage]:
        now = int(self.clock() * 1000)
        for _ in range(50):  # someone who is not in a quiet spell
            index = self.rng.randrange(len(self.people))
            person = self.people[index]
            if person.quiet_until <= now:
                break
        actions = PERSONAS[person.persona][1]
        names = [a for a, w in actions.items() if w]
        if person.persona == "buyer" and person.requested and self.rng.random() < 0.05:
            names = ["purchase"]
        name = self.rng.choices(names, [actions[a] or 1 for a in names])[0]
        messages = getattr(self._acts, name)(person)
        person.actions += 1
        if person.actions > self.rng.randint(15, 60):  # they leave; someone new arrives
            self.people[index] = self._new_person()
        elif self.quiet_spells and person.persona in QUIET_SPELLS:
            chance, shortest, longest = QUIET_SPELLS[person.persona]
            if self.rng.random() < chance:
                person.quiet_until = now + self.rng.randint(shortest, longest) * DAY_MS
        return list(messages)

    # ---- records ----------------------------------------------------------------------------

    def event(
        self, record_type: str, person: Person, *, user_agent: str | None = None, **fields: Any
    ) -> SimulatedMessage:
        """One encoded record for `person`, now (or a little late, sometimes)."""
        at = int(self.clock() * 1000)
        if self.rng.random() < self.late_rate:
            at -= self.rng.randint(5_000, 3_600_000)
        device = "MOBILE" if user_agent and "iPhone" in user_agent else "DESKTOP"
        record = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "occurred_at": at,
            "lead_id": person.lead_id,
            "anonymous_id": person.anonymous_id,
            "source": {
                "channel": person.channel,
                "campaign": "spring-promo" if person.channel == "paid_search" else None,
                "medium": "cpc" if person.channel == "paid_search" else None,
                "referrer": None,
            },
            "context": {
                "user_agent": user_agent or self.rng.choice(BROWSERS),
                "ip": f"198.51.100.{self.rng.randrange(1, 255)}",
                "device": device if user_agent is None or "bot" not in user_agent else "OTHER",
            },
            "traits": dict(person.traits),
            **fields,
        }
        key = (person.lead_id or person.anonymous_id).encode()
        return SimulatedMessage(record_type, key, encode_record(record_type, record))

    def _malformed(self) -> SimulatedMessage:
        person = self.rng.choice(self.people)
        kind = self.rng.choice(["random", "truncated", "no-id", "future", "negative", "enum"])
        now = int(self.clock() * 1000)
        visit = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "occurred_at": now,
            "lead_id": person.lead_id,
            "anonymous_id": person.anonymous_id,
            "url": f"{SITE}/",
        }
        if kind == "random":
            value = self.rng.randbytes(self.rng.randint(1, 80))
        elif kind == "truncated":
            value = encode_record("Visit", visit)[: self.rng.randint(1, 10)]
        elif kind == "no-id":
            value = encode_record("Visit", {**visit, "lead_id": None, "anonymous_id": None})
        elif kind == "future":
            value = encode_record("Visit", {**visit, "occurred_at": now + DAY_MS})
        elif kind == "negative":
            value = encode_record("Visit", {**visit, "duration_ms": -1000})
        else:
            value = call_with_unknown_direction(
                {**visit, "call_id": "c", "direction": "VIDEO", "duration_s": 10, "answered": True}
            )
        record_type = "Call" if kind == "enum" else "Visit"
        return SimulatedMessage(record_type, person.anonymous_id.encode(), value, malformed=True)


class _Acts:
    """What a person can do; each returns the messages it causes."""

    def __init__(self, traffic: Traffic) -> None:
        self.t = traffic
        self.rng = traffic.rng

    def _visit(self, p: Person, path: str, title: str) -> list[SimulatedMessage]:
        return [
            self.t.event(
                "Visit",
                p,
                url=f"{SITE}{path}",
                title=title,
                session_id=f"s-{p.anonymous_id[-6:]}",
                duration_ms=self.rng.randint(3_000, 240_000),
            )
        ]

    def visit_product(self, p: Person) -> list[SimulatedMessage]:
        """Mostly the product line of interest, sometimes the other one."""
        line = p.interest if self.rng.random() < 0.8 else self.rng.choice(PRODUCTS)
        page = self.rng.choice(
            [f"/product/{line}", f"/product/{line}/features", "/case-studies", "/"]
        )
        return self._visit(p, page, "Product")

    def visit_pricing(self, p: Person) -> list[SimulatedMessage]:
        return self._visit(p, "/pricing", "Pricing")

    def visit_blog(self, p: Person) -> list[SimulatedMessage]:
        return self._visit(p, f"/blog/post-{self.rng.randrange(40)}", "Blog")

    def visit_docs(self, p: Person) -> list[SimulatedMessage]:
        return self._visit(p, f"/docs/guide-{self.rng.randrange(20)}", "Docs")

    def visit_careers(self, p: Person) -> list[SimulatedMessage]:
        return self._visit(
            p, self.rng.choice(["/careers", f"/careers/job-{self.rng.randrange(9)}"]), "Careers"
        )

    def click_ad(self, p: Person) -> list[SimulatedMessage]:
        return [
            self.t.event(
                "Click",
                p,
                url=f"{SITE}/lp/spring",
                target_url=f"{SITE}/pricing",
                ad_id=f"ad-{self.rng.randrange(12)}",
            )
        ]

    def _form(
        self,
        p: Person,
        form_id: str,
        fields: dict[str, str],
        *,
        consent: bool = True,
        agent: bool = False,
    ) -> list[SimulatedMessage]:
        p.requested = True
        return [
            self.t.event(
                "FormSubmission",
                p,
                form_id=form_id,
                url=f"{SITE}/{form_id}",
                fields=fields,
                fill_duration_ms=self.rng.randint(8_000, 180_000),
                completed_by="AGENT" if agent else "SELF",
                consent={"marketing": consent, "contact": consent},
            )
        ]

    def _business_fields(self, p: Person) -> dict[str, str]:
        company = p.traits.get("company") or f"Company{self.rng.randrange(997)}"
        return {
            "email": f"{p.persona}.{p.anonymous_id[-4:]}@{company.lower()}.com",
            "company": company,
            "job_title": self.rng.choice(TITLES),
            "industry": p.traits.get("industry") or self.rng.choice(INDUSTRIES),
            "company_size": str(self.rng.choice([10, 50, 200, 1000, 5000])),
        }

    def demo_form(self, p: Person) -> list[SimulatedMessage]:
        return self._form(
            p,
            self.rng.choice(["demo-request", "quote-request"]),
            {**self._business_fields(p), "product": p.interest},
            agent=self.rng.random() < 0.2,
        )

    def whitepaper_form(self, p: Person) -> list[SimulatedMessage]:
        return self._form(
            p, "whitepaper", self._business_fields(p), consent=self.rng.random() < 0.7
        )

    def competitor_form(self, p: Person) -> list[SimulatedMessage]:
        domain = self.rng.choice(COMPETITOR_DOMAINS)
        return self._form(
            p,
            "whitepaper",
            {"email": f"analyst@{domain}", "company": domain.split(".")[0]},
            consent=False,
        )

    def job_application(self, p: Person) -> list[SimulatedMessage]:
        return self._form(
            p,
            "job-application",
            {"email": f"me@{self.rng.choice(FREE_MAIL)}", "position": "engineer"},
        )

    def student_form(self, p: Person) -> list[SimulatedMessage]:
        return self._form(
            p,
            "newsletter",
            {"email": f"s{p.anonymous_id[-4:]}@university.edu", "job_title": "student"},
        )

    def _call(self, p: Person, direction: str, outcome: str | None = None) -> SimulatedMessage:
        answered = self.rng.random() < 0.8
        return self.t.event(
            "Call",
            p,
            call_id=f"call-{self.rng.getrandbits(32):08x}",
            direction=direction,
            tracking_number="+15550100",
            duration_s=self.rng.randint(60, 900) if answered else 0,
            answered=answered,
            outcome=outcome if answered else None,
        )

    def inbound_call(self, p: Person) -> list[SimulatedMessage]:
        p.requested = True
        return [self._call(p, "INBOUND")]

    def outbound_call(self, p: Person) -> list[SimulatedMessage]:
        return [self._call(p, "OUTBOUND")] if p.requested else self.visit_pricing(p)

    def purchase(self, p: Person) -> list[SimulatedMessage]:
        if self.rng.random() < 0.5:
            return self._form(p, "purchase", self._business_fields(p))
        return [self._call(p, "OUTBOUND", outcome="sale")]

    def bot_burst(self, p: Person) -> list[SimulatedMessage]:
        agent = self.rng.choice(BOTS)
        return [
            self.t.event(
                "Click", p, user_agent=agent, url=f"{SITE}/lp/{i}", target_url=None, ad_id=None
            )
            for i in range(self.rng.randint(3, 10))
        ]

    def identify(self, p: Person) -> list[SimulatedMessage]:
        """An anonymous visitor fills a form: the event carries both ids."""
        if p.lead_id is None:
            p.lead_id = f"lead-a{p.anonymous_id[-8:]}"
            p.persona = "researcher"
        return self._form(p, "newsletter", {"email": f"x{p.anonymous_id[-4:]}@example.org"})


def simulated_states(
    model: Model,
    *,
    events: int,
    leads: int,
    seed: int,
    step: int = 100,
    step_s: float = 60.0,
    after_step: Callable[[int, dict[ProfileKey, LeadState]], None] = lambda _n, _s: None,
) -> tuple[dict[ProfileKey, LeadState], float]:
    """Every profile's state after `events` simulated messages (quiet spells on) scored
    through `model` one at a time, the clock moving `step_s` seconds after every `step`
    messages (`after_step` sees the messages so far and the states then); and the clock
    at the end (seconds)."""
    now = [1_800_000_000.0]
    traffic = Traffic(seed=seed, leads=leads, clock=lambda: now[0], quiet_spells=True)
    decoders: dict[str, InputDecoder] = {}
    states: dict[ProfileKey, LeadState] = {}
    for sent in range(step, events + 1, step):
        for message in traffic.next(step):
            decode = decoders.setdefault(
                message.record_type,
                InputDecoder(message.record_type, max_clock_skew_ms=300_000, clock=lambda: now[0]),
            )
            try:
                event = decode(message.value)
            except InvalidEvent:
                continue
            profile = event.profile_key
            states[profile] = score(profile, states.get(profile), [event], model).state
        now[0] += step_s
        after_step(sent, states)
    return states, now[0]


def call_with_unknown_direction(record: dict[str, Any]) -> bytes:
    """A Call whose `direction` enum index has no symbol in the real schema."""
    doc = json.loads(schema_text("Call"))
    for f in doc["fields"]:
        if f["name"] == "direction":
            f["type"]["symbols"] = [*f["type"]["symbols"], "VIDEO"]
    import io

    buffer = io.BytesIO()
    fastavro.schemaless_writer(
        buffer,
        fastavro.parse_schema(doc),
        {
            "traits": {},
            "source": None,
            "context": None,
            "tracking_number": None,
            "outcome": None,
            **record,
        },
    )
    return buffer.getvalue()


def simulate(
    producer_config: dict[str, Any],
    topics: dict[str, str],
    *,
    rate: float,
    duration_s: float | None = None,
    limit: int | None = None,
    seed: int = 0,
    leads: int = 300,
    stop: threading.Event | None = None,
    progress: Callable[[SimulationStats], None] | None = None,
    clock: Callable[[], float] = time.time,
    quiet_spells: bool = False,
) -> SimulationStats:
    """Send traffic to `topics` (record type -> topic) at `rate` events/s (<= 0: at once).

    Runs until `duration_s`, `limit` or `stop`, then waits for every acknowledgement.
    """
    traffic = Traffic(seed=seed, leads=leads, clock=clock, quiet_spells=quiet_spells)
    producer = RecordProducer(producer_config)
    stats = SimulationStats()
    stop = stop or threading.Event()
    started = last_progress = time.monotonic()
    while not stop.is_set():
        elapsed = time.monotonic() - started
        if duration_s is not None and elapsed >= duration_s:
            break
        due = 1000 if rate <= 0 else int(rate * elapsed) + 1 - stats.sent
        if limit is not None:
            due = min(due, limit - stats.sent)
            if due <= 0:
                break
        for message in traffic.next(max(due, 0)):
            producer.send(topics[message.record_type], message.key, message.value, [])
            stats.sent += 1
            stats.by_record_type[message.record_type] += 1
            stats.duplicates += message.duplicate
            stats.malformed += message.malformed
        producer.poll()
        if due <= 0:
            time.sleep(0.01)
        if progress and time.monotonic() - last_progress >= 1.0:
            stats.elapsed_s = time.monotonic() - started
            progress(stats)
            last_progress = time.monotonic()
    stats.unacknowledged = producer.flush(FINAL_FLUSH_S)
    stats.elapsed_s = time.monotonic() - started
    return stats
