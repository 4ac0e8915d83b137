"""The worker end to end on a real broker and a real Redis."""

from __future__ import annotations

import fastavro
import pytest

from leadscore.codec import schema
from leadscore.codec.avro import encode_record
from leadscore.events import ProfileKey
from leadscore.state import keys
from leadscore.state.store import StateStore
from tests.integration.conftest import Env, wait_until
from tests.records import encoded, now_ms, record


def decode_output(message: object) -> tuple[str, dict[str, object]]:
    import io

    headers = dict(message.headers())  # type: ignore[attr-defined]
    kind = headers["leadscore-type"].decode()
    record_type = "ScoreChanged" if kind == "score_changed" else "StageTransitioned"
    value = fastavro.schemaless_reader(
        io.BytesIO(message.value()),
        schema(record_type),
        None,  # type: ignore[attr-defined]
    )
    return kind, value


def stored(env: Env, lead: str) -> object:
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    return store.read(ProfileKey("lead", lead))


def test_events_in_outputs_out(any_env: Env) -> None:
    env = any_env
    t = now_ms() - 60_000
    env.start_worker()
    # one after the other: a worker reading both topics at once may take the form first
    # (no order between topics), and the visit, a second older, then changes no stage
    env.produce(
        [(env.topic("visits"), b"L1", encoded("Visit", "L1", event_id="v1", occurred_at=t))]
    )
    assert len(env.consume("scores", 2)) == 2
    env.produce(
        [
            (
                env.topic("forms"),
                b"L1",
                encoded("FormSubmission", "L1", event_id="f1", occurred_at=t + 1000),
            )
        ]
    )
    messages = env.consume("scores", 4)
    outputs = [decode_output(m) for m in messages]
    assert all(m.key() == b"L1" for m in messages)
    kinds = [k for k, _ in outputs]
    assert kinds.count("stage_transitioned") == 2
    assert kinds.count("score_changed") == 2
    first_transition = next(v for k, v in outputs if k == "stage_transitioned")
    assert first_transition["from_stage"] is None
    assert first_transition["to_stage"] == "visitor"
    assert first_transition["reason"] == "first_event"
    assert first_transition["conditions"] == []  # visitor, the first stage, has none
    assert str(first_transition["explanation"]).startswith("no conditions")
    to_contact = [v for k, v in outputs if k == "stage_transitioned"][-1]
    # why: the contact stage's condition with the lead's total (see last_score below)
    assert to_contact["conditions"] == ["total 21 >= 15"]
    assert to_contact["explanation"] == "total 21 >= 15"
    last_score = [v for k, v in outputs if k == "score_changed"][-1]
    # visit 1 point (decayed over one second) + form 15 + fit 5 for the company field
    assert last_score["total"] == pytest.approx(21.0, abs=1e-3)
    assert last_score["stage"] == "contact"
    assert last_score["lead_id"] == "L1"
    assert last_score["contact_allowed"] is True
    assert last_score["cause_event_id"] == "f1"
    assert last_score["as_of"] == t + 1000
    assert sum(r["points"] for r in last_score["reasons"]) == pytest.approx(last_score["delta"])
    assert last_score["model_version"] == "test-1"
    wait_until(lambda: env.committed()[env.topic("forms")] == 1, what="offsets committed")


def test_garbage_goes_to_the_dead_letter_topic_and_the_next_message_is_processed(
    env: Env,
) -> None:
    future = now_ms() + 3_600_000
    env.produce(
        [
            (env.topic("clicks"), b"k", b"\xff\x00garbage"),
            (env.topic("clicks"), None, encoded("Click", None, anonymous_id=None)),
            (env.topic("clicks"), b"L2", encoded("Click", "L2", occurred_at=future)),
            (env.topic("visits"), b"L2", encoded("Visit", "L2", event_id="good")),
        ]
    )
    env.start_worker()
    dead = env.consume("dlq", 3)
    reasons = []
    for message in dead:
        headers = dict(message.headers())
        reasons.append(headers["leadscore-error-reason"].decode())
        assert headers["leadscore-source-topic"].decode() == env.topic("clicks")
        assert headers["leadscore-source-partition"] == b"0"
        assert headers["leadscore-error-message"]
    assert reasons == ["undecodable", "missing-id", "future-timestamp"]
    assert dead[0].value() == b"\xff\x00garbage"
    assert dead[0].key() == b"k"
    assert [dict(m.headers())["leadscore-source-offset"] for m in dead] == [b"0", b"1", b"2"]
    outputs = [decode_output(m) for m in env.consume("scores", 2)]
    assert {v["cause_event_id"] for _, v in outputs} == {"good"}


