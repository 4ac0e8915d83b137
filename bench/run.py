"""`make bench`: throughput, CPU, latency and memory of `leadscore run`, in one run.

1. Starts the embedded services (Tansu and a Redis; `--broker kafka`: Apache Kafka from
   tests/kafka/, when Java is here) and produces the standard workload (bench/workload.py)
   into the four input topics.
2. Ceiling: consumes and decodes every event (confluent-kafka `consume()` in batches +
   fastavro), nothing else: the most any Python worker can do here.
3. Throughput: runs `leadscore run` (a process, as in production) until its committed
   offsets reach the end. Events/s overall (from the start of the process) and steady
   (between 10% and 90% of the events committed), worker and Redis CPU per event, Redis
   round trips per batch, outputs per second.
4. Latency: with the same worker caught up, produces new events at a steady rate and reads
   the output topic: event-to-output latency is the time an output is read minus its
   cause's `occurred_at` (set when the event was produced). Twice: at half the steady
   throughput just measured (a load the worker keeps up with), then at `--rate` (default
   10,000/s, which may be more than the machine processes: then the latency is a backlog's).
5. Memory: Redis memory per lead after the run, and after copying the profiles the worker
   wrote (DUMP/RESTORE, schedule entries included) to `--memory-leads` leads.

    python bench/run.py            # 500,000 events, 50,000 leads
    python bench/run.py --quick    # under two minutes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fastavro
import redis
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.workload import Generator, Workload
from tests.kafka import apache

from leadscore.codec.schemas import schema
from leadscore.demo import DEMO_KAFKA_OPTIONS
from leadscore.embedded import embedded_broker, embedded_redis, free_port
from leadscore.errors import KafkaUnavailable
from leadscore.kafka.admin import committed_offsets, ensure_topics

TOPICS = {
    "Click": "leads.clicks",
    "Visit": "leads.visits",
    "FormSubmission": "leads.forms",
    "Call": "leads.calls",
}
OUTPUT = "leads.scores"
GROUP = "bench"
WARM_UP = "bench.warm-up"


def cpu_seconds(pid: int, path: str | None = None) -> float:
    fields = Path(path or f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of the process's main thread (the Python loop; the rest is
    librdkafka's threads and the metrics server)."""
    return cpu_seconds(pid, f"/proc/{pid}/task/{pid}/stat")


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@contextlib.contextmanager
def broker(kind: str) -> Iterator[tuple[str, str, int]]:
    """The broker's bootstrap address, name and process id."""
    if kind == "kafka":
        with apache.apache_kafka() as kafka:
            name = f"Apache Kafka {apache.kafka_version()}"
            yield kafka.bootstrap_servers, name, kafka.process.pid
    else:
        with embedded_broker() as bootstrap:
            yield bootstrap, "Tansu (embedded)", listening(bootstrap.rsplit(":", 1)[1])


