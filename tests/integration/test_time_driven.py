"""Time-driven changes on a real broker and Redis: quiet leads regress on time, with no
new event; the worker's clock is injected, so days pass in a moment."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from leadscore.codec import InputDecoder, decode_output, encode_record
from leadscore.errors import KafkaUnavailable
from leadscore.events import ProfileKey
from leadscore.model import default_model, load_model
from leadscore.scoring.score import advance, score
from leadscore.scoring.timeline import Due, next_change
from leadscore.state.keys import profile_key, schedule_key, schedule_member
from leadscore.state.store import StateStore
from leadscore.worker import Worker
from tests.integration.conftest import (
    Env,
    ManualClock,
    Services,
    isolated_env,
    read_all,
    schedule_drained,
    wait_until,
    worker_environment,
    worker_process,
)
from tests.models import SIMPLE
from tests.records import encoded, now_ms, record

DAY = 86_400_000
B2B = default_model()
PROFILE = {"company": "Acme", "industry": "software", "job_title": "VP Sales"}


def outputs(env: Env) -> list[dict[str, Any]]:
    return [
        decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())
        for m in read_all(env, "scores", idle_s=1.0)
    ]


def time_driven(env: Env, lead: str) -> list[dict[str, Any]]:
    return [
        o
        for o in outputs(env)
        if o["lead_id"] == lead and str(o["cause_event_id"]).startswith("time:")
    ]


def active_lead(env: Env, lead: str, t: int) -> None:
    """A qualified lead (fit 25) with a demo request at `t` and an answered inbound call a
    minute later."""
    env.produce(
        [
            (
                env.topic("forms"),
                lead.encode(),
                encoded("FormSubmission", lead, occurred_at=t, fields=PROFILE),
            ),
            (
                env.topic("calls"),
                lead.encode(),
                encoded("Call", lead, occurred_at=t + 60_000, duration_s=300),
            ),
        ]
    )


def store(env: Env) -> StateStore:
    return StateStore(env.redis, namespace=env.prefix, ttl_ms=0)


def scored_active_lead(env: Env, lead_id: str, t0: int) -> tuple[ManualClock, ProfileKey, Due]:
    """A worker on a clock of the test's, an active lead scored, and its next change."""
    active_lead(env, lead_id, t0)
    return scored(env, lead_id)


def scored(env: Env, lead_id: str) -> tuple[ManualClock, ProfileKey, Due]:
    """A worker on a clock of the test's, the active lead produced scored, and its next
    change."""
    clock = ManualClock()
    env.start_worker(model=B2B, clock=clock)
    lead = ProfileKey("lead", lead_id)
    wait_until(lambda: getattr(store(env).read(lead).state, "events", 0) == 2, what="scored")
    state = store(env).read(lead).state
    assert state is not None
    assert state.stage == "active_lead"
    due = next_change(state, B2B)
    assert due is not None
    return clock, lead, due


def test_a_quiet_lead_regresses_at_the_due_time_without_any_event(env: Env) -> None:
    t0 = now_ms() - 60_000
    clock, lead, due = scored_active_lead(env, "Q1", t0)
    assert due.cause == "decay"  # engagement ~55 falls below 40 within 30 days
    # the schedule of the partition of the lead's first event holds it, at the due time
    partition = store(env).read(lead).schedule
    assert partition in [(env.topic("forms"), 0), (env.topic("calls"), 0)]
    schedule = schedule_key(env.prefix, *partition)
    assert env.redis.zscore(schedule, schedule_member(lead)) == due.at

    clock.set_ms(due.at - 1)
    time.sleep(2.5)  # a few sweeps: nothing is due yet
    assert time_driven(env, "Q1") == []

    clock.set_ms(due.at)
    wait_until(lambda: len(time_driven(env, "Q1")) == 2, what="the regression")
    transition, change = time_driven(env, "Q1")
    assert (transition["from_stage"], transition["to_stage"]) == ("active_lead", "lead")
    assert transition["reason"] == "decay"
    assert transition["as_of"] == transition["occurred_at"] == due.at
    assert transition["cause_event_id"] == f"time:{due.at}"
    assert transition["explanation"] == "requests 2 >= 1 and fit 25 >= 15"
    assert change["stage"] == "lead"
    assert change["engagement"] < 40
    assert [r["rule"] for r in change["reasons"]] == ["decay"]

    # thirty days after the last event the lead is long-term, for inactivity
    clock.set_ms(t0 + 60_000 + 31 * DAY)
    wait_until(lambda: len(time_driven(env, "Q1")) == 4, what="the inactivity change")
    quiet = time_driven(env, "Q1")[2]
    assert (quiet["to_stage"], quiet["reason"]) == ("long_term_lead", "inactivity")
    assert quiet["inactive_for_ms"] == 30 * DAY
    assert quiet["conditions"][-1] == "inactive for 30d >= 30d"
    final = store(env).read(lead)
    assert final.state is not None
    assert final.state.stage == "long_term_lead"
    assert final.pending == []  # the outputs were acknowledged
    assert env.redis.zscore(schedule, schedule_member(lead)) is None  # nothing more to do


