"""The circuit breaker: stop claiming when most recent outcomes fail with the same error.

A wrong setting (a profile the data cannot feed, a broken image, a bad deploy) fails every job the
same way; marching through the campaign would turn all of it to "failed" in seconds. The breaker
watches the last ``window`` outcomes of this run and trips when at least ``threshold`` of them are
failures with one signature. It needs ``threshold * window`` such failures to trip, so a healthy
campaign with a few poison cells never trips it.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Trip:
    signature: str
    failures: int  # outcomes with that signature among the last `window`
    window: int

    def describe(self) -> str:
        return (f"circuit breaker: {self.failures} of the last {self.window} jobs failed with "
                f"'{self.signature}'; stopped claiming (fix the cause, then `nasfarm retry`)")


class CircuitBreaker:
    def __init__(self, window: int = 20, threshold: float = 0.8):
        if window < 1 or not 0.0 < threshold <= 1.0:
            raise ValueError(f"breaker window {window} / threshold {threshold}: need window >= 1, "
                             "0 < threshold <= 1")
        self.window = window
        self.needed = max(1, math.ceil(threshold * window))
        self.recent: collections.deque[str | None] = collections.deque(maxlen=window)
        self.tripped: Trip | None = None

    def record(self, failure_signature: str | None) -> Trip | None:
        """One outcome: None for a success, the error signature for a failure. Returns the trip
        (once tripped it stays tripped)."""
        self.recent.append(failure_signature)
        if self.tripped is None and failure_signature is not None:
            same = sum(1 for s in self.recent if s == failure_signature)
            if same >= self.needed:
                self.tripped = Trip(failure_signature, same, self.window)
        return self.tripped
