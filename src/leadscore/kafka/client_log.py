"""What the Kafka clients report, through one logger, each distinct message at most once
per interval.

librdkafka reports a broker it cannot reach twice (a `FAIL` log line and the error
callback), from every client (consumer, producer, admin), at every reconnect attempt:
measured against a port where nothing listens, 808 lines in 18 s. Every client here logs
through `CLIENT_LOG` (its `logger` setting) and reports its errors to `client_error()`; a
filter lets the first of each distinct message through and holds back its repeats for
`REPEAT_INTERVAL_S`; the next one after that says how many were held back.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

REPEAT_INTERVAL_S = 30.0
RECONNECT_BACKOFF = {"reconnect.backoff.ms": 1000, "reconnect.backoff.max.ms": 10000}

# what varies between two reports of the same problem: the client thread's name (in log
# lines), how long the attempt took
_THREAD = re.compile(r"^\[thrd:[^\]]*\]: ")
_ATTEMPT = re.compile(
    r" \(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)"
)


class Repeats(logging.Filter):
    """Lets a message through once per `interval_s`; the next one after that carries the
    count of those held back meanwhile. Messages that differ only in the client thread or
    the attempt's duration count as one."""

    def __init__(
        self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()  # clients serve their callbacks on the calling thread
        self._seen: dict[str, tuple[float, int]] = {}  # message -> (shown at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = _ATTEMPT.sub("", text.split(": ", 1)[-1])  # without the client's name
        now = self._clock()
        with self._lock:
            shown = self._seen.get(key)
            if shown is not None and now - shown[0] < self.interval_s:
                self._seen[key] = (shown[0], shown[1] + 1)
                return False
            if len(self._seen) > 1000:  # forget what has not come back within the interval
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval_s}
                if len(self._seen) > 1000:  # a flood of distinct messages: start afresh
                    self._seen.clear()
            self._seen[key] = (now, 0)
        record.msg, record.args = "%s", (text,)
        if shown is not None and shown[1]:
            record.msg = "%s (%d more in the last %.0f s)"
            record.args = (text, shown[1], now - shown[0])
        return True


class _Librdkafka:
    """What librdkafka's `logger` setting calls: `log(level, "%s [%s] %s", facility, client
    name, text)`, reworded as `kafka <client>: <text>` on `CLIENT_LOG`."""

    def log(self, level: int, _format: str, _facility: str, name: str, text: str) -> None:
        CLIENT_LOG.log(level, "kafka %s: %s", name.split("#")[-1], _THREAD.sub("", text))


CLIENT_LOG = logging.getLogger("leadscore.kafka.client")
CLIENT_LOG.addFilter(Repeats())
_LIBRDKAFKA = _Librdkafka()


def client_config() -> dict[str, Any]:
    """Settings every Kafka client of the worker gets (a user's `-X` settings override the
    back-off): its logs through `CLIENT_LOG`, reconnects backed off, and no report of the
    idle connections brokers close (not news)."""
    return {"logger": _LIBRDKAFKA, "log.connection.close": False, **RECONNECT_BACKOFF}


def client_error(client: str, error: KafkaError) -> None:
    """Log an error reported by a client's error callback (deduplicated with its logs).
    "N/M brokers are down" is not logged: each broker's own failure was."""
    if error.code() != KafkaError._ALL_BROKERS_DOWN:
        CLIENT_LOG.warning("kafka %s: %s", client, error.str())