def test_a_redelivered_event_id_changes_nothing(env: Env) -> None:
    value = encoded("FormSubmission", "L3", event_id="dup")
    env.produce([(env.topic("forms"), b"L3", value)] * 3)
    env.produce([(env.topic("forms"), b"L3", encoded("FormSubmission", "L3", event_id="after"))])
    env.start_worker()
    wait_until(lambda: env.committed()[env.topic("forms")] == 4, what="offsets committed")
    outputs = [decode_output(m) for m in env.consume("scores", 10, timeout_s=3)]
    causes = [v["cause_event_id"] for _, v in outputs]
    # the first form: the first transition and a score; the copies: nothing; then "after"
    assert causes[:2] == ["dup", "dup"]
    assert set(causes[2:]) == {"after"}
    assert outputs[-1][1]["total"] == pytest.approx(35.0, abs=1e-3)
    assert stored(env, "L3").state.events == 2  # type: ignore[attr-defined]


def test_an_event_later_than_the_allowed_lateness_is_scored_and_counted_as_late(
    env: Env,
) -> None:
    day = 86_400_000
    now = now_ms()
    forms = [
        encoded("FormSubmission", "L9", event_id="new", occurred_at=now - day),
        encoded("FormSubmission", "L9", event_id="old", occurred_at=now - 9 * day),
    ]
    env.produce([(env.topic("forms"), b"L9", value) for value in forms])
    handle = env.start_worker()
    wait_until(lambda: env.committed()[env.topic("forms")] == 2, what="offsets committed")
    assert stored(env, "L9").state.events == 2  # type: ignore[attr-defined]
    assert handle.worker.metrics.events_late._value.get() == 1  # type: ignore[attr-defined]


def test_restart_from_committed_offsets_double_counts_nothing(env: Env) -> None:
    t = now_ms() - 10_000
    env.produce(
        [
            (
                env.topic("visits"),
                b"L4",
                encoded("Visit", "L4", event_id=f"v{i}", occurred_at=t + i),
            )
            for i in range(5)
        ]
    )
    first = env.start_worker()
    wait_until(lambda: env.committed()[env.topic("visits")] == 5, what="first commit")
    first.stop()
    before = stored(env, "L4")
    env.produce(
        [
            (
                env.topic("visits"),
                b"L4",
                encoded("Visit", "L4", event_id=f"w{i}", occurred_at=t + 10 + i),
            )
            for i in range(3)
        ]
    )
    second = env.start_worker()
    wait_until(lambda: env.committed()[env.topic("visits")] == 8, what="second commit")
    second.stop()
    after = stored(env, "L4")
    assert before.state.events == 5  # type: ignore[attr-defined]
    assert after.state.events == 8  # type: ignore[attr-defined]


def test_offsets_wait_for_the_commit_interval_and_are_committed_on_stop(env: Env) -> None:
    """Offsets of published batches are committed at most every commit interval (the
    first batch's at once), and all of them when the worker stops: nothing is replayed by
    the next worker."""
    visits = env.topic("visits")

    def produce(first: int, count: int) -> None:
        env.produce(
            [
                (visits, b"L6", encoded("Visit", "L6", event_id=f"v{i}", occurred_at=t + i))
                for i in range(first, first + count)
            ]
        )

    def events() -> int:
        profile = stored(env, "L6")
        return profile.state.events if profile.state else 0  # type: ignore[attr-defined]

    t = now_ms() - 10_000
    produce(0, 3)
    worker = env.start_worker(commit_interval_s=3600.0)
    wait_until(lambda: env.committed()[visits] == 3, what="the first batch committed")
    produce(3, 2)
    wait_until(lambda: events() == 5, what="the second batch written")
    assert env.committed()[visits] == 3  # published, not committed: the interval runs
    worker.stop()
    assert env.committed()[visits] == 5
    second = env.start_worker()
    produce(5, 1)
    wait_until(lambda: events() == 6, what="the next event written")
    second.stop()
    assert second.worker.metrics.events_skipped.labels("watermark")._value.get() == 0


