"""Prometheus metrics (one registry) and the /metrics, /healthz, /readyz endpoints."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class Metrics:
    """Every metric the worker exports. No label ever carries a lead id."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "leadscore_events_consumed",
            "Input events decoded, by event type.",
            ["type"],
            registry=r,
        )
        self.events_dead_lettered = Counter(
            "leadscore_events_dead_lettered",
            "Input messages copied to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.events_skipped = Counter(
            "leadscore_events_skipped",
            "Events already applied and not counted again: a replayed offset (watermark) "
            "or a redelivered event id (event_id).",
            ["cause"],
            registry=r,
        )
        self.events_late = Counter(
            "leadscore_events_late",
            "Events older than the model's allowed lateness behind their lead's newest event: "
            "scored, but without the memory of caps, repeats and early responses for their "
            "time (see the scoring docs).",
            registry=r,
        )
        self.outputs_produced = Counter(
            "leadscore_outputs_produced",
            "Output events acknowledged by the broker, by kind.",
            ["kind"],
            registry=r,
        )
        self.state_conflicts = Counter(
            "leadscore_state_conflicts",
            "Profile writes refused because another writer changed the profile first.",
            registry=r,
        )
        self.time_driven_changes = Counter(
            "leadscore_time_driven_changes",
            "Profiles changed by a sweep: a stage or category level that inactivity or decay "
            "moved with no new event.",
            registry=r,
        )
        self.sweep_overdue = Gauge(
            "leadscore_sweep_overdue_seconds",
            "How late the earliest change found due by the last sweep was.",
            registry=r,
        )
        self.batch_duration = Histogram(
            "leadscore_batch_duration_seconds",
            "Time from consuming a batch to committing its offsets.",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "leadscore_batch_messages",
            "Messages per consumed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=r,
        )
        self.event_to_publish = Histogram(
            "leadscore_event_to_publish_seconds",
            "From an output's cause event occurring (event time) to the output being acknowledged.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.speed_to_lead = Histogram(
            "leadscore_speed_to_lead_seconds",
            "Event time from a lead's first request (form, inbound call) to the first "
            "response (outbound call), observed once per lead.",
            buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400),
            registry=r,
        )
        self.partition_wait = Counter(
            "leadscore_partition_wait_seconds",
            "Time spent waiting for an input partition behind the others in event time "
            "(records not fetched yet), see --partition-idle.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "leadscore_consumer_lag_messages",
            "Messages behind the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.redis_duration = Histogram(
            "leadscore_redis_call_duration_seconds",
            "Duration of Redis round trips.",
            ["operation"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.redis_round_trips = Counter(
            "leadscore_redis_round_trips",
            "Requests sent to Redis (a pipeline counts once; on a Cluster once per call "
            "that may go to several nodes).",
            registry=r,
        )
        self.state_lost = Gauge(
            "leadscore_state_lost_partitions",
            "Assigned input partitions whose committed offset is ahead of the state Redis "
            "holds for them (Redis restarted empty or restored from an old snapshot); the "
            "worker refuses to go on.",
            registry=r,
        )
        self.ready = Gauge(
            "leadscore_ready", "1 when connected to Kafka and Redis and consuming.", registry=r
        )

    @contextmanager
    def redis_call(self, operation: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.redis_duration.labels(operation).observe(time.perf_counter() - start)

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        self.consumer_lag.clear()
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)


class MetricsServer:
    """Serves /metrics, /healthz (the process is alive) and /readyz (`ready()` is true)."""

    def __init__(
        self, metrics: Metrics, port: int, ready: Callable[[], bool], host: str = "0.0.0.0"
    ) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._reply(200, b"ok\n")
                elif path == "/readyz":
                    ok = ready()
                    self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

            def _reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="metrics-http"
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
