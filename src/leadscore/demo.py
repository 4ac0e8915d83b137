"""`leadscore demo`: embedded services, the simulator, the worker and a live view.

The worker runs as its own process (`leadscore run`), exactly as in production; the view
reads what it publishes (the output and dead-letter topics) and its /metrics endpoint.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from leadscore.clock import Clock
from leadscore.codec import decode_output
from leadscore.embedded import Services, embedded_services, free_port, stop_process
from leadscore.errors import DecodeError, LeadscoreError
from leadscore.kafka.admin import ensure_topics
from leadscore.kafka.consumer import Message, TopicReader
from leadscore.settings import DEFAULT_INPUT_TOPICS, TOPIC_SUFFIXES
from leadscore.simulate import SimulationStats, simulate

OUTPUT_TOPIC = "leads.scores"
DLQ_TOPIC = "leads.dlq"
INPUT_TOPICS = {
    record_type: next(t for t in DEFAULT_INPUT_TOPICS.split(",") if t.endswith(suffix))
    for suffix, record_type in TOPIC_SUFFIXES.items()
}
# Tansu answers a new group's first join after half the session timeout: keep it short.
# It also holds a fetch until fetch.wait.max.ms (500 ms by default) even when records
# arrive meanwhile (Apache Kafka answers at once): keep that short too, or every event
# waits up to half a second before the worker sees it (measured: p50 350 ms at 4,000/s).
DEMO_KAFKA_OPTIONS = "session.timeout.ms=6000 heartbeat.interval.ms=1000 fetch.wait.max.ms=10"
DAY_S = 86_400
TIME_DRIVEN = ("decay", "inactivity")
RATE_WINDOW_S = 2.0  # events/s is measured over the scrapes of this many seconds


@dataclass
class LeadRow:
    lead_id: str
    total: float = 0.0
    fit: float = 0.0
    engagement: float = 0.0
    grade: str = ""
    stage: str = ""
    contact_allowed: bool = False
    tags: str = ""
    speed_to_lead_ms: int | None = None
    categories: str = ""


@dataclass(frozen=True)
class TransitionRow:
    """A stage transition as the demo's table shows it."""

    as_of: int  # the transition's event time
    lead: str
    from_stage: str
    to_stage: str
    reason: str  # the record's reason code, then why the lead is in the new stage
    time_driven: bool


