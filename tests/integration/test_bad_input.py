"""Thousands of malformed messages (ten kinds) among valid ones: each one is dead-lettered with its
reason, every valid event is counted once, and the worker never stops."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from leadscore.codec import encode_record
from leadscore.simulate import Traffic, call_with_unknown_direction
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    RECORD_TYPES,
    Env,
    assert_counted_once,
    read_all,
    wait_until,
)
from tests.records import now_ms, record

MALFORMED = 5000
VALID = 2000


def malformed(rng: random.Random, i: int) -> tuple[str, bytes, str]:
    """(record type of the topic, bytes, expected reason)."""
    kind = rng.choice(
        [
            "random",
            "truncated",
            "wrong-type",
            "no-id",
            "huge",
            "future",
            "negative-time",
            "negative-duration",
            "empty",
        ]
    )
    lead = f"bad-{i % 50}"
    if kind == "random":
        return "Visit", rng.randbytes(rng.randint(1, 200)), "undecodable"
    if kind == "truncated":
        full = encode_record("Call", record("Call", lead))
        return "Call", full[: rng.randint(1, len(full) - 1)], "undecodable"
    if kind == "wrong-type":  # a Visit sent to the calls topic
        return "Call", encode_record("Visit", record("Visit", lead)), "undecodable"
    if kind == "empty":
        return "Click", b"", "undecodable"
    if kind == "unknown-enum":  # a Call whose direction is a symbol the schema lacks
        call = {**record("Call", lead), "direction": "VIDEO"}
        return "Call", call_with_unknown_direction(call), "undecodable"
    fields: dict[str, Any] = {
        "no-id": {"lead_id": None, "anonymous_id": None},
        "huge": {"lead_id": "x" * rng.randint(300, 20_000)},
        "future": {"occurred_at": now_ms() + rng.randint(3_600_000, 10**11)},
        "negative-time": {"occurred_at": -rng.randint(1, 10**12)},
        "negative-duration": {"duration_ms": -rng.randint(1, 10**6)},
    }[kind]
    reason = {
        "no-id": "missing-id",
        "huge": "invalid-field",
        "future": "future-timestamp",
        "negative-time": "invalid-timestamp",
        "negative-duration": "invalid-field",
    }[kind]
    return "Visit", encode_record("Visit", record("Visit", **{"lead_id": lead, **fields})), reason


def test_malformed_messages_go_to_the_dead_letter_topic_and_nothing_else_is_lost(
    env: Env,
) -> None:
    rng = random.Random(9)
    traffic = Traffic(seed=9, leads=200, late_rate=0, malformed_rate=0, duplicate_rate=0)
    valid = traffic.next(VALID)
    messages: list[tuple[str, bytes, str | None]] = [(m.record_type, m.value, None) for m in valid]
    for i in range(MALFORMED):
        messages.insert(rng.randrange(len(messages) + 1), malformed(rng, i))
    topics = {rt: env.topic(kind) for kind, rt in RECORD_TYPES.items()}
    env.produce([(topics[rt], b"k", value) for rt, value, _ in messages])
    expected_reasons: dict[tuple[str, int], str] = {}
    offsets: Counter[str] = Counter()
    for rt, _, reason in messages:
        if reason is not None:
            expected_reasons[(topics[rt], offsets[rt])] = reason
        offsets[rt] += 1

    worker = env.start_worker()
    wait_until(
        lambda: all(env.committed()[topics[rt]] == n for rt, n in offsets.items()),
        timeout_s=180,
        what="every message committed",
    )
    assert worker.thread.is_alive()
    worker.stop()

    dead = read_all(env, "dlq")
    got = {}
    for message in dead:
        headers = dict(message.headers())
        source = (
            headers["leadscore-source-topic"].decode(),
            int(headers["leadscore-source-offset"]),
        )
        got[source] = headers["leadscore-error-reason"].decode()
    assert len(dead) == MALFORMED
    assert got == expected_reasons

    assert_counted_once(StateStore(env.redis, namespace=env.prefix, ttl_ms=0), valid)