def listening(port: str) -> int:
    """The process started with this port in its command line (the embedded broker)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if f"127.0.0.1:{port}".encode() in cmdline.read_bytes():
                return int(cmdline.parent.name)
    raise SystemExit(f"no process found for port {port}")


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, name: str, value: str, note: str = "") -> None:
        self.rows.append((name, value, note))
        print(f"  {name}: {value} {note}".rstrip(), flush=True)

    def table(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        vwidth = max(len(r[1]) for r in self.rows)
        return "\n".join(
            f"{n:<{width}}  {v:>{vwidth}}  {note}".rstrip() for n, v, note in self.rows
        )


def produce(
    bootstrap: str, generator: Generator, count: int, start_ms: int
) -> tuple[dict[tuple[str, int], int], float]:
    """`count` workload events dated from `start_ms` on, 10 ms apart (late ones earlier).
    Returns the end offset of each partition (from the delivery reports: right on every
    broker) and the seconds it took."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": True,
        }
    )
    ends: dict[tuple[str, int], int] = {}

    def delivered(error: object, message: object) -> None:
        assert error is None, error
        where = (message.topic(), message.partition())  # type: ignore[attr-defined]
        ends[where] = max(ends.get(where, 0), message.offset() + 1)  # type: ignore[attr-defined]

    started = time.monotonic()
    for i in range(count):
        record_type, key, value = generator.next(start_ms + i * 10)
        while True:
            try:
                producer.produce(TOPICS[record_type], value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return ends, time.monotonic() - started


def ceiling(bootstrap: str, total: int, partitions: int) -> tuple[float, float]:
    """Events/s and CPU µs per event of consuming and decoding every input event."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-ceiling", "enable.auto.commit": False}
    )
    consumer.assign(
        [TopicPartition(t, p, OFFSET_BEGINNING) for t in TOPICS.values() for p in range(partitions)]
    )
    schemas = {t: schema(rt) for rt, t in TOPICS.items()}
    reader = fastavro.schemaless_reader
    seen = 0
    started, cpu = time.monotonic(), time.process_time()
    while seen < total:
        for record in consumer.consume(1000, 1.0):
            if record.error() is None:
                reader(io.BytesIO(record.value()), schemas[record.topic()], None)
                seen += 1
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    consumer.close()
    return seen / elapsed, cpu / seen * 1e6


def worker_env(bootstrap: str, redis_url: str, port: int, args: argparse.Namespace) -> dict:
    return {
        **os.environ,
        "LEADSCORE_BOOTSTRAP_SERVERS": bootstrap,
        "LEADSCORE_REDIS_URL": redis_url,
        "LEADSCORE_GROUP_ID": GROUP,
        "LEADSCORE_STATE_NAMESPACE": GROUP,
        "LEADSCORE_OUTPUT_TOPIC": OUTPUT,
        "LEADSCORE_PROCESSING_GUARANTEE": args.guarantee,
        "LEADSCORE_METRICS_PORT": str(port),
        "LEADSCORE_METRICS_HOST": "127.0.0.1",
        # on Tansu, as in the demo: a short fetch wait (it does not answer a fetch early)
        "LEADSCORE_KAFKA_OPTIONS": DEMO_KAFKA_OPTIONS
        if args.broker == "tansu"
        else "session.timeout.ms=6000 heartbeat.interval.ms=1000",
        "LEADSCORE_LOG_LEVEL": "WARNING",
        **({"LEADSCORE_BATCH_SIZE": str(args.batch_size)} if args.batch_size else {}),
    }


def profiling(pid: int, path: str) -> subprocess.Popen:
    """py-spy sampling the worker's Python stacks (without pausing it) until SIGINT."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            path,
        ],
        stdout=subprocess.DEVNULL,
    )


def stop_profiling(sampler: subprocess.Popen, path: str) -> str:
    """Stop py-spy (it writes its file on SIGINT) and summarize what it sampled."""
    sampler.send_signal(signal.SIGINT)
    sampler.wait(60)
    return summarize_profile(Path(path))


def summarize_profile(path: Path, top: int = 18) -> str:
    """The functions the worker spent its samples in: inclusive (in the function or what
    it called) and exclusive (in its own code), as shares of all samples."""
    inclusive: dict[str, int] = {}
    exclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [short_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        exclusive[frames[-1]] = exclusive.get(frames[-1], 0) + count
    lines = [f"  profile: {total:,} samples (py-spy, 250/s) in {path}"]
    for title, table in (("inclusive", inclusive), ("exclusive", exclusive)):
        lines.append(f"  {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {count / max(total, 1) * 100:5.1f}%  {frame}")
    return "\n".join(lines)


def short_frame(frame: str) -> str:
    """`score (leadscore/scoring/score.py:60)` -> `score (scoring/score.py)`: a function,
    not a line."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    if "leadscore" in parts:
        file = "/".join(parts[len(parts) - parts[::-1].index("leadscore") :])
    else:
        file = Path(file).name
    return f"{name} ({file})"


def scrape(port: int) -> dict[str, float]:
    """The worker's metrics, summed over labels: {sample name: value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def catch_up(
    bootstrap: str, workers: list[subprocess.Popen], ends: dict
) -> list[tuple[float, int]]:
    """Poll the committed offsets until they reach `ends`: [(monotonic time, committed)]."""
    kafka = {"bootstrap.servers": bootstrap}
    total = sum(ends.values())
    progress = [(time.monotonic(), 0)]
    failing_since = None
    while progress[-1][1] < total:
        time.sleep(0.1)
        for worker in workers:
            if worker.poll() is not None:
                raise SystemExit(f"a worker exited with {worker.returncode}")
        try:
            offsets = committed_offsets(kafka, GROUP, ends)
        except KafkaUnavailable:  # NOT_COORDINATOR while the group coordinator loads
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > 60:
                raise
            continue
        failing_since = None
        progress.append((time.monotonic(), sum(max(o, 0) for o in offsets.values())))
    return progress