def test_a_lead_whose_events_came_in_a_transaction_regresses_too(env: Env) -> None:
    """Upstream producers that write in Kafka transactions end each partition with a
    commit or abort marker, which no consumer receives (nor an aborted transaction's
    records): the partition must not look behind forever (that froze the sweeps' horizon
    before the lead's last event)."""
    t0 = now_ms() - 60_000
    upstream = Producer(
        {
            "bootstrap.servers": env.services.bootstrap_servers,
            "transactional.id": f"{env.prefix}-upstream",
        }
    )
    upstream.init_transactions(30)
    upstream.begin_transaction()
    form = encoded("FormSubmission", "T1", occurred_at=t0, fields=PROFILE)
    upstream.produce(env.topic("forms"), value=form, key=b"T1")
    call = encoded("Call", "T1", occurred_at=t0 + 60_000, duration_s=300)
    upstream.produce(env.topic("calls"), value=call, key=b"T1")
    upstream.commit_transaction(30)
    # and an aborted one after it: its event is never scored, and the partition still
    # ends past its records and its marker
    upstream.begin_transaction()
    later = encoded("FormSubmission", "T1", occurred_at=t0 + 120_000, fields=PROFILE)
    upstream.produce(env.topic("forms"), value=later, key=b"T1")
    upstream.flush(30)
    upstream.abort_transaction(30)
    clock, lead, due = scored(env, "T1")
    clock.set_ms(due.at)
    wait_until(lambda: len(time_driven(env, "T1")) == 2, what="the regression")
    transition, _change = time_driven(env, "T1")
    assert (transition["from_stage"], transition["to_stage"]) == ("active_lead", "lead")
    assert transition["as_of"] == due.at
    assert getattr(store(env).read(lead).state, "events", 0) == 2  # not the aborted one


def test_a_new_event_just_before_the_due_time_prevents_the_change(env: Env) -> None:
    clock, lead, due = scored_active_lead(env, "Q2", now_ms() - 60_000)

    clock.set_ms(due.at - 2)
    pricing = record("Visit", "Q2", occurred_at=due.at - 1, url="https://example.com/pricing")
    env.produce([(env.topic("visits"), b"Q2", encode_record("Visit", pricing))])
    wait_until(
        lambda: getattr(store(env).read(lead).state, "events", 0) == 3, what="the visit scored"
    )
    clock.set_ms(due.at + 3_600_000)
    time.sleep(2.5)  # sweeps run; the lead is no longer due
    assert time_driven(env, "Q2") == []
    after = store(env).read(lead).state
    assert after is not None
    assert after.stage == "active_lead"
    partition = store(env).read(lead).schedule
    assert partition is not None
    rescheduled = env.redis.zscore(schedule_key(env.prefix, *partition), schedule_member(lead))
    assert rescheduled is not None
    assert rescheduled > due.at


LEADS = 3000
KILLS = 3


