"""SIGKILL at random moments, in both delivery modes: the state and the outputs equal an
uninterrupted run's (50,000 events over 5,000 leads, at least ten kills mid-stream).

Each lead's events come from one input topic here, so that the order in which a lead's
events are folded, and therefore every intermediate output, is the same in every run. The
workers' clocks stand still a minute after the last event, so that both runs apply the
same time-driven changes (those due by then) and end in the same state.
"""

from __future__ import annotations

import functools
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from leadscore.codec import decode_output
from leadscore.events import ProfileKey
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    Env,
    Services,
    broker_kind,
    isolated_env,
    read_all,
    schedule_drained,
    wait_until,
    worker_environment,
    worker_process,
)
from tests.integration.workloads import one_topic_per_lead
from tests.records import now_ms

LEADS = 5_000
EVENTS = 50_000
KILLS = 10
SPACING_MS = 50

START = now_ms() - 2 * 3_600_000  # every event in the past, SPACING_MS apart
CLOCK = START + EVENTS * SPACING_MS + 60_000


@functools.cache
def workload(seed: int = 11) -> list[tuple[str, str, bytes]]:
    """(topic kind, lead, value): every lead on one topic, event times increasing; the
    same bytes for the reference run and the runs under test."""
    return one_topic_per_lead(
        events=EVENTS, leads=LEADS, prefix="L", start=START, spacing_ms=SPACING_MS, seed=seed
    )


def load(env: Env) -> dict[str, int]:
    events = workload()
    env.produce([(env.topic(kind), lead.encode(), value) for kind, lead, value in events])
    return {env.topic(kind): n for kind, n in Counter(k for k, _, _ in events).items()}


def done(env: Env, ends: dict[str, int]) -> int:
    committed = env.committed()
    return sum(max(committed.get(topic, 0), 0) for topic in ends)


def outputs(env: Env) -> list[dict[str, object]]:
    return [
        decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())
        for m in read_all(env, "scores")
    ]


def states(env: Env) -> dict[ProfileKey, object]:
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    leads = [ProfileKey("lead", f"L{lead}") for lead in range(LEADS)]
    return {p: s.state for p, s in store.load(leads).items()}


@pytest.fixture(scope="module")
def reference(services: Services) -> tuple[set[str], dict[ProfileKey, object]]:
    """An uninterrupted run over the same workload."""
    with isolated_env(services) as env:
        ends = load(env)
        worker = env.start_worker(clock_speed=0, clock_start_ms=CLOCK)
        wait_until(
            lambda: done(env, ends) == sum(ends.values()) and schedule_drained(env, CLOCK),
            timeout_s=300,
            what="the reference run",
        )
        worker.stop()
        return {str(o["event_id"]) for o in outputs(env)}, states(env)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_sigkill_at_random_moments(
    env: Env,
    reference: tuple[set[str], dict[ProfileKey, object]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    guarantee: str,
) -> None:
    if guarantee == "exactly-once" and broker_kind(request.config) == "tansu":
        pytest.skip("read_committed consumers of Tansu also see aborted transactions")
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

    published = outputs(env)
    ids = [str(o["event_id"]) for o in published]
    reference_ids, reference_states = reference
    assert set(ids) == reference_ids  # every output of the reference run, nothing else
    resent = len(ids) - len(set(ids))
    if guarantee == "exactly-once":
        # outputs of time-driven changes are at-least-once even here: a kill after their
        # transaction committed and before they were forgotten sends them again
        timed = {
            str(o["event_id"]) for o in published if str(o["cause_event_id"]).startswith("time:")
        }
        duplicates = [i for i, n in Counter(ids).items() if n > 1 and i not in timed]
        assert not duplicates, f"{len(duplicates)} outputs seen twice by read_committed"
    assert states(env) == reference_states
    recoveries.sort()
    print(
        f"\n{guarantee}: {kills_mid_work} kills mid-stream in {attempts} runs, "
        f"{len(ids):,} outputs ({resent:,} published again); restart to first commit "
        f"min {recoveries[0]:.2f} s, median {recoveries[len(recoveries) // 2]:.2f} s"
    )
