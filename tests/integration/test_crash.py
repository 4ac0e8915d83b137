"""SIGKILL at random moments, in both delivery modes: every lead ends in the state of an
uninterrupted run, and its outputs say so (50,000 events over 5,000 leads, at least ten
kills mid-stream).

Every lead has events on every input topic (one partition each), so a batch boundary, a
restart or a partition read ahead changes the order in which a lead's events are folded:
the intermediate outputs of a replayed stretch may differ from the uninterrupted run's
(DESIGN §4, "Exactly-once state"), the final state may not ("Same events, same result").
So, per lead:
- the final state, read with the project's decoder (`StateStore`) and explained as
  `leadscore inspect --json` does (`explanation`), is compared with the uninterrupted
  run's, and that one with the pure core's fold of the lead's events in event-time
  order: total, fit, engagement (its decaying and fixed parts), grade, stage, every
  category's value and level, what each rule earned and is worth now, tags, counts,
  visits, the `once` rules fired, attributes, consent, speed-to-lead and the clocks
  (as_of, first seen, last activity, events counted); and each event counted once
  (`assert_counted_once`).
  Floats agree to 1e-9, relative (absolute for values that cancel to about zero): in
  another order the same points are added, and decayed, in another order, and a float
  sum's last bits depend on that order, so exact equality is not promised;
- the outputs: whatever the order they appear in, the lead's distinct records make one
  chain of ScoreChanged (the first from 0, each from the total of the one before, the
  last at the total the state says it published last) and one of StageTransitioned
  (from null to the stage stored), so none was lost; an id published again carries the
  same record; in exactly-once mode `read_committed` sees each output once, except
  those of time-driven changes (at-least-once there too, DESIGN §4); and the lead's last
  record carries its final state (DESIGN §3): total to a tenth, grade, stage, consent,
  tags, speed-to-lead, categories. The others may first appear in another order than
  they were made in (a replay republishes kept outputs in the order it reads their
  causes across topics): leads whose outputs do are counted and printed, not failed.

The model (tests/models/order_free.yaml) uses caps per window and on the totals,
repeat_within, once, decay and points exempt from it, categories with caps and levels,
consent, attributes and speed-to-lead, and neither feature documented as depending on
the order of events (`keep` stages, engagement rules that read tags): the stage is
compared too. Event times increase along each topic and span 42 minutes, well within the
allowed lateness (7 days). The workers' clocks stand still a minute after the last
event, so that both runs apply the time-driven changes due by then; a sweep moves no
lead's clock past an event still unread (`Sweeper.horizon`), so the clocks agree.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from leadscore.codec import decode_output
from leadscore.events import ProfileKey
from leadscore.model import Model, load_model
from leadscore.scoring.explain import explanation
from leadscore.scoring.state import LeadState
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    RECORD_TYPES,
    Env,
    Services,
    assert_counted_once,
    broker_kind,
    cluster_url,
    isolated_env,
    read_all,
    schedule_drained,
    wait_until,
    worker_environment,
    worker_process,
)
from tests.integration.workloads import every_topic_per_lead, pure_outcome
from tests.models import SIMPLE
from tests.records import now_ms

LEADS = 5_000
EVENTS = 50_000
KILLS = 10
SPACING_MS = 50
MODEL = SIMPLE.with_name("order_free.yaml")

START = now_ms() - 2 * 3_600_000  # every event in the past, SPACING_MS apart
CLOCK = START + EVENTS * SPACING_MS + 60_000

Figures = dict[str, Any]


class Sent(NamedTuple):
    """An input message as `assert_counted_once` reads it."""

    record_type: str
    value: bytes


@functools.cache
def model() -> Model:
    return load_model(MODEL)


@functools.cache
def workload(seed: int = 11) -> list[tuple[str, str, bytes]]:
    """(topic kind, lead, value): every lead on every topic, event times increasing; the
    same bytes for the reference run and the runs under test."""
    return every_topic_per_lead(
        events=EVENTS, leads=LEADS, prefix="L", start=START, spacing_ms=SPACING_MS, seed=seed
    )


def load(env: Env) -> dict[str, int]:
    events = workload()
    env.produce([(env.topic(kind), lead.encode(), value) for kind, lead, value in events])
    return {env.topic(kind): n for kind, n in Counter(k for k, _, _ in events).items()}


def done(env: Env, ends: dict[str, int]) -> int:
    committed = env.committed()
    return sum(max(committed.get(topic, 0), 0) for topic in ends)


def outputs(env: Env) -> list[dict[str, Any]]:
    """Every output record (read_committed) in topic order, with its kind as `type`."""
    found = []
    for message in read_all(env, "scores"):
        kind = dict(message.headers())["leadscore-type"].decode()
        found.append({**decode_output(kind, message.value()), "type": kind})
    return found


def states(env: Env) -> dict[ProfileKey, LeadState]:
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    leads = [ProfileKey("lead", f"L{lead}") for lead in range(LEADS)]
    found = {p: s.state for p, s in store.load(leads).items()}
    missing = [p.id for p, s in found.items() if s is None]
    assert not missing, f"{len(missing)} leads have no state, e.g. {missing[:5]}"
    return {p: s for p, s in found.items() if s is not None}


def figures(profile: ProfileKey, state: LeadState) -> Figures:
    """What a lead's state says, as `leadscore inspect --json` explains it, less what
    depends on the path the lead took (stored stage and its time, published figures,
    recent changes, redelivery memory)."""
    e = explanation(profile, state, model())
    return {
        "total": e.total,
        "fit": e.fit,
        "engagement": e.engagement,
        "engagement_decaying": e.decaying,
        "engagement_fixed": e.fixed,
        "engagement_cap": e.cap,
        "grade": e.grade,
        "stage": e.stage,
        "kept_stage": e.kept_stage,
        "fit_rules": dict(e.fit_rules),
        "contributions": {c.rule: (c.earned, c.worth) for c in e.contributions},
        "categories": {
            c.name: (c.value, c.level, c.decaying, c.fixed, c.cap) for c in e.categories if c.scored
        },
        "category_contributions": {
            (c.name, r.rule): (r.earned, r.worth) for c in e.categories for r in c.contributions
        },
        "tags": e.tags,
        "counts": dict(e.counts),
        "fired": dict(e.fired),
        "visits": e.visits,
        "attributes": e.attributes,
        "consent": e.consent,
        "speed_to_lead": (e.speed_to_lead_ms, e.first_request_at, e.first_response_at),
        "clocks": (e.as_of, e.first_seen, e.last_activity, e.events),
    }


def same(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 (relative, or absolute near zero), in any nesting."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def differences(
    found: dict[ProfileKey, Figures], expected: dict[ProfileKey, Figures], what: str
) -> list[str]:
    """Where a lead's figures in `found` and in `expected` disagree."""
    if found.keys() != expected.keys():
        return [f"other leads than {what}: {sorted(p.id for p in found.keys() ^ expected.keys())}"]
    problems = []
    for profile, mine in found.items():
        theirs = expected[profile]
        if not same(mine, theirs):
            keys = [k for k in mine if not same(mine[k], theirs[k])]
            problems.append(
                f"{profile.id} differs from {what} (here, there): "
                + ", ".join(f"{k} {mine[k]!r}, {theirs[k]!r}" for k in keys)
            )
    return problems