def when(progress: list[tuple[float, int]], share: float) -> tuple[float, int]:
    total = progress[-1][1]
    return next(p for p in progress if p[1] >= share * total)


def latency(
    bootstrap: str, generator: Generator, rate: int, seconds: float, partitions: int
) -> list[float]:
    """Produce `rate` events/s for `seconds`, dated when produced; the latency (s) of
    every output they cause, from its cause's time to when it is read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-latency",
            "fetch.wait.max.ms": 5,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(OUTPUT, p, OFFSET_END) for p in range(partitions)])
    while not consumer.assignment():
        time.sleep(0.05)
    start_ms = int(time.time() * 1000)
    latencies: list[float] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            # what has arrived, at once; else the first to come (`consume(n, timeout)`
            # returns only once it has n records or the timeout ran out: each record
            # would be read up to that timeout late)
            records = consumer.consume(1000, 0) or consumer.consume(1, 0.1)
            for record in records:
                if record.error() is None:
                    now = time.time()
                    occurred_at = cause_time(record.value())
                    if occurred_at >= start_ms:
                        latencies.append(now - occurred_at / 1000)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True}
    )
    # an idempotent producer sends nothing before the broker gave it an id, which can take
    # a second: not the worker's latency
    producer.produce(WARM_UP, b"")
    producer.flush(30)
    time.sleep(1.0)  # the reader's first fetch is under way
    tick = 0.005
    per_tick = rate * tick
    owed = 0.0
    started = time.monotonic()
    next_tick = started
    while time.monotonic() - started < seconds:
        owed += per_tick
        while owed >= 1:
            record_type, key, value = generator.next(int(time.time() * 1000), late=False)
            producer.produce(TOPICS[record_type], value=value, key=key)
            owed -= 1
        producer.poll(0)
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    producer.flush(30)
    time.sleep(2.0)  # the last outputs arrive
    done.set()
    reader.join(5)
    consumer.close()
    return latencies


def latency_figures(
    figures: Figures,
    workers: list[subprocess.Popen],
    broker_pid: int,
    measure: Callable[[int], list[float]],
    rate: int,
    seconds: float,
    note: str,
) -> None:
    """Run one latency phase and add its p50 and p99, with what the processes used."""
    cpu_before = sum(cpu_seconds(w.pid) for w in workers)
    broker_before, bench_before = cpu_seconds(broker_pid), time.process_time()
    lat = measure(rate)
    worker_cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
    broker_cpu = cpu_seconds(broker_pid) - broker_before
    bench_cpu = time.process_time() - bench_before
    label = f"at {rate:,.0f} ev/s" + (f" ({note})" if note else "")
    if not lat:
        figures.add(f"latency {label}", "no outputs read")
        return
    figures.add(
        f"latency p50 {label}",
        f"{percentile(lat, 0.5) * 1000:.1f} ms",
        f"({len(lat):,} outputs over {seconds:.0f} s; "
        f"worker CPU {worker_cpu / seconds * 100:.0f}%)",
    )
    figures.add(
        f"latency p99 {label}",
        f"{percentile(lat, 0.99) * 1000:.1f} ms",
        f"(meanwhile the broker used {broker_cpu / seconds * 100:.0f}% of a core, "
        f"the bench's producer and reader {bench_cpu / seconds * 100:.0f}%)",
    )


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at `at`: (value, position after it)."""
    shift = result = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), at
        shift += 7


