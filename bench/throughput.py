"""Quick throughput benchmark: how many events per second `leadscore run` sustains.

Starts the embedded broker and Redis, produces EVENTS simulated events into the four input
topics, then starts the worker (a separate process, as in production) and watches its
committed offsets until they reach the end. Prints events/s overall (from the worker's
start, group join included) and steady-state (between the first and the last commit), and
the worker's CPU time per event.

    python bench/throughput.py --events 100000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from leadscore.embedded import embedded_services
from leadscore.kafka.admin import committed_offsets, ensure_topics
from leadscore.simulate import simulate

TOPICS = {
    "Click": "leads.clicks",
    "Visit": "leads.visits",
    "FormSubmission": "leads.forms",
    "Call": "leads.calls",
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()

    with embedded_services() as services:
        kafka = {"bootstrap.servers": services.bootstrap_servers}
        ensure_topics(kafka, [*TOPICS.values(), "leads.scores", "leads.dlq"])
        print(f"producing {args.events:,} events for {args.leads:,} leads ...", flush=True)
        started = time.monotonic()
        stats = simulate(kafka, TOPICS, rate=0, limit=args.events, leads=args.leads, seed=7)
        print(f"  produced in {time.monotonic() - started:.1f} s: {stats}", flush=True)
        end = {(TOPICS[rt], 0): n for rt, n in stats.by_record_type.items()}
        total = sum(end.values())

        env = {
            **os.environ,
            "LEADSCORE_BOOTSTRAP_SERVERS": services.bootstrap_servers,
            "LEADSCORE_REDIS_URL": services.redis_url,
            "LEADSCORE_METRICS_PORT": "0",
            "LEADSCORE_BATCH_SIZE": str(args.batch_size),
            "LEADSCORE_KAFKA_OPTIONS": "session.timeout.ms=6000 heartbeat.interval.ms=1000",
            "LEADSCORE_LOG_LEVEL": "WARNING",
        }
        worker = subprocess.Popen([sys.executable, "-m", "leadscore", "run"], env=env)
        started = time.monotonic()
        first: tuple[float, int] | None = None
        done = 0
        try:
            while done < total:
                time.sleep(0.2)
                offsets = committed_offsets(kafka, "leadscore", end)
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
    steady = (total - first[1]) / max(finished - first[0], 1e-9)
    print(f"events:                {total:,} ({args.leads:,} leads, batch {args.batch_size})")
    print(
        f"overall:               {total / (finished - started):,.0f} events/s "
        f"(incl. group join, {finished - started:.1f} s)"
    )
    print(
        f"steady state:          {steady:,.0f} events/s "
        f"(first to last commit, {finished - first[0]:.1f} s)"
    )
    print(f"worker CPU per event:  {cpu / total * 1e6:,.0f} µs")


if __name__ == "__main__":
    main()