def output_problems(
    published: list[dict[str, Any]],
    final: dict[ProfileKey, Figures],
    states: dict[ProfileKey, LeadState],
) -> list[str]:
    """Per lead: no output lost, an id published again is the same record, and the last
    record carries the final state (`final`, the figures of `states`)."""
    problems = []
    by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
    first: dict[str, dict[str, Any]] = {}
    for output in published:
        output_id = str(output["event_id"])
        again = first.setdefault(output_id, output)
        if again is not output and _record(again) != _record(output):
            problems.append(f"{output_id} published twice, unlike: {again}, {output}")
        by_lead[str(output["lead_id"])].append(output)
    if by_lead.keys() != {p.id for p in final}:
        problems.append(f"outputs of other leads: {by_lead.keys() ^ {p.id for p in final}}")
    for profile, figures_final in final.items():
        records = by_lead[profile.id]
        if not records:
            continue
        if lost := _lost(records, states[profile]):
            problems.append(f"{profile.id}: {lost}; its outputs: {_listed(records)}")
        last = records[-1]
        consent = figures_final["consent"]
        carried = {
            "type": last["type"],
            "total": round(last["total"], 1),
            "grade": last.get("grade"),
            "stage": last.get("stage"),
            "contact_allowed": last.get("contact_allowed"),
            "tags": tuple(last.get("tags", ())),
            "speed_to_lead_ms": last.get("speed_to_lead_ms"),
            "categories": {
                c["name"]: (round(c["value"], 1), c["level"]) for c in last.get("categories", ())
            },
        }
        now = {
            "type": "score_changed",
            "total": round(figures_final["total"], 1),
            "grade": figures_final["grade"],
            "stage": figures_final["stage"],
            "contact_allowed": consent[0] if consent else model().contact_allowed_by_default,
            "tags": figures_final["tags"],
            "speed_to_lead_ms": figures_final["speed_to_lead"][0],
            "categories": {
                name: (round(value, 1), level)
                for name, (value, level, *_parts) in figures_final["categories"].items()
            },
        }
        if carried != now:
            problems.append(
                f"{profile.id}: the last output says {carried}, the state {now}; its "
                f"outputs: {_listed(records)}"
            )
    return problems


