"""SIGTERM / SIGINT in the driver: the first asks for a graceful stop, the second exits at once.

Graceful: the driver stops claiming, has every worker checkpoint and release its job as preempted,
and exits within the grace period. Immediate: ``ImmediateExit`` unwinds the driver without any
more database writes; the running jobs' leases then expire and the reaper of the next run (or of
another driver) puts them back, counting the attempt.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ImmediateExit(SystemExit):
    """Raised in the main thread on a second stop signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class StopRequest:
    """Catches stop signals while installed; ``requested`` is set by the first one.

    Install only from the main thread (Python's rule); elsewhere this is a plain flag that a caller
    can set with ``request()``.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None

    def request(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self.requested.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise ImmediateExit(signum)
        self.request(signum)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