def test_sigkill_during_sweeps_changes_the_state_once_and_loses_no_output(
    env: Env, tmp_path: Path
) -> None:
    """Every lead falls back from contact to visitor by decay, all due long before the
    (stopped) clock; the sweeping worker is killed at random moments mid-sweep."""
    model = load_model(SIMPLE)
    t0 = now_ms() - DAY
    clock_at = t0 + 60 * DAY
    values = [encoded("Call", f"K{i}", event_id=f"k{i}", occurred_at=t0 + i) for i in range(LEADS)]
    env.produce([(env.topic("calls"), f"K{i}".encode(), v) for i, v in enumerate(values)])
    reference_ids: set[str] = set()
    reference_states = {}
    decode = InputDecoder("Call", max_clock_skew_ms=300_000)
    for i, value in enumerate(values):
        lead = ProfileKey("lead", f"K{i}")
        scored = score(lead, None, [decode(value)], model)
        swept = advance(lead, scored.state, model, clock_at)
        assert len(swept.outputs) == 2  # contact -> visitor, and its score
        reference_ids |= {o.event_id for o in scored.outputs + swept.outputs}
        reference_states[lead] = swept.state

    variables = worker_environment(
        env,
        group_instance_id="sweep-crash-worker",
        sweep_batch="200",
        clock_speed="0",
        clock_start=str(clock_at),
        log_level="WARNING",
    )
    schedule = schedule_key(env.prefix, env.topic("calls"), 0)

    def remaining() -> int:
        return int(env.redis.zcount(schedule, "-inf", clock_at))

    log = (tmp_path / "worker.log").open("w")
    rng = random.Random(3)
    kills_mid_sweep = attempts = 0
    swept_before = LEADS
    while kills_mid_sweep < KILLS and swept_before > 0:
        attempts += 1
        assert attempts <= 6 * KILLS, f"only {kills_mid_sweep} of {attempts} kills mid-sweep"
        process = worker_process(variables, log)
        # wait until this run sweeps (the entries start to go), then kill it at random
        deadline = time.monotonic() + 60
        while remaining() in (0, swept_before) and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.6))
        process.kill()
        process.wait()
        left = remaining()
        kills_mid_sweep += 0 < left < swept_before
        swept_before = left
    assert kills_mid_sweep >= 2, f"{kills_mid_sweep} kills landed while sweeps were under way"

    process = worker_process(variables, log)
    try:
        wait_until(lambda: schedule_drained(env, clock_at), timeout_s=120, what="every sweep")
    finally:
        process.terminate()
        process.wait(30)

    published = [str(o["event_id"]) for o in outputs(env)]
    assert set(published) == reference_ids  # every output, none made up
    states = store(env).load(list(reference_states))
    assert {p: s.state for p, s in states.items()} == reference_states
    assert all(not s.pending for s in states.values())
    print(
        f"\n{kills_mid_sweep} kills mid-sweep in {attempts} runs; "
        f"{len(published) - len(set(published))} outputs published again"
    )


def owned(handle: Any) -> int:
    consumer = getattr(handle.worker, "consumer", None)
    return len(consumer.assignment) if consumer else 0


def test_the_schedule_follows_its_partition_to_another_worker(services: Services) -> None:
    with isolated_env(services, partitions=4) as env:
        clock = ManualClock()
        t0 = now_ms() - 60_000
        leads = [f"P{i}" for i in range(40)]
        env.produce(
            [
                (env.topic("calls"), lead.encode(), encoded("Call", lead, occurred_at=t0))
                for lead in leads
            ]
        )
        first = env.start_worker(clock=clock, group_id=f"{env.prefix}-g")
        wait_until(
            lambda: all(
                s.state for s in store(env).load([ProfileKey("lead", x) for x in leads]).values()
            ),
            what="every lead scored",
        )
        first.stop()  # leaves the group: its partitions move to the next workers
        second = env.start_worker(clock=clock, group_id=f"{env.prefix}-g")
        third = env.start_worker(clock=clock, group_id=f"{env.prefix}-g")
        wait_until(
            lambda: owned(second) == 8 and owned(third) == 8,
            what="the partitions split between the two workers",
        )
        clock.set_ms(t0 + 10 * DAY)  # 20 points fell below 15 after ~5.8 days
        wait_until(lambda: schedule_drained(env, t0 + 10 * DAY), what="every lead swept")
        timed = [o for o in outputs(env) if str(o["cause_event_id"]).startswith("time:")]
        transitions = Counter(o["lead_id"] for o in timed if "to_stage" in o)
        assert transitions == Counter(leads)  # each lead regressed once
        swept = [int(w.worker.metrics.time_driven_changes._value.get()) for w in (second, third)]
        assert sum(swept) == len(leads)
        assert all(n > 0 for n in swept), f"one worker swept every lead: {swept}"