def _lost(records: list[dict[str, Any]], state: LeadState) -> str | None:
    """What shows that an output of the lead was never published, whatever the order of
    the records (None: nothing). The lead's ScoreChanged, in the order the worker made
    them, run from 0 to the total it published last, each from the total of the one
    before; its StageTransitioned from null to its stored stage, each from the stage the
    one before went to. So the distinct records' `previous_total`s and that last total
    are 0 and their `total`s, and the same for the stages: an output missing breaks
    that (unless another carries the very same figures)."""
    distinct = list({str(o["event_id"]): o for o in records}.values())
    scores = [o for o in distinct if o["type"] == "score_changed"]
    stages = [o for o in distinct if o["type"] == "stage_transitioned"]
    starts = Counter([o["previous_total"] for o in scores] + [state.published_total])
    ends = Counter([0.0] + [o["total"] for o in scores])
    if starts != ends:
        return f"ScoreChanged from {starts - ends} are missing, or to {ends - starts}"
    starts = Counter([o["from_stage"] for o in stages] + [state.stage])
    ends = Counter([None] + [o["to_stage"] for o in stages])
    if starts != ends:
        return f"StageTransitioned to {starts - ends} are missing, or from {ends - starts}"
    return None


def out_of_order(published: list[dict[str, Any]]) -> set[str]:
    """The leads whose outputs first appear out of the order the worker made them in: a
    ScoreChanged not from the total of the one before it on the topic (DESIGN §3 promises
    only that the last record of a lead carries its current state)."""
    totals: dict[str, float] = {}
    seen: set[str] = set()
    leads = set()
    for output in published:
        if output["type"] != "score_changed" or output["event_id"] in seen:
            continue
        seen.add(output["event_id"])
        lead = str(output["lead_id"])
        if output["previous_total"] != totals.get(lead, 0.0):
            leads.add(lead)
        totals[lead] = output["total"]
    return leads


def _listed(records: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    """A lead's records, short: id, cause, as_of, and totals or stages."""
    return [
        (
            str(o["event_id"])[:8],
            o["cause_event_id"],
            o["as_of"],
            *(
                (o["previous_total"], o["total"], o["stage"])
                if o["type"] == "score_changed"
                else (o["from_stage"], o["to_stage"])
            ),
        )
        for o in records
    ]


def _record(output: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in output.items() if k != "emitted_at"}


class Reference(NamedTuple):
    final: dict[ProfileKey, Figures]
    outputs: int


@pytest.fixture(scope="module")
def reference(services: Services) -> Reference:
    """An uninterrupted run over the same workload, checked against the pure core."""
    with isolated_env(services) as env:
        ends = load(env)
        worker = env.start_worker(model=model(), clock_speed=0, clock_start_ms=CLOCK)
        wait_until(
            lambda: done(env, ends) == sum(ends.values()) and schedule_drained(env, CLOCK),
            timeout_s=300,
            what="the reference run",
        )
        worker.stop()
        found = states(env)
        final = {p: figures(p, s) for p, s in found.items()}
        _ids, pure = pure_outcome(workload(), CLOCK, model())
        in_order = {p: figures(p, s) for p, s in pure.items() if isinstance(s, LeadState)}
        published = outputs(env)
        problems = [
            *differences(final, in_order, "the pure core's fold in event-time order"),
            *output_problems(published, final, found),
        ]
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:10])
        return Reference(final, len(published))


