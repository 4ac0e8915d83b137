"""The cost of a batch's state write on each Redis topology, measured side by side.

Writes batches of profiles exactly as the worker does (`StateStore.save`: kept outputs,
schedule entries and progress markers per input partition, then the conditional profile
writes), with states from simulated traffic, to real `redis-server`s on loopback:

- standalone;
- a primary with one replica, the worker waiting for it (`--redis-replicas 1`: WAIT);
- a Redis Cluster of three masters (one call per slot).

Prints per topology the wall time per batch and per event, Redis requests per batch and
Redis CPU per event (INFO cpu, summed over the servers).

    python bench/redis_write.py --batches 200 --batch 500
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.redis_servers import RedisCluster, ReplicatedRedis

from leadscore.events import ProfileKey
from leadscore.model import default_model
from leadscore.scoring.state import LeadState
from leadscore.simulate import simulated_states
from leadscore.state.encoding import StoredOutput
from leadscore.state.store import Due, StateStore, Stored, Write

PARTITIONS = [(topic, p) for topic in ("leads.visits", "leads.forms") for p in range(4)]


def redis_cpu(addresses: list[tuple[str, int]]) -> float:
    total = 0.0
    for host, port in addresses:
        client = redis.Redis(host=host, port=port)
        info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        client.close()
    return total


def batches(states: list[LeadState], count: int, size: int) -> Iterator[list[Write]]:
    """`count` batches of `size` writes of new profiles, each with two kept outputs and a
    schedule entry, spread over PARTITIONS."""
    output = StoredOutput(0, "score_changed", b"x" * 180)  # about a ScoreChanged's size
    n = 0
    for _ in range(count):
        writes = []
        for _ in range(size):
            partition = PARTITIONS[n % len(PARTITIONS)]
            profile = ProfileKey("lead", f"bench-{n:09d}")
            offset = n // len(PARTITIONS)
            kept = [output._replace(cause_offset=offset)] * 2
            writes.append(
                Write(
                    profile,
                    Stored(),
                    states[n % len(states)],
                    {partition: offset},
                    {partition: kept},
                    due=Due(profile, partition, 1_800_000_000_000 + n),
                    token=7,
                )
            )
            n += 1
        yield writes


def measure(
    name: str,
    client: redis.Redis | redis.RedisCluster,
    servers: list[tuple[str, int]],
    states: list[LeadState],
    args: argparse.Namespace,
    replicas: int = 0,
) -> None:
    trips = 0

    def count() -> None:
        nonlocal trips
        trips += 1

    store = StateStore(
        client, namespace="bench", ttl_ms=3_600_000, replicas=replicas, on_round_trip=count
    )
    work = list(batches(states, args.batches, args.batch))
    store.save(work[0])  # scripts loaded, connections open
    trips, cpu = 0, redis_cpu(servers)
    started = time.perf_counter()
    for writes in work[1:]:
        progress = {p: writes[-1].watermarks.get(p, 0) + 1 for p in PARTITIONS}
        assert store.save(writes, progress=progress) == []
    elapsed = time.perf_counter() - started
    cpu = redis_cpu(servers) - cpu
    events = (len(work) - 1) * args.batch
    print(
        f"{name:<34} {elapsed / (len(work) - 1) * 1000:7.2f} ms/batch "
        f"{elapsed / events * 1e6:6.1f} µs/event  {trips / (len(work) - 1):4.1f} requests/batch  "
        f"Redis CPU {cpu / events * 1e6:5.1f} µs/event",
        flush=True,
    )


@contextlib.contextmanager
def topology(
    kind: str,
) -> Iterator[tuple[redis.Redis | redis.RedisCluster, list[tuple[str, int]], int]]:
    if kind == "cluster":
        with RedisCluster() as cluster:
            nodes = [(h, int(p)) for h, p in (n.split(":") for n in cluster.nodes)]
            client = redis.RedisCluster.from_url(cluster.url)
            yield client, nodes, 0
            client.close()
        return
    with ReplicatedRedis() as servers:
        client = redis.Redis.from_url(servers.primary_url)
        addresses = [("127.0.0.1", servers.primary.port), ("127.0.0.1", servers.replica.port)]
        yield client, addresses, 1 if kind == "replicated" else 0
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=500, help="profiles written per batch")
    args = parser.parse_args()
    states_by_profile, _ = simulated_states(
        default_model(), events=20_000, leads=2_000, seed=1, step=1000, step_s=6.7
    )
    states = list(states_by_profile.values())
    print(f"{args.batches} batches of {args.batch} new profiles each, 8 input partitions")
    runs: list[tuple[str, str, Callable[..., None]]] = [
        ("standalone", "standalone (a replica, not waited for)", measure),
        ("replicated", "standalone, --redis-replicas 1 (WAIT)", measure),
        ("cluster", "Redis Cluster, 3 masters", measure),
    ]
    for kind, name, run in runs:
        with topology(kind) as (client, servers, replicas):
            run(name, client, servers, states, args, replicas)


if __name__ == "__main__":
    main()