class RecentTransitions:
    """The latest transitions by event time (`as_of`), newest first, at most `size`.

    Not the latest to arrive: a sweep publishes a time-driven change when it comes due,
    often after events of other leads with a later event time were published. Such a row
    takes its place in time order, or is dropped if it is older than all `size` kept."""

    def __init__(self, size: int = 12) -> None:
        self.size = size
        self._rows: list[tuple[int, int, TransitionRow]] = []  # (-as_of, -arrival, row)
        self._arrivals = 0

    def add(self, row: TransitionRow) -> None:
        self._arrivals += 1
        bisect.insort(self._rows, (-row.as_of, -self._arrivals, row))
        del self._rows[self.size :]

    def __iter__(self) -> Iterator[TransitionRow]:
        return (row for _, _, row in self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class DemoView:
    """What the demo shows, folded from the output and dead-letter topics, and from
    scrapes of the worker's count of events consumed (None until the first scrape)."""

    leads: dict[str, LeadRow] = field(default_factory=dict)
    transitions: RecentTransitions = field(default_factory=RecentTransitions)
    outputs: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)
    events_per_s: float | None = None
    events_total: float | None = None
    sent: SimulationStats | None = None
    time_driven: int = 0  # outputs of time-driven changes
    scrapes: deque[tuple[float, float]] = field(default_factory=deque)  # (monotonic, total)

    def scraped(self, at: float, total: float) -> None:
        """The worker's events-consumed counter read at monotonic time `at`; events/s
        is its rise over the last `RATE_WINDOW_S` (once the scrapes span half a second:
        the first scrape after the worker caught up on a backlog is no rate)."""
        self.events_total = total
        self.scrapes.append((at, total))
        while len(self.scrapes) > 2 and at - self.scrapes[1][0] >= RATE_WINDOW_S:
            self.scrapes.popleft()
        since, before = self.scrapes[0]
        if at - since >= 0.5:
            self.events_per_s = (total - before) / (at - since)

    def add(self, message: Message) -> None:
        headers = dict(message.headers)
        if message.topic == DLQ_TOPIC:
            self.dead_letters[headers.get("leadscore-error-reason", b"?").decode()] += 1
            return
        kind = headers.get("leadscore-type", b"").decode()
        try:
            record = decode_output(kind, message.value or b"")
        except DecodeError:
            return
        if record["event_id"] in self.seen:  # a re-sent output: deduplicate by id
            return
        self.seen.add(record["event_id"])
        self.outputs[kind] += 1
        self.time_driven += str(record["cause_event_id"]).startswith("time:")
        lead = record["lead_id"] or record["anonymous_id"]
        row = self.leads.setdefault(lead, LeadRow(lead))
        row.total, row.fit, row.engagement = record["total"], record["fit"], record["engagement"]
        if kind == "score_changed":
            row.grade, row.stage = record["grade"], record["stage"]
            row.contact_allowed = record["contact_allowed"]
            row.tags = ",".join(record.get("tags", []))
            row.speed_to_lead_ms = record["speed_to_lead_ms"]
            row.categories = " ".join(
                f"{c['name']} {c['value']:.0f}" + (f" {c['level']}" if c["level"] else "")
                for c in record.get("categories", [])
                if round(c["value"]) or c["level"]
            )
        else:
            row.stage = record["to_stage"]
            reason = record["reason"]
            time_driven = reason in TIME_DRIVEN
            if time_driven and record.get("inactive_for_ms") is not None:
                reason += f", {_duration(record['inactive_for_ms'])} after the last event"
            if record.get("explanation"):
                reason += f": {record['explanation']}"
            self.transitions.add(
                TransitionRow(
                    record["as_of"],
                    lead,
                    record["from_stage"] or "-",
                    record["to_stage"],
                    reason,
                    time_driven,
                )
            )

    def render(self, header: str) -> Group:
        leads = Table(title="Top leads by score", expand=True)
        numeric = ("total", "fit", "engagement", "speed-to-lead")
        for column in (
            "lead",
            "total",
            "fit",
            "engagement",
            "grade",
            "stage",
            "categories",
            "tags",
            "speed-to-lead",
            "contact",
        ):
            leads.add_column(column, justify="right" if column in numeric else "left")
        top = sorted(self.leads.values(), key=lambda r: r.total, reverse=True)[:10]
        for r in top:
            leads.add_row(
                r.lead_id,
                f"{r.total:.1f}",
                f"{r.fit:.0f}",
                f"{r.engagement:.1f}",
                r.grade,
                r.stage,
                r.categories,
                r.tags,
                _duration(r.speed_to_lead_ms),
                "yes" if r.contact_allowed else "no",
            )
        moves = Table(title="Recent stage transitions", expand=True)
        for column in ("event time", "lead", "from", "to", "reason"):
            moves.add_column(column)
        for t in self.transitions:
            when = time.strftime("%b %d %H:%M", time.gmtime(t.as_of / 1000))
            style = "yellow" if t.time_driven else None
            moves.add_row(when, t.lead, t.from_stage, t.to_stage, t.reason, style=style)
        return Group(Panel(header + "\n" + self.summary()), leads, moves)

    def summary(self) -> str:
        sent = self.sent.sent if self.sent else 0
        dead = ", ".join(f"{r} {n}" for r, n in self.dead_letters.most_common()) or "none"
        stages = Counter(r.stage for r in self.leads.values())
        by_stage = ", ".join(f"{s} {n}" for s, n in stages.most_common())
        if self.events_total is None:
            scored = "starting (no scrape of its /metrics yet)"
        else:
            scored = f"{self.events_total:,.0f}" + (
                f" ({self.events_per_s:,.0f}/s)" if self.events_per_s is not None else ""
            )
        return (
            f"events sent {sent:,}  |  scored by the worker {scored}  |  "
            f"leads {len(self.leads):,}  |  "
            f"score changes {self.outputs['score_changed']:,}  |  "
            f"stage transitions {self.outputs['stage_transitioned']:,}  |  "
            f"time-driven changes {self.time_driven:,}\n"
            f"leads by stage: {by_stage}\n"
            f"dead letters: {dead}"
        )


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def run_demo(
    *,
    duration_s: float | None,
    rate: float,
    leads: int,
    seed: int,
    metrics_port: int,
    console: Console,
    day_seconds: float = 1.0,
) -> int:
    """Run everything until `duration_s` passes or Ctrl-C; returns the exit code."""
    stop = threading.Event()
    clock = Clock(speed=DAY_S / day_seconds)
    with contextlib.ExitStack() as stack:
        with console.status("starting the embedded broker and Redis..."):
            services = stack.enter_context(embedded_services())
            kafka = {"bootstrap.servers": services.bootstrap_servers}
            ensure_topics(kafka, [*INPUT_TOPICS.values(), OUTPUT_TOPIC, DLQ_TOPIC])
        port = metrics_port or free_port()
        worker_log = stack.enter_context(tempfile.TemporaryFile("w+"))
        worker = stack.enter_context(_worker_process(services, port, worker_log, clock))
        view = DemoView()
        sim = threading.Thread(
            target=_simulate,
            args=(kafka, rate, leads, seed, stop, view, clock),
            daemon=True,
            name="simulator",
        )
        sim.start()
        reader = TopicReader(kafka, [OUTPUT_TOPIC, DLQ_TOPIC])
        stack.callback(reader.close)
        header = (
            f"leadscore demo: broker {services.bootstrap_servers} ({services.broker_name}), "
            f"redis {services.redis_url} ({services.redis_name})\n"
            f"worker metrics: http://127.0.0.1:{port}/metrics  (also /healthz, /readyz)\n"
            + _clock_line(clock, day_seconds)
        )
        started = time.monotonic()
        interrupted = _watch(
            view, reader, worker, port, header, console, started, duration_s, clock
        )
        stop.set()
        sim.join(10)
        if not interrupted:  # Ctrl-C: stop at once
            _catch_up(view, reader, port)
        code = _stop_worker(worker)
        for message in reader.read(10_000, 1.0):
            view.add(message)
        console.print(
            view.render(
                header
                + f"\nfinished after {time.monotonic() - started:.0f} s"
                + (" (interrupted)" if interrupted else "")
            )
        )
        if code != 0:
            worker_log.seek(0)
            console.print(f"[red]the worker exited with {code}[/red]\n{worker_log.read()[-3000:]}")
            return 1
        return 0
    return 0


