"""The demo's view: transitions in event-time order, and the worker's count of events."""

from __future__ import annotations

from leadscore.codec import OutputEncoder
from leadscore.demo import DemoView, RecentTransitions, TransitionRow
from leadscore.events import ProfileKey
from leadscore.kafka.consumer import Message
from leadscore.scoring.outputs import StageTransitioned

DAY = 86_400_000


def row(as_of: int, lead: str = "lead-1") -> TransitionRow:
    return TransitionRow(as_of, lead, "lead", "active_lead", "progressed", False)


def test_recent_transitions_are_the_latest_by_event_time_newest_first() -> None:
    recent = RecentTransitions(size=3)
    for at in (10, 30, 20):
        recent.add(row(at))
    assert [r.as_of for r in recent] == [30, 20, 10]
    recent.add(row(25))  # a sweep's change, due before the newest already shown
    assert [r.as_of for r in recent] == [30, 25, 20]  # the oldest leaves: at most 3
    recent.add(row(5))  # older than every one kept: not shown
    assert [r.as_of for r in recent] == [30, 25, 20]
    recent.add(row(30, "lead-2"))  # the same time: the later arrival first
    assert [(r.as_of, r.lead) for r in recent] == [(30, "lead-2"), (30, "lead-1"), (25, "lead-1")]
    assert len(recent) == 3


def transition(as_of: int, reason: str, **fields: object) -> Message:
    output = StageTransitioned(
        event_id=f"o-{as_of}",
        profile=ProfileKey("lead", f"lead-{as_of}"),
        occurred_at=as_of,
        as_of=as_of,
        model_version="m1",
        cause_event_id=f"time:{as_of}" if reason == "decay" else "e1",
        from_stage="active_lead",
        to_stage="lead",
        reason=reason,
        fit=25.0,
        engagement=30.0,
        total=55.0,
        time_in_previous_stage_ms=DAY,
        **fields,  # type: ignore[arg-type]
    )
    key, value, headers = OutputEncoder(clock=lambda: 1.0)(output)
    return Message("leads.scores", 0, 0, key, value, headers)


def test_the_table_shows_transitions_by_event_time_with_why() -> None:
    view = DemoView()
    view.add(
        transition(
            10 * DAY + 2,
            "regressed",
            conditions=("requests 1 >= 1", "fit 25 >= 15"),
            explanation="requests 1 >= 1 and fit 25 >= 15",
        )
    )
    view.add(
        transition(
            10 * DAY + 1,
            "decay",
            inactive_for_ms=3 * DAY,
            conditions=("requests 1 >= 1",),
            explanation="requests 1 >= 1",
        )
    )
    view.add(transition(10 * DAY + 3, "progressed"))  # written before the explanation existed
    rows = list(view.transitions)
    assert [r.as_of for r in rows] == [10 * DAY + 3, 10 * DAY + 2, 10 * DAY + 1]
    assert [r.reason for r in rows] == [
        "progressed",
        "regressed: requests 1 >= 1 and fit 25 >= 15",
        "decay, 3 d after the last event: requests 1 >= 1",
    ]
    assert [r.time_driven for r in rows] == [False, False, True]


def test_the_count_of_events_says_starting_until_the_first_scrape() -> None:
    view = DemoView()
    assert "scored by the worker starting" in view.summary()
    view.scraped(100.0, 0.0)  # the worker answers: nothing consumed yet
    assert "scored by the worker 0  |" in view.summary()  # no rate from one scrape
    view.scraped(100.25, 400.0)  # a backlog caught up on: too short a span for a rate
    assert "scored by the worker 400  |" in view.summary()
    view.scraped(101.0, 500.0)
    assert "scored by the worker 500 (500/s)" in view.summary()
    for i in range(1, 9):  # the rate covers the last two seconds only
        view.scraped(101.0 + i * 0.5, 500.0 + i * 100)
    assert "scored by the worker 1,300 (200/s)" in view.summary()
