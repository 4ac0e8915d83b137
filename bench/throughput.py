"""Throughput of `leadscore run`, at-least-once and exactly-once side by side.

Starts a broker (Apache Kafka from tests/kafka/ when Java is here, else the embedded Tansu)
and a Redis, produces EVENTS simulated events into the four input topics, then for each
delivery guarantee starts the worker (a separate process, as in production; its own group,
output topic and Redis namespace) and watches its committed offsets until they reach the
end. Prints events/s overall (group join included) and steady-state (first to last
commit), and the worker's CPU time per event.

    python bench/throughput.py --events 200000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.kafka: the broker

from bench.run import broker, cpu_seconds
from tests.kafka import apache

from leadscore.embedded import embedded_redis
from leadscore.kafka.admin import committed_offsets, ensure_topics
from leadscore.simulate import simulate

TOPICS = {
    "Click": "leads.clicks",
    "Visit": "leads.visits",
    "FormSubmission": "leads.forms",
    "Call": "leads.calls",
}
GUARANTEES = ("at-least-once", "exactly-once")


def run_worker(
    bootstrap: str, redis_url: str, guarantee: str, batch_size: int, end: dict[tuple[str, int], int]
) -> dict[str, float]:
    group = f"bench-{guarantee}"
    env = {
        **os.environ,
        "LEADSCORE_BOOTSTRAP_SERVERS": bootstrap,
        "LEADSCORE_REDIS_URL": redis_url,
        "LEADSCORE_GROUP_ID": group,
        "LEADSCORE_STATE_NAMESPACE": group,
        "LEADSCORE_OUTPUT_TOPIC": f"leads.scores.{guarantee}",
        "LEADSCORE_PROCESSING_GUARANTEE": guarantee,
        "LEADSCORE_METRICS_PORT": "0",
        "LEADSCORE_BATCH_SIZE": str(batch_size),
        "LEADSCORE_KAFKA_OPTIONS": "session.timeout.ms=6000 heartbeat.interval.ms=1000",
        "LEADSCORE_LOG_LEVEL": "WARNING",
    }
    kafka = {"bootstrap.servers": bootstrap}
    total = sum(end.values())
    worker = subprocess.Popen([sys.executable, "-m", "leadscore", "run"], env=env)
    started = time.monotonic()
    first: tuple[float, int] | None = None
    done = 0
    try:
        while done < total:
            time.sleep(0.2)
            offsets = committed_offsets(kafka, group, end)
            done = sum(max(o, 0) for o in offsets.values())
            if first is None and done > 0:
                first = (time.monotonic(), done)
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}")
        finished = time.monotonic()
        cpu = cpu_seconds(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert first is not None
    return {
        "overall": total / (finished - started),
        "steady": (total - first[1]) / max(finished - first[0], 1e-9),
        "seconds": finished - started,
        "cpu_us": cpu / total * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument(
        "--broker", choices=["kafka", "tansu"], default="kafka" if apache.available() else "tansu"
    )
    parser.add_argument("--guarantee", choices=[*GUARANTEES, "both"], default="both")
    args = parser.parse_args()
    guarantees = GUARANTEES if args.guarantee == "both" else (args.guarantee,)

    with broker(args.broker) as (bootstrap, name, _pid), embedded_redis() as redis_url:
        kafka = {"bootstrap.servers": bootstrap}
        outputs = [f"leads.scores.{g}" for g in guarantees]
        ensure_topics(kafka, [*TOPICS.values(), *outputs, "leads.dlq"])
        print(
            f"broker: {name}; producing {args.events:,} events for {args.leads:,} leads", flush=True
        )
        stats = simulate(kafka, TOPICS, rate=0, limit=args.events, leads=args.leads, seed=7)
        print(f"  {stats}", flush=True)
        end = {(TOPICS[rt], 0): n for rt, n in stats.by_record_type.items()}
        results = {g: run_worker(bootstrap, redis_url, g, args.batch_size, end) for g in guarantees}

    print(f"\n{args.events:,} events, {args.leads:,} leads, batch {args.batch_size}, {name}")
    print(f"{'guarantee':<15}{'overall ev/s':>14}{'steady ev/s':>14}{'CPU µs/event':>14}")
    for guarantee, r in results.items():
        print(f"{guarantee:<15}{r['overall']:>14,.0f}{r['steady']:>14,.0f}{r['cpu_us']:>14,.0f}")
    if len(results) == 2:
        ratio = results["exactly-once"]["steady"] / results["at-least-once"]["steady"]
        print(f"exactly-once / at-least-once steady throughput: {ratio:.2f}")


if __name__ == "__main__":
    main()