def _watch(
    view: DemoView,
    reader: TopicReader,
    worker: subprocess.Popen[bytes],
    port: int,
    header: str,
    console: Console,
    started: float,
    duration_s: float | None,
    clock: Clock,
) -> bool:
    """Refresh the view until the duration passes or Ctrl-C; True if interrupted.

    The worker counts an event as consumed before it publishes the outputs the event
    causes: a scrape made after reading outputs counts every event behind them. So the
    view scrapes after every read that brought records, before showing them (a scrape once
    a second showed the outputs of a backlog beside a count of 0 until the next one)."""
    last_scrape = 0.0
    live = (
        Live(console=console, refresh_per_second=4, transient=True)
        if console.is_terminal
        else contextlib.nullcontext()
    )
    if not console.is_terminal:  # no live view: say what runs where before the progress
        console.print(header)
    last_line = 0.0
    try:
        with live:
            while duration_s is None or time.monotonic() - started < duration_s:
                if worker.poll() is not None:
                    raise LeadscoreError(f"the worker exited with {worker.returncode}")
                messages = reader.read(2000, 0.25)
                for message in messages:
                    view.add(message)
                now = time.monotonic()
                if messages or now - last_scrape >= 1.0:
                    total = _events_consumed(port)
                    if total is not None:
                        view.scraped(now, total)
                    last_scrape = now
                elapsed = (
                    f"simulated time now {_simulated(clock)}; "
                    f"running {now - started:.0f} s"
                    + (f" of {duration_s:.0f}" if duration_s else "")
                    + "; Ctrl-C stops"
                )
                if isinstance(live, Live):
                    live.update(view.render(header + "\n" + elapsed))
                elif now - last_line >= 5:
                    console.print(
                        f"[{now - started:4.0f} s] " + view.summary().replace("\n", "  |  ")
                    )
                    last_line = now
    except KeyboardInterrupt:
        return True
    return False


def _catch_up(view: DemoView, reader: TopicReader, port: int, patience_s: float = 5.0) -> None:
    """Once the simulator stopped: read outputs and scrape until the worker's count of
    events consumed stops rising (it has consumed all that was sent), so that the final
    figures agree. Time-driven outputs may still come; no event is behind those."""
    deadline = time.monotonic() + patience_s
    before = view.events_total
    while time.monotonic() < deadline:
        for message in reader.read(10_000, 0.5):
            view.add(message)
        total = _events_consumed(port)
        if total is None:
            break
        view.scraped(time.monotonic(), total)
        if total == before:
            break
        before = total
    view.events_per_s = None  # finished: no rate now


def _simulate(
    kafka: dict[str, Any],
    rate: float,
    leads: int,
    seed: int,
    stop: threading.Event,
    view: DemoView,
    clock: Clock,
) -> None:
    def progress(stats: SimulationStats) -> None:
        view.sent = stats

    view.sent = simulate(
        kafka,
        INPUT_TOPICS,
        rate=rate,
        seed=seed,
        leads=leads,
        stop=stop,
        progress=progress,
        clock=clock,
        quiet_spells=True,
    )


def _clock_line(clock: Clock, day_seconds: float) -> str:
    if clock.speed == 1:
        return "clock: real time"
    return (
        f"clock: ACCELERATED, one simulated day every {day_seconds:g} s (events, decay and "
        "inactivity all run on it); yellow transitions came from time alone"
    )


def _simulated(clock: Clock) -> str:
    return time.strftime("%b %d %H:%M", time.gmtime(clock()))


def _events_consumed(port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "leadscore_events_consumed":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


@contextlib.contextmanager
def _worker_process(
    services: Services, port: int, log: IO[str], clock: Clock
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "LEADSCORE_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "LEADSCORE_REDIS_URL": services.redis_url,
        "LEADSCORE_METRICS_PORT": str(port),
        "LEADSCORE_METRICS_HOST": "127.0.0.1",
        "LEADSCORE_KAFKA_OPTIONS": DEMO_KAFKA_OPTIONS,
        "LEADSCORE_GROUP_ID": "leadscore-demo",
        # the simulator's clock: the same start and speed read the same time
        "LEADSCORE_CLOCK_SPEED": str(clock.speed),
        "LEADSCORE_CLOCK_START": str(round(clock.start_s * 1000)),
        "LEADSCORE_SWEEP_INTERVAL": "200ms",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "leadscore", "run"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # Ctrl-C reaches the demo only
    try:
        yield process
    finally:
        _stop_worker(process)


def _stop_worker(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM: the worker finishes its batch, commits and leaves the group."""
    return stop_process(process, grace_s=30)