@pytest.mark.parametrize(
    ("guarantee", "redis_kind"),
    [
        ("at-least-once", "standalone"),
        ("exactly-once", "standalone"),
        # the write protocol is the same in both guarantees: one run on a Cluster suffices
        ("at-least-once", "cluster"),
    ],
)
def test_sigkill_at_random_moments(
    services: Services,
    reference: Reference,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    guarantee: str,
    redis_kind: str,
) -> None:
    if guarantee == "exactly-once" and broker_kind(request.config) == "tansu":
        pytest.skip("read_committed consumers of Tansu also see aborted transactions")
    with isolated_env(services, cluster_url=cluster_url(request, redis_kind)) as env:
        _crash_and_recover(env, reference, tmp_path, guarantee)


def _crash_and_recover(env: Env, reference: Reference, tmp_path: Path, guarantee: str) -> None:
    ends = load(env)
    total = sum(ends.values())
    variables = worker_environment(
        env,
        processing_guarantee=guarantee,
        transactional_id=f"{env.prefix}-tx",
        group_instance_id="crash-test-worker",
        batch_size="20",
        log_level="WARNING",
        clock_speed="0",
        clock_start=str(CLOCK),
        model=str(MODEL),
    )
    rng = random.Random(5)
    log = (tmp_path / "worker.log").open("w")

    # a kill counts when that run committed some work and left some: it hit mid-stream
    kills_mid_work = attempts = progress = 0
    recoveries = []  # seconds from starting a worker process to its first commit
    while kills_mid_work < KILLS and progress < total:
        attempts += 1
        assert attempts <= 3 * KILLS, f"only {kills_mid_work} of {attempts} kills mid-stream"
        time.sleep(0.5)  # a commit the killed process sent may still land
        previous, recovered = done(env, ends), False
        started = time.monotonic()
        process = worker_process(variables, log)
        # a kill at a random moment: mostly after the restart's first commit (mid-work,
        # whatever the worker's speed), sometimes while it is still starting or recovering
        early = rng.random() < 0.2
        kill_at = started + rng.uniform(0.0, 1.0) if early else started + 60
        while time.monotonic() < kill_at:
            if not recovered and done(env, ends) > previous:
                recoveries.append(time.monotonic() - started)
                recovered = True
                if not early:
                    kill_at = time.monotonic() + rng.uniform(0.0, 0.6)
            time.sleep(0.05)
        process.kill()
        process.wait()
        progress = done(env, ends)
        kills_mid_work += previous < progress < total
    assert kills_mid_work >= KILLS, f"only {kills_mid_work} kills landed mid-work"

    process = worker_process(variables, log)
    try:
        wait_until(
            lambda: done(env, ends) == total and schedule_drained(env, CLOCK),
            timeout_s=300,
            what="the final run",
        )
    finally:
        process.terminate()
        process.wait(30)

    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert_counted_once(store, [Sent(RECORD_TYPES[kind], value) for kind, _, value in workload()])
    found = states(env)
    final = {p: figures(p, s) for p, s in found.items()}
    published = outputs(env)
    problems = [
        *differences(final, reference.final, "the uninterrupted run"),
        *output_problems(published, final, found),
    ]
    ids = [str(o["event_id"]) for o in published]
    resent = len(ids) - len(set(ids))
    if guarantee == "exactly-once":
        # outputs of time-driven changes are at-least-once even here: a kill after their
        # transaction committed and before they were forgotten sends them again
        timed = {
            str(o["event_id"]) for o in published if str(o["cause_event_id"]).startswith("time:")
        }
        duplicates = [i for i, n in Counter(ids).items() if n > 1 and i not in timed]
        if duplicates:
            problems.append(f"{len(duplicates)} outputs seen twice by read_committed")
    if problems:  # for a post-mortem: what the topic holds, in order
        (tmp_path / "outputs.txt").write_text("\n".join(map(repr, published)))
    assert not problems, (
        f"{len(problems)} problems (event times from START = {START}; outputs in "
        f"{tmp_path}; {len(out_of_order(published))} leads' out of order):\n"
        + "\n".join(problems[:10])
    )
    recoveries.sort()
    print(
        f"\n{guarantee}: {kills_mid_work} kills mid-stream in {attempts} runs, "
        f"{len(set(ids)):,} outputs ({reference.outputs:,} uninterrupted; {resent:,} "
        f"published again; {len(out_of_order(published))} leads' out of order); restart "
        f"to first commit min {recoveries[0]:.2f} s, median "
        f"{recoveries[len(recoveries) // 2]:.2f} s"
    )
