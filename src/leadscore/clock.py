"""The worker's clock: wall-clock time, or time running faster for demos and tests."""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    """Seconds since the epoch, like `time.time()`; with `speed`, time runs that many times
    faster than real time from the moment `start_ms` (default: now), so that time-driven
    changes due in days happen in seconds. Speed 0 stops the clock at `start_ms` (tests).

    The clock is a function of real time alone: two processes given the same start and
    speed (the demo's simulator and its worker) read the same time."""

    def __init__(
        self,
        speed: float = 1.0,
        start_ms: int | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if speed < 0:
            raise ValueError("clock speed must not be negative")
        self._wall = wall
        self._start = start_ms / 1000 if start_ms is not None else wall()
        self.speed = speed

    @property
    def start_s(self) -> float:
        return self._start

    def __call__(self) -> float:
        return self._start + (self._wall() - self._start) * self.speed
