"""Retry policy (exponential backoff with full jitter) and a circuit breaker, both I/O free."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait between attempts at a transient failure."""

    attempts: int = 4  #: total tries, the first included
    base: float = 0.2  #: seconds; the n-th retry waits uniform(0, min(cap, base * 2**n))
    cap: float = 10.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Full jitter (AWS architecture blog); a server's Retry-After is a floor, capped."""
        wait = self.rng.uniform(0, min(self.cap, self.base * (2**retry)))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait


class BreakerState(str, Enum):
    CLOSED = "closed"  # requests flow; consecutive transient failures are counted
    OPEN = "open"  # fail fast without touching the network until the cool-down ends
    HALF_OPEN = "half_open"  # one trial request decides between CLOSED and OPEN


class CircuitBreaker:
    """Opens after ``threshold`` consecutive transient failures; half-opens after ``cooldown`` s."""

    def __init__(
        self, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current()

    def _current(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown:
            self._state = BreakerState.HALF_OPEN
            self._trial_running = False
        return self._state

    def allow(self) -> bool:
        """Whether a request may go out now (in HALF_OPEN only one trial at a time)."""
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._state = BreakerState.CLOSED
            self._trial_running = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.threshold:
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._trial_running = False

    def retry_in(self) -> float:
        """Seconds until the breaker half-opens (0 when it is not open)."""
        with self._lock:
            if self._current() is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))
