"""State size per lead: the default model with and without its categories.

Runs simulated traffic (quiet spells on, so leads span weeks of event time) through the
pure scoring core with the bundled model, and again with its categories removed, then
prints the encoded state's size per profile and, written to a real Redis, `MEMORY USAGE`
of a string holding just that state. With `--redis-leads N` it also writes N profiles the
way the worker does (state, version, a watermark, through the same Redis script, with a
time to live) and prints Redis's memory per profile.

    python bench/state_size.py --events 200000 --leads 20000 --redis-leads 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leadscore.embedded import embedded_redis
from leadscore.events import ProfileKey
from leadscore.model import Model, default_model
from leadscore.scoring.state import LeadState
from leadscore.simulate import simulated_states
from leadscore.state.encoding import encode_state
from leadscore.state.store import StateStore, Stored, Write

DAY_S = 86_400


def fold(model: Model, events: int, leads: int, speed: float) -> dict[ProfileKey, LeadState]:
    """Every profile's state after `events` simulated events, a clock `speed` times fast."""
    step = 1000  # 150 events per real second, as in the demo
    states, _ = simulated_states(
        model, events=events, leads=leads, seed=1, step=step, step_s=step / 150 * speed
    )
    return states


def report(name: str, states: dict[ProfileKey, LeadState], client: redis.Redis) -> None:
    sizes = sorted(len(encode_state(s)) for s in states.values())
    pipe = client.pipeline(transaction=False)
    for i, state in enumerate(states.values()):
        pipe.set(f"{name}:{i}", encode_state(state))
    pipe.execute()
    sample = list(range(0, len(states), max(1, len(states) // 2000)))
    memory = [int(client.memory_usage(f"{name}:{i}") or 0) for i in sample]
    with_categories = sum(1 for s in states.values() if s.categories)
    print(
        f"{name:>20}: {len(states):,} profiles ({with_categories:,} with category scores); "
        f"encoded state mean {statistics.fmean(sizes):,.0f} B, median "
        f"{sizes[len(sizes) // 2]:,} B, p99 {sizes[int(len(sizes) * 0.99)]:,} B; "
        f"Redis MEMORY USAGE mean {statistics.fmean(memory):,.0f} B"
    )


def load_redis(client: redis.Redis, states: dict[ProfileKey, LeadState], count: int) -> None:
    """Write `count` profiles as the worker does, cycling through the simulated ones."""
    store = StateStore(client, namespace="size", ttl_ms=180 * 86_400_000)
    samples = [state for profile, state in states.items() if profile.is_lead]
    before = int(client.info("memory")["used_memory"])
    started = time.monotonic()
    chunk = 2000
    for first in range(0, count, chunk):
        writes = []
        for i in range(first, min(first + chunk, count)):
            partition = ("leads.visits", i % 8)
            writes.append(
                Write(
                    ProfileKey("lead", f"lead-{i:08d}"),
                    Stored(),
                    samples[i % len(samples)],
                    {partition: 1_000_000 + i},
                )
            )
        store.save(writes)
        if first and first % 100_000 == 0:
            print(f"  {first:,} profiles written ({time.monotonic() - started:.0f} s)")
    used = int(client.info("memory")["used_memory"]) - before
    print(
        f"{count:,} profiles written as the worker does (state, version, watermark, TTL; "
        f"no schedule entries): Redis used_memory grew {used / 2**20:,.0f} MiB = "
        f"{used / count:,.0f} B per profile"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument(
        "--day-seconds", type=float, default=1.0, help="real seconds per simulated day"
    )
    parser.add_argument(
        "--redis-leads", type=int, default=0, help="also write this many profiles to Redis"
    )
    args = parser.parse_args()
    with_categories = default_model()
    without = dataclasses.replace(with_categories, categories=(), category_rules=())
    started = time.monotonic()
    with embedded_redis() as url:
        client = redis.Redis.from_url(url)
        speed = DAY_S / args.day_seconds
        a = fold(with_categories, args.events, args.leads, speed)
        b = fold(without, args.events, args.leads, speed)  # the same traffic
        report("two categories", a, client)
        report("no categories", b, client)
        if args.redis_leads:
            client.flushall()
            load_redis(client, a, args.redis_leads)
    extra = [len(encode_state(s)) - len(encode_state(b[p])) for p, s in a.items()]
    scored = [len(encode_state(s)) - len(encode_state(b[p])) for p, s in a.items() if s.categories]
    print(
        f"two categories cost {statistics.fmean(extra):,.0f} B per profile on average; "
        f"{statistics.fmean(scored):,.0f} B per profile with category scores "
        f"({statistics.fmean(len(s.categories) for s in a.values() if s.categories):.2f} "
        f"categories each); {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
