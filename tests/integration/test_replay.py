"""A crash after the state write but before the outputs went out loses no output."""

from __future__ import annotations

import pytest

from leadscore.codec import decode_output
from leadscore.events import ProfileKey
from leadscore.state.store import StateStore
from leadscore.worker import Worker, next_offsets
from tests.integration.conftest import Env, wait_until
from tests.models import simple_model
from tests.records import encoded


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_outputs_persisted_before_a_crash_are_published_on_replay(env: Env, guarantee: str) -> None:
    # totals stay clear of the stage thresholds: no time-driven change comes due soon
    form = {"fields": {}}
    env.produce(
        [
            (env.topic("forms"), b"R1", encoded("FormSubmission", "R1", event_id="f1", **form)),
            (env.topic("calls"), b"R2", encoded("Call", "R2", event_id="c1")),
            (env.topic("forms"), b"R1", encoded("FormSubmission", "R1", event_id="f2", **form)),
        ]
    )
    crashed = Worker(env.settings(guarantee=guarantee), simple_model())
    with crashed.connected():
        messages: list = []
        wait_until(
            lambda: bool(messages.extend(crashed.poll()) or len(messages) == 3), what="the batch"
        )
        events, _ = crashed.decode(messages)
        lost = crashed.score_and_persist(events, next_offsets(messages))
        # the process dies here: the state is written, nothing published or committed
    expected = [(o.record.key, decode_output(o.kind, o.record.value)["event_id"]) for o in lost]
    assert len(expected) == 5  # per lead the first transition and score; R1 a score more

    replay = env.start_worker(guarantee=guarantee)
    assert len(env.consume("scores", len(expected))) == len(expected)
    published = env.consume("scores", len(expected) + 1, timeout_s=3)
    ids = [
        (
            m.key(),
            decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())["event_id"],
        )
        for m in published
    ]
    # every one, once, with its original id, in order per lead (the replay may take the
    # leads' topics in separate batches)
    assert sorted(ids, key=lambda i: i[0]) == sorted(expected, key=lambda i: i[0])
    skipped = replay.worker.metrics.events_skipped.labels("watermark")._value.get()
    assert skipped == 3
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert store.read(ProfileKey("lead", "R1")).state.events == 2  # type: ignore[union-attr]
