"""Before consuming: is the broker there, do the input topics exist, does Redis answer?

A worker pointed at the wrong place would otherwise start, retry in silence (or in a flood
of client logs) and never say which setting is wrong. The checks use the worker's own
settings and credentials: a metadata request to the brokers (which also lists the
topics) and a PING to Redis. They are retried for up to the start-up timeout; then either
the worker exits with one line per problem, each naming the setting to check, or, when
told to wait for the services, it keeps checking and logs one line per problem per
interval. A problem that retrying cannot fix (refused credentials) ends the check at
once, unless told to keep waiting (credentials may be provisioned after the worker).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from leadscore.errors import (
    KafkaRefused,
    KafkaUnavailable,
    StartupFailed,
    StateRefused,
    StateUnavailable,
)
from leadscore.kafka.admin import Cluster
from leadscore.settings import Settings, redacted_url
from leadscore.state.store import StateStore

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_S = 5.0  # the longest one metadata request may take
RETRY_DELAY_S = (0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong, as one line naming the setting to check; `final` if retrying with
    the same settings cannot help."""

    text: str
    final: bool = False


def wait_for_services(settings: Settings, store: StateStore, stop: threading.Event) -> bool:
    """Return True once the broker answers, every input topic exists and Redis answers;
    False if `stop` is set first. Raises `StartupFailed` when the start-up timeout runs out
    (or a problem cannot be fixed by retrying), unless the settings say to keep waiting:
    then one line per problem is logged every start-up timeout."""
    timeout_s = settings.worker.startup_timeout_s
    keep_waiting = settings.worker.wait_for_services
    cluster = Cluster(settings.kafka.admin_config())
    started = last_report = time.monotonic()
    noted: set[str] = set()
    for attempt in range(1_000_000_000):
        left = timeout_s - (time.monotonic() - started)
        notes: list[str] = []
        problems = check(settings, cluster, store, min(ATTEMPT_TIMEOUT_S, max(left, 0.5)), notes)
        for note in notes:
            if note not in noted:
                log.warning("%s", note)
                noted.add(note)
        waited = time.monotonic() - started
        if stop.is_set():
            return False
        if not problems:
            if attempt:
                log.info("the broker and Redis answer (after %.0f s)", waited)
            return True
        if not keep_waiting and (waited >= timeout_s or all(p.final for p in problems)):
            raise StartupFailed([p.text for p in problems], waited)
        if keep_waiting and time.monotonic() - last_report >= timeout_s:
            for problem in problems:
                log.warning("waiting for the services (%.0f s so far): %s", waited, problem.text)
            last_report = time.monotonic()
        if stop.wait(RETRY_DELAY_S[min(attempt, len(RETRY_DELAY_S) - 1)]):
            return False
    raise AssertionError("unreachable")


def check(
    settings: Settings,
    cluster: Cluster,
    store: StateStore,
    timeout_s: float = ATTEMPT_TIMEOUT_S,
    notes: list[str] | None = None,
) -> list[Problem]:
    """Every problem found now, one per setting (the broker's answer awaited `timeout_s`);
    what is worth a warning but does not stop the start goes to `notes`."""
    kafka = settings.kafka
    problems: list[Problem] = []
    servers = f"--bootstrap-servers: no broker answered at {kafka.bootstrap_servers}"
    try:
        topics = cluster.topics(timeout_s)
    except KafkaRefused as exc:
        problems.append(
            Problem(
                f"{servers}: it refused the client ({exc}); check the security settings", final=True
            )
        )
    except KafkaUnavailable as exc:
        problems.append(Problem(f"{servers} ({exc})"))
    else:
        missing = [t.name for t in kafka.input_topics if t.name not in topics]
        if missing:
            problems.append(
                Problem(
                    f"--input-topics: {', '.join(missing)} "
                    f"{'does' if len(missing) == 1 else 'do'} not exist on the cluster at "
                    f"{kafka.bootstrap_servers} (create the input topics before starting)"
                )
            )
        for name, topic in (
            ("--output-topic", kafka.output_topic),
            ("--dlq-topic", kafka.dlq_topic),
        ):
            if topic not in topics and notes is not None:
                notes.append(
                    f"{name}: {topic} does not exist yet: publishing waits until the "
                    "broker creates it (auto.create.topics.enable) or it is created"
                )
    url = redacted_url(settings.redis.url.value)
    try:
        store.check()
    except StateRefused as exc:
        problems.append(Problem(f"--redis-url: Redis at {url} {exc}", final=True))
    except StateUnavailable as exc:
        problems.append(Problem(f"--redis-url: cannot reach Redis at {url} ({exc})"))
    return problems