def cause_time(value: bytes) -> int:
    """`occurred_at` of an output record (either kind), read without decoding the rest:
    it follows `event_id` (string), `lead_id` and `anonymous_id` (null or string). The
    bench shares the machine with the worker: a full decode of every output cost it a
    visible share of the CPU."""
    length, at = _varint(value, 0)
    at += length
    for _ in range(2):  # lead_id, anonymous_id
        branch, at = _varint(value, at)
        if branch == 1:
            length, at = _varint(value, at)
            at += length
    return _varint(value, at)[0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def copy_profiles(client: redis.Redis, count: int) -> int:
    """Copy the profiles the worker wrote (and their schedule entries) until `count` exist;
    returns how many were added."""
    originals = list(client.scan_iter(f"{GROUP}:lead:*", count=10_000))
    schedules = list(client.scan_iter(f"{GROUP}:due:*"))
    entries: dict[bytes, tuple[bytes, float]] = {}
    for key in schedules:
        for member, at in client.zrange(key, 0, -1, withscores=True):
            entries[member] = (key, at)
    pipe = client.pipeline(transaction=False)
    dumps = []
    for key in originals:
        pipe.dump(key)
        pipe.pttl(key)
    replies = pipe.execute()
    for i, key in enumerate(originals):
        dumps.append((key, replies[2 * i], max(int(replies[2 * i + 1]), 0)))
    added = 0
    pipe = client.pipeline(transaction=False)
    while len(originals) + added < count:
        key, payload, ttl = dumps[added % len(dumps)]
        lead = key.decode().split("{", 1)[1].rstrip("}")
        copy = f"{GROUP}:lead:{{{lead}-c{added}}}"
        pipe.restore(copy, ttl, payload)
        member = f"lead:{lead}".encode()
        if member in entries:
            schedule, at = entries[member]
            pipe.zadd(schedule, {f"lead:{lead}-c{added}": at})
        added += 1
        if added % 5000 == 0:
            pipe.execute()
    pipe.execute()
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: under two minutes")
    parser.add_argument("--events", type=int, help="events to process (default 500,000)")
    parser.add_argument("--leads", type=int, help="leads (default 50,000)")
    parser.add_argument("--batch-size", type=int, help="the worker's --batch-size")
    parser.add_argument("--rate", type=int, default=10_000, help="offered load, events/s")
    parser.add_argument("--latency-seconds", type=float, help="default 20 (quick: 8)")
    parser.add_argument("--memory-leads", type=int, help="default 1,000,000 (quick: 100,000)")
    parser.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="tansu: the embedded broker (default); kafka: Apache Kafka (needs Java)",
    )
    parser.add_argument(
        "--guarantee", choices=["at-least-once", "exactly-once"], default="at-least-once"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes in the group (default 1)"
    )
    parser.add_argument(
        "--partitions", type=int, help="partitions per topic (default 1; 8 with --workers > 1)"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="sample the (first) worker with py-spy while it catches up and, apart, during "
        "the latency phase; write the stacks to FILE and FILE.latency (py-spy's raw format, "
        "for flamegraph tools) and print where the time went",
    )
    args = parser.parse_args()
    partitions = args.partitions or (1 if args.workers == 1 else 8)
    events = args.events or (100_000 if args.quick else 500_000)
    leads = args.leads or (10_000 if args.quick else 50_000)
    latency_s = args.latency_seconds or (8.0 if args.quick else 20.0)
    memory_leads = args.memory_leads or (100_000 if args.quick else 1_000_000)
    workload = Workload(events=events, leads=leads)
    figures = Figures()
    bench_started = time.monotonic()

    with broker(args.broker) as (bootstrap, name, broker_pid), embedded_redis() as redis_url:
        client = redis.Redis.from_url(redis_url)
        kafka = {"bootstrap.servers": bootstrap}
        ensure_topics(
            kafka, [*TOPICS.values(), OUTPUT, "leads.dlq", WARM_UP], partitions=partitions
        )
        generator = Generator(workload)
        print(f"{name}; producing {events:,} events for {leads:,} leads", flush=True)
        start_ms = int(time.time() * 1000) - events * 10
        ends, took = produce(bootstrap, generator, events, start_ms)
        total = sum(ends.values())
        print(f"  produced {total:,} messages in {took:.1f} s", flush=True)

        top, top_cpu = ceiling(bootstrap, total, partitions)
        figures.add("consume+decode ceiling", f"{top:,.0f} ev/s", f"({top_cpu:.1f} µs CPU/event)")

        ports = [free_port() for _ in range(args.workers)]
        memory_before = int(client.info("memory")["used_memory"])
        redis_before = redis_cpu(client)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "leadscore", "run"],
                env=worker_env(bootstrap, redis_url, port, args),
            )
            for port in ports
        ]
        sampler = profiling(workers[0].pid, args.profile) if args.profile else None
        try:
            started = time.monotonic()
            progress = catch_up(bootstrap, workers, ends)
            if sampler is not None:
                print(stop_profiling(sampler, args.profile), flush=True)
            finished = progress[-1][0]
            cpu = sum(cpu_seconds(w.pid) for w in workers)
            main_cpu = sum(main_thread_cpu(w.pid) for w in workers)
            redis_used = redis_cpu(client) - redis_before
            metrics: dict[str, float] = {}
            for port in ports:
                for sample, value in scrape(port).items():
                    metrics[sample] = metrics.get(sample, 0.0) + value
            t10, n10 = when(progress, 0.1)
            t90, n90 = when(progress, 0.9)
            steady = (n90 - n10) / max(t90 - t10, 1e-9)
            overall = total / (finished - started)
            batches = metrics.get("leadscore_batch_messages_count", 0.0)
            # every request sent; older builds counted the store's calls (one request each)
            trips = metrics.get(
                "leadscore_redis_round_trips_total",
                metrics.get("leadscore_redis_call_duration_seconds_count", 0.0),
            )
            outputs = metrics.get("leadscore_outputs_produced_total", 0.0)
            figures.add(
                "events/s overall",
                f"{overall:,.0f}",
                f"({total:,} in {finished - started:.1f} s, start-up included)",
            )
            figures.add("events/s steady", f"{steady:,.0f}", "(10% to 90% committed)")
            figures.add("ratio to the ceiling", f"{steady / top:.2f}", "(steady / ceiling)")
            figures.add(
                "worker CPU µs/event",
                f"{cpu / total * 1e6:.1f}",
                f"(all threads; the Python loop {main_cpu / total * 1e6:.1f})",
            )
            figures.add("Redis CPU µs/event", f"{redis_used / total * 1e6:.1f}", "(INFO cpu)")
            figures.add(
                "Redis round trips/batch",
                f"{trips / max(batches, 1):.2f}",
                f"({batches:,.0f} batches, {total / max(batches, 1):,.0f} events each)",
            )
            figures.add(
                "outputs/s", f"{outputs / (finished - started):,.0f}", f"({outputs:,.0f} outputs)"
            )

            def measure(rate: int) -> list[float]:
                return latency(bootstrap, generator, rate, latency_s, partitions)

            # first at half the steady rate (a load it keeps up with), sampled apart with
            # --profile (small batches); then the fixed rate, which may build a backlog
            kept_up = int(max(100, round(steady / 2, -2)))
            if args.profile:
                sampler = profiling(workers[0].pid, f"{args.profile}.latency")
            latency_figures(
                figures, workers, broker_pid, measure, kept_up, latency_s, "half the steady rate"
            )
            if args.profile and sampler is not None:
                print(stop_profiling(sampler, f"{args.profile}.latency"), flush=True)
            latency_figures(figures, workers, broker_pid, measure, args.rate, latency_s, "")
        finally:
            if sampler is not None and sampler.poll() is None:
                sampler.kill()
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(60)

        profiles = sum(1 for _ in client.scan_iter(f"{GROUP}:lead:*", count=10_000))
        used = int(client.info("memory")["used_memory"]) - memory_before
        figures.add(
            "Redis memory per lead",
            f"{used / profiles:,.0f} B",
            f"(after the run: {profiles:,} leads)",
        )
        added = copy_profiles(client, memory_leads)
        used = int(client.info("memory")["used_memory"]) - memory_before
        figures.add(
            f"Redis memory per lead at {profiles + added:,}",
            f"{used / (profiles + added):,.0f} B",
            "(the run's profiles copied)",
        )

    print(
        f"\n{events:,} events, {leads:,} leads, {name}, {args.guarantee}, "
        f"{args.workers} worker process{'es' if args.workers > 1 else ''}, "
        f"{partitions} partition{'s' if partitions > 1 else ''} per topic, "
        f"{time.monotonic() - bench_started:.0f} s in all"
    )
    print(figures.table())


if __name__ == "__main__":
    main()