def test_a_sweep_lost_before_publishing_is_published_by_the_next(env: Env) -> None:
    """The sweep's state is written, its outputs never reach the broker (the process would
    die here): the next worker publishes them, with the same ids, once."""
    model = load_model(SIMPLE)
    t0 = now_ms() - DAY
    clock_at = t0 + 10 * DAY
    env.produce([(env.topic("calls"), b"S1", encoded("Call", "S1", occurred_at=t0))])
    lost: list[Any] = []

    class Unreachable:
        def publish(self, records: list[Any], _offsets: dict[Any, int]) -> None:
            lost.extend(records)
            raise KafkaUnavailable("the broker is gone")

        def publish_untied(self, records: list[Any]) -> None:
            self.publish(records, {})

        def revoked(self, _partitions: list[Any], _done: dict[Any, int]) -> set[Any]:
            return set()

        def finish(self, _done: dict[Any, int]) -> None:
            pass

    crashed = Worker(env.settings(clock_speed=0, clock_start_ms=clock_at), model)
    with crashed.connected():
        wait_until(lambda: bool(batch := crashed.poll()) and crashed.process(batch) is None)
        crashed.sweeper.publisher = Unreachable()
        wait_until(lambda: crashed.sweeper.sweep() or bool(lost), what="a sweep")
    expected = [decode_output(r.headers[0][1].decode(), r.value)["event_id"] for r in lost]
    assert len(expected) == 2  # contact -> visitor, and its score
    lead = ProfileKey("lead", "S1")
    assert [o.kind for o in store(env).read(lead).pending] == [
        "stage_transitioned",
        "score_changed",
    ]

    env.start_worker(model=model, clock_speed=0, clock_start_ms=clock_at)
    wait_until(lambda: schedule_drained(env, clock_at), what="the next sweep")
    ids = [str(o["event_id"]) for o in outputs(env)]
    assert ids[2:] == expected  # after the call's own two outputs: the lost ones, once
    assert store(env).read(lead).pending == []
    assert store(env).read(lead).state.stage == "visitor"  # type: ignore[union-attr]


def test_an_expired_or_erased_lead_leaves_the_schedule(env: Env) -> None:
    clock, lead, due = scored_active_lead(env, "X1", now_ms() - 60_000)
    partition = store(env).read(lead).schedule
    assert partition is not None
    schedule = schedule_key(env.prefix, *partition)
    assert env.redis.zscore(schedule, schedule_member(lead)) == due.at
    env.redis.delete(profile_key(env.prefix, lead))  # what expiry or erasure leaves
    clock.set_ms(due.at + DAY)
    wait_until(
        lambda: env.redis.zscore(schedule, schedule_member(lead)) is None,
        what="the entry removed",
    )
    assert time_driven(env, "X1") == []
    assert not env.redis.exists(profile_key(env.prefix, lead))  # not brought back


def test_a_stale_entry_in_another_partition_is_dropped_and_the_right_one_kept(
    env: Env,
) -> None:
    """The schedule is an index checked against the state: an entry left in a schedule
    the lead is not in (its topics were reconfigured, a crash) changes nothing."""
    clock, lead, due = scored_active_lead(env, "M1", now_ms() - 60_000)
    partition = store(env).read(lead).schedule
    assert partition is not None
    right = schedule_key(env.prefix, *partition)
    other = (env.topic("clicks"), 0)
    wrong = schedule_key(env.prefix, *other)
    env.redis.zadd(wrong, {schedule_member(lead): due.at - DAY})
    clock.set_ms(due.at - DAY // 2)
    wait_until(lambda: env.redis.zscore(wrong, schedule_member(lead)) is None, what="dropped")
    assert env.redis.zscore(right, schedule_member(lead)) == due.at
    assert time_driven(env, "M1") == []
