"""The traffic simulator: deterministic, realistic, and every message is what it claims."""

from __future__ import annotations

from collections import Counter

from leadscore.codec import InputDecoder
from leadscore.errors import InvalidEvent
from leadscore.simulate import PERSONAS, Traffic

NOW = 1_800_000_000.0


def clock() -> float:
    return NOW


def test_the_same_seed_gives_the_same_traffic() -> None:
    a = Traffic(seed=3, clock=clock).next(500)
    b = Traffic(seed=3, clock=clock).next(500)
    c = Traffic(seed=4, clock=clock).next(500)
    assert a == b
    assert a != c


def test_valid_messages_decode_and_malformed_ones_are_rejected() -> None:
    traffic = Traffic(seed=1, leads=200, clock=clock, malformed_rate=0.02)
    messages = traffic.next(5000)
    decoders = {
        rt: InputDecoder(rt, max_clock_skew_ms=300_000, clock=clock)
        for rt in ("Click", "Visit", "FormSubmission", "Call")
    }
    reasons: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    seen: set[str] = set()
    late = duplicates = 0
    for message in messages:
        if message.malformed:
            try:
                decoders[message.record_type](message.value)
            except InvalidEvent as exc:
                reasons[exc.reason] += 1
                continue
            raise AssertionError(f"a malformed message decoded: {message}")
        event = decoders[message.record_type](message.value)
        kinds[message.record_type] += 1
        if message.duplicate:
            assert event.event_id in seen
            duplicates += 1
        seen.add(event.event_id)
        late += event.occurred_at < NOW * 1000 - 1000
    assert set(kinds) == {"Click", "Visit", "FormSubmission", "Call"}
    assert set(reasons) >= {"undecodable", "missing-id", "future-timestamp", "invalid-field"}
    assert duplicates > 10
    assert late > 10


def test_every_persona_appears_and_acts_as_itself() -> None:
    traffic = Traffic(seed=2, leads=400, clock=clock)
    assert {p.persona for p in traffic.people} == set(PERSONAS)
    decoder = InputDecoder("FormSubmission", max_clock_skew_ms=0, clock=clock)
    forms = [
        decoder(m.value)
        for m in traffic.next(20_000)
        if m.record_type == "FormSubmission" and not m.malformed
    ]
    form_ids = Counter(f.form_id for f in forms)
    assert {"demo-request", "job-application", "newsletter", "whitepaper"} <= set(form_ids)
    assert any(f.fields.get("job_title") == "student" for f in forms)
    assert any(f.fields.get("email", "").endswith(("rivalsoft.com", "competeco.io")) for f in forms)
    # anonymous visitors who identify themselves send an event with both ids
    assert any(f.lead_id and f.anonymous_id for f in forms)


def test_bots_click_in_bursts_with_bot_user_agents() -> None:
    traffic = Traffic(seed=5, leads=300, clock=clock, late_rate=0)
    decoder = InputDecoder("Click", max_clock_skew_ms=0, clock=clock)
    clicks = [
        decoder(m.value)
        for m in traffic.next(5000)
        if m.record_type == "Click" and not m.malformed and not m.duplicate
    ]
    bot_clicks = Counter(
        c.profile_key
        for c in clicks
        if "bot" in (c.user_agent or "").lower()
        or "requests" in (c.user_agent or "")
        or "curl" in (c.user_agent or "")
    )
    assert bot_clicks
    assert max(bot_clicks.values()) >= 3  # several clicks in the same instant


def test_with_quiet_spells_buyers_and_researchers_pause_for_days() -> None:
    now = [NOW]
    traffic = Traffic(seed=7, leads=300, clock=lambda: now[0], quiet_spells=True, late_rate=0)
    last_seen: dict[str, float] = {}
    gaps = []
    visits = InputDecoder("Visit", max_clock_skew_ms=0, clock=lambda: now[0])
    for _ in range(200):  # 200 simulated hours, 100 messages each
        for message in traffic.next(100):
            if message.record_type != "Visit" or message.malformed or message.duplicate:
                continue
            event = visits(message.value)
            lead = event.lead_id or event.anonymous_id or ""
            if lead in last_seen:
                gaps.append(event.occurred_at - last_seen[lead])
            last_seen[lead] = event.occurred_at
        now[0] += 3600
    assert any(p.quiet_until > NOW * 1000 for p in traffic.people)
    assert max(gaps) >= 5 * 86_400_000  # someone came back after days of silence
    # product pages follow each person's interest in a product line
    urls = Counter(
        visits(m.value).url.split("/")[4]  # type: ignore[union-attr]
        for m in traffic.next(3000)
        if m.record_type == "Visit" and not m.malformed and "/product/" in str(m.value)
    )
    assert set(urls) == {"analytics", "automation"}
