"""Event-time alignment of input partitions (kafka/alignment.py): which buffered record
goes next. The logic alone; tests/integration/test_alignment.py shows it on a broker."""

from __future__ import annotations

from leadscore.kafka.alignment import Alignment

CLICKS, CALLS, FORMS = ("leads.clicks", 0), ("leads.calls", 0), ("leads.forms", 0)


def aligned(idle_s: float = 0.5, **records: list[int]) -> Alignment[str]:
    """Records named `<topic><time>`, buffered per partition (by topic kind)."""
    alignment: Alignment[str] = Alignment(idle_s)
    for kind, times in records.items():
        for t in times:
            alignment.add((f"leads.{kind}", 0), t, f"{kind}{t}")
    return alignment


def test_records_are_taken_in_timestamp_order_across_partitions() -> None:
    a = aligned(clicks=[1, 2, 5, 9], calls=[3, 4, 8], forms=[6, 7])
    assert a.take(100, more=set(), now=0.0) == [
        "clicks1",
        "clicks2",
        "calls3",
        "calls4",
        "clicks5",
        "forms6",
        "forms7",
        "calls8",
        "clicks9",
    ]
    assert len(a) == 0


def test_a_batch_takes_at_most_the_limit_and_the_rest_comes_next() -> None:
    a = aligned(clicks=[1, 3, 5], calls=[2, 4, 6])
    assert a.take(4, more=set(), now=0.0) == ["clicks1", "calls2", "clicks3", "calls4"]
    assert a.take(4, more=set(), now=0.0) == ["clicks5", "calls6"]


def test_a_partition_with_more_to_read_holds_the_others_back_at_its_time() -> None:
    a = aligned(clicks=[1, 2, 10, 11], calls=[3])
    # calls has more records than fetched: nothing later than its time (3) goes
    assert a.take(100, more={CALLS}, now=0.0) == ["clicks1", "clicks2", "calls3"]
    assert a.wait_s({CALLS}, now=0.1) == 0.4
    assert a.take(100, more={CALLS}, now=0.1) == []
    a.add(CALLS, 12, "calls12")  # fetched: the others go on
    assert a.take(100, more=set(), now=0.2) == ["clicks10", "clicks11", "calls12"]


def test_a_partition_not_heard_from_yet_holds_everything_back() -> None:
    a = aligned(clicks=[1, 2])
    assert a.wait_s({CALLS}, now=0.0) == 0.5
    assert a.take(100, more={CALLS}, now=0.0) == []


def test_the_wait_is_bounded_then_the_others_go_on_without_it() -> None:
    a = aligned(idle_s=0.5, clicks=[1], calls=[2])
    assert a.take(100, more={CALLS}, now=0.0) == ["clicks1", "calls2"]
    a.add(CLICKS, 5, "clicks5")
    a.add(CLICKS, 6, "clicks6")
    assert a.take(100, more={CALLS}, now=0.3) == []  # waited for since 0.0
    assert a.wait_s({CALLS}, now=0.3) == 0.5 - 0.3
    assert a.take(1, more={CALLS}, now=0.5) == ["clicks5"]  # the wait ran out
    assert a.wait_s({CALLS}, now=0.6) is None  # and is not started again while it is empty
    assert a.take(100, more={CALLS}, now=0.6) == ["clicks6"]
    a.add(CALLS, 7, "calls7")  # once it has records, it is waited for afresh when it runs out
    a.add(CLICKS, 9, "clicks9")
    assert a.take(100, more={CALLS}, now=0.7) == ["calls7"]
    assert a.wait_s({CALLS}, now=0.7) == 0.5


def test_caught_up_partitions_hold_nothing_back() -> None:
    a = aligned(clicks=[1, 2, 10])
    assert a.wait_s(set(), now=0.0) is None
    assert a.take(100, more=set(), now=0.0) == ["clicks1", "clicks2", "clicks10"]


def test_without_waiting_the_buffered_records_are_still_merged() -> None:
    a = aligned(idle_s=0.0, clicks=[1, 4], calls=[2])
    assert a.wait_s({FORMS}, now=0.0) is None
    assert a.take(100, more={FORMS, CALLS}, now=0.0) == ["clicks1", "calls2", "clicks4"]


def test_the_order_within_a_partition_never_changes() -> None:
    a: Alignment[str] = Alignment(0.5)
    a.add(CLICKS, 5, "a")
    a.add(CLICKS, 3, "b")  # older than its predecessor: takes the partition's time, 5
    a.add(CLICKS, None, "c")  # no timestamp: the same
    a.add(CALLS, 4, "d")
    assert a.take(100, more=set(), now=0.0) == ["d", "a", "b", "c"]


def test_trimmed_records_are_returned_in_order_and_the_time_steps_back() -> None:
    a = aligned(clicks=[1, 2, 3, 4], calls=[5])
    assert a.trim(CLICKS, 2) == ["clicks3", "clicks4"]
    assert a.first(CLICKS) == "clicks1"
    assert a.count(CLICKS) == 2
    # fetched again later: the partition's time is that of the records kept
    assert a.take(100, more={CLICKS}, now=0.0) == ["clicks1", "clicks2"]


def test_partitions_that_leave_are_forgotten() -> None:
    a = aligned(clicks=[1, 2], calls=[3])
    a.forget([CLICKS])
    assert a.buffered(CLICKS) == []
    assert a.take(100, more=set(), now=0.0) == ["calls3"]


def test_a_record_dated_far_ahead_does_not_push_its_partition_behind_the_others() -> None:
    """A partition is ordered by its next record's own timestamp: after one record with a
    far-future timestamp (a clock or unit mistake), its ordinary records still come in
    their turn, not after every other partition's (nor held back by their backlog)."""
    a = aligned(clicks=[10**13])
    assert a.take(10, more=set(), now=0.0) == ["clicks10000000000000"]
    for t in (1000, 1001):
        a.add(CLICKS, t, f"clicks{t}")
    for t in (2000, 2001):
        a.add(CALLS, t, f"calls{t}")
    assert a.take(10, more={CLICKS, CALLS}, now=0.1) == [
        "clicks1000",
        "clicks1001",
        "calls2000",
        "calls2001",
    ]
