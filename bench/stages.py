"""CPU per event of each step of the worker's batch pipeline, without Kafka or Redis.

Generates the standard workload (bench/workload.py), then times, per event, what the
worker does in process: decode and validate, score (per batch, grouped by profile, as
`ProfileUpdates.on_events` does), encode the outputs, encode and decode the states the
batch writes. Finds where the time goes before profiling the whole worker.

    python bench/stages.py --events 100000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workload import Generator, Workload

from leadscore.codec import InputDecoder, OutputEncoder
from leadscore.events import Event, ProfileKey
from leadscore.model import default_model
from leadscore.scoring.score import score
from leadscore.scoring.state import LeadState
from leadscore.scoring.timeline import next_change
from leadscore.state.encoding import decode_state, encode_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    gc.freeze()
    gc.disable()  # the worker collects garbage between batches only
    generator = Generator(Workload(events=args.events, leads=args.leads))
    start = int(time.time() * 1000) - args.events * 10
    messages = [generator.next(start + i * 10) for i in range(args.events)]
    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt, _, _ in messages[:2000]}
    for rt in ("Click", "Visit", "FormSubmission", "Call"):
        decoders.setdefault(rt, InputDecoder(rt, max_clock_skew_ms=300_000))
    model = default_model()
    encode = OutputEncoder()
    timings: dict[str, float] = defaultdict(float)
    states: dict[ProfileKey, LeadState] = {}
    outputs = writes = 0
    missed = 0.0

    for first in range(0, len(messages), args.batch_size):
        batch = messages[first : first + args.batch_size]
        t0 = time.perf_counter()
        events = [decoders[rt](value) for rt, _, value in batch]
        t1 = time.perf_counter()
        by_profile: dict[ProfileKey, list[Event]] = defaultdict(list)
        for event in events:
            by_profile[event.profile_key].append(event)
        results = {  # in place, as the worker folds into its cached copy
            p: score(p, states.get(p), evs, model, in_place=True) for p, evs in by_profile.items()
        }
        t2 = time.perf_counter()
        dues = [next_change(r.state, model) for r in results.values()]
        t3 = time.perf_counter()
        encoded = [encode(o) for r in results.values() for o in r.outputs]
        t4 = time.perf_counter()
        raw = [encode_state(r.state) for r in results.values()]
        t5 = time.perf_counter()
        decoded = [decode_state(data) for data in raw]  # the worker: on a cache miss only
        t6 = time.perf_counter()
        for profile, result in results.items():
            states[profile] = result.state
        timings["decode"] += t1 - t0
        timings["score"] += t2 - t1
        timings["next change"] += t3 - t2
        timings["encode outputs"] += t4 - t3
        timings["encode states"] += t5 - t4
        missed += t6 - t5
        outputs += len(encoded)
        writes += len(raw)
        del dues, decoded

    n = len(messages)
    print(
        f"{n:,} events, {len(states):,} profiles, batch {args.batch_size}: "
        f"{writes / n:.2f} writes and {outputs / n:.2f} outputs per event"
    )
    for name, seconds in timings.items():
        print(f"  {name:<16}{seconds / n * 1e6:8.1f} µs/event")
    print(f"  {'total':<16}{sum(timings.values()) / n * 1e6:8.1f} µs/event")
    print(f"  decode states   {missed / n * 1e6:8.1f} µs/event (the worker: cache misses only)")
    sizes = sorted(len(encode_state(s)) for s in states.values())
    print(f"  state size: mean {sum(sizes) / len(sizes):,.0f} B, p50 {sizes[len(sizes) // 2]:,} B")


if __name__ == "__main__":
    main()
