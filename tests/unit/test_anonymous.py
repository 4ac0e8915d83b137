"""Anonymous profiles (events with no lead id) are scored, but are not prospects: whatever
their events, they stay in the model's first stage and never have contact allowed; their
engagement, fit and categories are scored as a lead's would be."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.events import Consent, Event, EventType, ProfileKey
from leadscore.scoring.explain import explanation, text_lines
from leadscore.scoring.outputs import ScoreChanged, StageTransitioned
from leadscore.scoring.score import advance, score
from leadscore.scoring.timeline import next_change
from tests.models import simple_model

MODEL = simple_model()
DAY = 86_400_000
T0 = 1_000 * DAY
ANON = ProfileKey("anon", "a-1")
LEAD = ProfileKey("lead", "L1")


def ev(profile: ProfileKey, kind: EventType, n: int, at: int, **fields: object) -> Event:
    lead = profile.id if profile.is_lead else None
    anonymous = None if profile.is_lead else profile.id
    return Event(kind, f"e{n}", at, lead, anonymous, **fields)  # type: ignore[arg-type]


def engaged(profile: ProfileKey) -> list[Event]:
    """Enough to make a lead a contact, then a lead (a form with consent, calls)."""
    return [
        ev(profile, EventType.FORM, 1, T0, consent=Consent(True, True), fields={"company": "X"}),
        ev(profile, EventType.CALL, 2, T0 + 1000),
        ev(profile, EventType.CALL, 3, T0 + 2000),
    ]


def test_the_same_events_move_a_lead_on_but_leave_an_anonymous_profile_a_visitor() -> None:
    lead = score(LEAD, None, engaged(LEAD), MODEL)
    anonymous = score(ANON, None, engaged(ANON), MODEL)
    assert lead.state.stage != "visitor"
    assert anonymous.state.stage == MODEL.stages[0].name == "visitor"
    assert anonymous.state.engagement == lead.state.engagement  # scored all the same
    transitions = [o for o in anonymous.outputs if isinstance(o, StageTransitioned)]
    assert [(t.from_stage, t.to_stage) for t in transitions] == [(None, "visitor")]
    changes = [o for o in anonymous.outputs if isinstance(o, ScoreChanged)]
    assert changes
    assert not any(c.contact_allowed for c in changes)
    assert any(c.contact_allowed for c in lead.outputs if isinstance(c, ScoreChanged))


def test_no_time_driven_stage_change_is_scheduled_for_an_anonymous_profile() -> None:
    state = score(ANON, None, engaged(ANON), MODEL).state
    due = next_change(state, MODEL.for_profile(ANON))
    assert due is None or due.stage == "visitor"
    later = advance(ANON, state, MODEL, T0 + 400 * DAY)
    assert later.state.stage == "visitor"
    assert not [o for o in later.outputs if isinstance(o, StageTransitioned)]


def test_inspect_says_an_anonymous_profile_is_not_contacted() -> None:
    state = score(ANON, None, engaged(ANON), MODEL).state
    text = "\n".join(text_lines(explanation(ANON, state, MODEL)))
    assert "contact allowed: no (an anonymous profile is not contacted)" in text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(EventType)),
            st.integers(min_value=0, max_value=60 * DAY),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_whatever_the_events_an_anonymous_profile_stays_in_the_first_stage(
    events: list[tuple[EventType, int, bool]],
) -> None:
    batch = [
        ev(ANON, kind, n, T0 + at, consent=Consent(True, True) if consent else None)
        for n, (kind, at, consent) in enumerate(events)
    ]
    result = score(ANON, None, batch, MODEL)
    assert result.state.stage == "visitor"
    assert not any(o.contact_allowed for o in result.outputs if isinstance(o, ScoreChanged))
