"""The store on a real Redis: a write is conditional on the version read, keeps or
restarts the time to live, sets the schedule entry; outputs are kept per partition until
forgotten; a profile key holding anything but the current layout is an error."""

from __future__ import annotations

import pytest

from leadscore.codec import InputDecoder
from leadscore.errors import StateRefused
from leadscore.events import ProfileKey
from leadscore.scoring.score import score
from leadscore.state import keys
from leadscore.state.encoding import StoredOutput
from leadscore.state.store import Due, StateStore, Stored, Write, kept_field
from tests.integration.conftest import Env
from tests.models import simple_model
from tests.records import encoded, now_ms

LEAD = ProfileKey("lead", "old-1")
VISITS = ("t.visits", 0)


def test_a_write_is_conditional_on_the_version_read_and_keeps_the_ttl_unless_refreshed(
    env: Env,
) -> None:
    event = InputDecoder("Visit", max_clock_skew_ms=300_000)(
        encoded("Visit", LEAD.id, occurred_at=now_ms())
    )
    state = score(LEAD, None, [event], simple_model()).state
    key = keys.profile_key(env.prefix, LEAD)
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=3_600_000)
    assert store.read(LEAD) == Stored()
    first = Write(LEAD, Stored(), state, {VISITS: 41})
    assert store.save([first]) == []
    found = store.read(LEAD)
    assert found == first.after()
    assert (found.version, found.watermarks) == (1, {VISITS: 41})
    assert 0 < env.redis.pttl(key) <= 3_600_000
    # a writer that read nothing (version 0) is in conflict with it
    assert store.save([Write(LEAD, Stored(), state, {VISITS: 42})]) == [LEAD]

    env.redis.pexpire(key, 60_000)
    write = Write(LEAD, found, state, {VISITS: 42}, due=Due(LEAD, VISITS, 123), refresh_ttl=False)
    assert store.save([write]) == []
    assert 0 < env.redis.pttl(key) <= 60_000  # the TTL it had
    again = store.read(LEAD)
    assert again == write.after()
    assert (again.version, again.watermarks, again.schedule) == (2, {VISITS: 42}, VISITS)
    assert env.redis.zscore(keys.schedule_key(env.prefix, *VISITS), "lead:old-1") == 123


def test_a_profile_stored_as_a_hash_is_an_error(env: Env) -> None:
    """The hash layout of an unreleased version is not read (nor taken for no profile):
    retrying would not help, so the error stops the worker."""
    env.redis.hset(keys.profile_key(env.prefix, LEAD), mapping={"v": 7})
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    with pytest.raises(StateRefused, match="GET: WRONGTYPE"):
        store.read(LEAD)


def test_outputs_are_kept_by_partition_under_the_write_token_until_forgotten(env: Env) -> None:
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
    # a write in conflict still keeps its outputs (they are written first), under a token
    # the profile does not hold: a replay never reads them back
    stale = Write(LEAD, Stored(version=3), state, {VISITS: 6}, {VISITS: outputs}, token=1)
    assert store.save([stale]) == [LEAD]
    assert store.kept([VISITS]) == {(VISITS, kept_field(1)): outputs}
    assert store.read(LEAD) == Stored()
    writes = [
        Write(LEAD, Stored(), state, {VISITS: 6}, {VISITS: outputs[:2]}, token=2),
        Write(other, Stored(), state, {VISITS: 6}, {VISITS: outputs[2:]}, token=2),
    ]
    assert store.save(writes, forget=[(VISITS, kept_field(1))]) == []
    assert store.kept([VISITS]) == {(VISITS, kept_field(2)): outputs}  # one field per call
    assert store.read(LEAD).tokens == store.read(other).tokens == {VISITS: 2}
    assert store.save([], (), forget=[(VISITS, kept_field(2))]) == []
    assert store.kept([VISITS]) == {}
    with pytest.raises(ValueError, match="one token"):
        store.save([writes[0], Write(other, Stored(), state, {}, {VISITS: outputs}, token=3)])


def test_the_progress_marker_only_grows(env: Env) -> None:
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert store.progress([VISITS]) == {VISITS: None}
    store.save([], progress={VISITS: 12_345_678_901_234_567})
    store.save([], progress={VISITS: 7})  # a worker finishing an older batch
    assert store.progress([VISITS]) == {VISITS: 12_345_678_901_234_567}


def test_an_anonymous_profile_expires_sooner_than_a_lead(env: Env) -> None:
    event = InputDecoder("Visit", max_clock_skew_ms=300_000)(
        encoded("Visit", LEAD.id, occurred_at=now_ms())
    )
    state = score(LEAD, None, [event], simple_model()).state
    anonymous = ProfileKey("anon", "a-1")
    store = StateStore(
        env.redis, namespace=env.prefix, ttl_ms=180 * 86_400_000, anonymous_ttl_ms=86_400_000
    )
    store.save([Write(p, Stored(), state, {VISITS: 1}, token=1) for p in (LEAD, anonymous)])
    lead_ttl = env.redis.pttl(keys.profile_key(env.prefix, LEAD))
    anonymous_ttl = env.redis.pttl(keys.profile_key(env.prefix, anonymous))
    assert 179 * 86_400_000 < lead_ttl <= 180 * 86_400_000
    assert 0 < anonymous_ttl <= 86_400_000
