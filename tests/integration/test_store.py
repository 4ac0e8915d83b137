"""The store on a real Redis: profiles written by leadscore 0.1 (a hash per profile) are
read, and replaced by the current layout on their next write."""

from __future__ import annotations

from leadscore.codec import InputDecoder
from leadscore.events import ProfileKey
from leadscore.scoring.score import score
from leadscore.state import keys
from leadscore.state.encoding import StoredOutput, _encode_json, encode_outputs
from leadscore.state.store import Due, StateStore, Stored, Write
from tests.integration.conftest import Env
from tests.models import simple_model
from tests.records import encoded, now_ms

LEAD = ProfileKey("lead", "old-1")
VISITS = ("t.visits", 0)


def test_a_profile_in_the_old_hash_layout_is_read_and_converted_by_its_next_write(
    env: Env,
) -> None:
    event = InputDecoder("Visit", max_clock_skew_ms=300_000)(
        encoded("Visit", LEAD.id, occurred_at=now_ms())
    )
    state = score(LEAD, None, [event], simple_model()).state
    key = keys.profile_key(env.prefix, LEAD)
    kept = [StoredOutput(41, "score_changed", b"\x01\x02")]
    env.redis.hset(
        key,
        mapping={
            keys.VERSION_FIELD: 7,
            keys.STATE_FIELD: _encode_json(state),
            keys.watermark_field(*VISITS): 41,
            keys.outputs_field(*VISITS): encode_outputs(kept),
            keys.SCHEDULE_FIELD: keys.partition_value(*VISITS),
        },
    )
    env.redis.pexpire(key, 3_600_000)
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)

    found = store.read(LEAD)
    assert (found.version, found.state, found.watermarks, found.schedule) == (
        7,
        state,
        {VISITS: 41},
        VISITS,
    )
    # a writer that read nothing (version 0) is in conflict with it
    assert store.save([Write(LEAD, Stored(), state, {VISITS: 42})]) == [LEAD]

    write = Write(LEAD, found, state, {VISITS: 42}, due=Due(LEAD, VISITS, 123), refresh_ttl=False)
    assert store.save([write]) == []
    assert env.redis.type(key) == b"string"
    assert 0 < env.redis.pttl(key) <= 3_600_000  # the TTL it had
    again = store.read(LEAD)
    assert again == write.after()
    assert (again.version, again.watermarks) == (8, {VISITS: 42})
    assert env.redis.zscore(keys.schedule_key(env.prefix, *VISITS), "lead:old-1") == 123


def test_outputs_are_kept_by_partition_until_forgotten(env: Env) -> None:
    event = InputDecoder("Visit", max_clock_skew_ms=300_000)(
        encoded("Visit", LEAD.id, occurred_at=now_ms())
    )
    state = score(LEAD, None, [event], simple_model()).state
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    outputs = [
        StoredOutput(5, "stage_transitioned", b"a"),
        StoredOutput(5, "score_changed", b"b"),
        StoredOutput(6, "score_changed", b"c"),
    ]
    other = ProfileKey("lead", "old-2")
    # a write in conflict keeps nothing
    stale = Write(LEAD, Stored(version=3), state, {VISITS: 6}, {VISITS: outputs})
    assert store.save([stale], kept_field="w:1") == [LEAD]
    assert store.kept([VISITS]).outputs == {}
    writes = [
        Write(LEAD, Stored(), state, {VISITS: 6}, {VISITS: outputs[:2]}),
        Write(other, Stored(), state, {VISITS: 6}, {VISITS: outputs[2:]}),
    ]
    assert store.save(writes, kept_field="w:2") == []
    kept = store.kept([VISITS])
    assert kept.outputs == {(VISITS, 5): outputs[:2], (VISITS, 6): outputs[2:]}
    assert kept.fields == {(VISITS, "w:2"): 6}  # one field per call, up to offset 6
    assert store.save([], (), forget=[(VISITS, "w:2")]) == []
    assert store.kept([VISITS]).outputs == {}