def test_a_replay_from_the_beginning_changes_no_state(env: Env) -> None:
    env.produce(
        [(env.topic("calls"), b"L5", encoded("Call", "L5", event_id=f"c{i}")) for i in range(4)]
    )
    worker = env.start_worker()
    wait_until(lambda: env.committed()[env.topic("calls")] == 4, what="commit")
    worker.stop()
    before = stored(env, "L5")
    # a new group replays the topic from offset 0: the watermarks catch every message
    replay = env.start_worker(group_id=f"{env.prefix}-replay")
    skipped = replay.worker.metrics.events_skipped.labels("watermark")
    wait_until(lambda: skipped._value.get() == 4, what="replayed messages skipped")
    replay.stop()
    after = stored(env, "L5")
    assert after.version == before.version  # type: ignore[attr-defined]
    assert after.state == before.state  # type: ignore[attr-defined]


def test_encode_record_rejects_a_record_missing_a_field() -> None:
    bad = record("Click", "L6")
    del bad["url"]
    with pytest.raises(ValueError, match="url"):
        encode_record("Click", bad)


def test_inspect_explains_a_scored_lead(env: Env) -> None:
    from click.testing import CliRunner

    from leadscore.cli import main
    from tests.models import SIMPLE

    env.produce([(env.topic("forms"), b"L9", encoded("FormSubmission", "L9", event_id="f9"))])
    env.start_worker()
    wait_until(lambda: env.committed()[env.topic("forms")] == 1, what="the form scored")
    result = CliRunner().invoke(
        main,
        [
            "inspect",
            "L9",
            "--redis-url",
            env.services.redis_url,
            "--state-namespace",
            env.prefix,
            "--model",
            str(SIMPLE),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "total 20.0 = fit 5.0 + engagement 15.0" in result.output
    assert "+15.0  now    +15.0  decay    +0.0  form" in result.output
    assert "(cause f9)" in result.output
    assert "in stage contact because: total 20 >= 15" in result.output
    missing = CliRunner().invoke(
        main,
        [
            "inspect",
            "nobody",
            "--redis-url",
            env.services.redis_url,
            "--state-namespace",
            env.prefix,
        ],
    )
    assert missing.exit_code == 1
    assert "no state for lead 'nobody'" in missing.output


def test_an_anonymous_visitor_is_scored_but_stays_a_visitor_and_is_not_contacted(
    env: Env,
) -> None:
    """With --emit-anonymous its outputs are published, keyed by the anonymous id: the
    same form and call that make a lead a contact leave it a visitor, with no contact
    allowed, and its state expires after --anonymous-ttl."""
    t = now_ms() - 60_000
    form = {"fields": {"company": "X"}, "consent": {"marketing": True, "contact": True}}
    env.produce(
        [
            (
                env.topic("forms"),
                b"anon-7",
                encoded("FormSubmission", None, anonymous_id="anon-7", occurred_at=t, **form),
            ),
            (
                env.topic("forms"),
                b"L7",
                encoded("FormSubmission", "L7", occurred_at=t, **form),
            ),
        ]
    )
    env.start_worker(emit_anonymous=True)
    messages = env.consume("scores", 4)
    by_key: dict[bytes, list[tuple[str, dict[str, object]]]] = {}
    for m in messages:
        by_key.setdefault(m.key(), []).append(decode_output(m))
    anonymous, lead = by_key[b"anon-7"], by_key[b"L7"]
    assert [v["to_stage"] for k, v in anonymous if k == "stage_transitioned"] == ["visitor"]
    assert [v["to_stage"] for k, v in lead if k == "stage_transitioned"] == ["contact"]
    anonymous_score = next(v for k, v in anonymous if k == "score_changed")
    lead_score = next(v for k, v in lead if k == "score_changed")
    assert anonymous_score["total"] == lead_score["total"]  # scored all the same
    assert anonymous_score["lead_id"] is None
    assert anonymous_score["anonymous_id"] == "anon-7"
    assert anonymous_score["contact_allowed"] is False
    assert lead_score["contact_allowed"] is True
    ttl = env.redis.pttl(keys.profile_key(env.prefix, ProfileKey("anon", "anon-7")))
    assert 0 < ttl <= 30 * 86_400_000
