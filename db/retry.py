"""Database writes that outlive a database restart: retry with capped exponential backoff.

Only :class:`db.errors.DatabaseUnavailable` (server restarting, connection dropped, SQLite busy) is
retried; every other error is a real answer and propagates. The queue's writes are fenced by the
lease token and ``complete`` is idempotent, so repeating a write whose commit was in doubt is safe.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from db.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.25
MAX_DELAY_S = 10.0


class GaveUp(Exception):
    """The database stayed unavailable past the deadline (or the caller asked to stop waiting)."""


def backoff_delays(first: float = FIRST_DELAY_S, maximum: float = MAX_DELAY_S):
    """0.25, 0.5, 1, 2, ... capped at ``maximum``, each with +-20 % jitter so workers do not align."""
    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * 2, maximum)


def retry_db(
    call: Callable[[], T],
    *,
    what: str,
    deadline_s: float | None = None,
    abandon: threading.Event | None = None,
) -> T:
    """``call()`` until it does not raise DatabaseUnavailable.

    ``deadline_s``: give up (raise :class:`GaveUp`) after this long; None waits for ever, which is
    what a worker holding a finished result wants. ``abandon``: an event that also ends the wait.
    """
    started = time.monotonic()
    delays = backoff_delays()
    attempt = 0
    while True:
        try:
            return call()
        except DatabaseUnavailable as exc:
            attempt += 1
            waited = time.monotonic() - started
            if deadline_s is not None and waited >= deadline_s:
                raise GaveUp(f"{what}: database unavailable for {waited:.0f} s: {exc}") from exc
            delay = next(delays)
            if deadline_s is not None:
                delay = min(delay, max(deadline_s - waited, 0.01))
            if attempt == 1 or attempt % 10 == 0:
                log.warning("%s: %s; retrying (attempt %d)", what, exc, attempt)
            if abandon is not None:
                if abandon.wait(delay):
                    raise GaveUp(f"{what}: abandoned while the database was unavailable") from exc
            else:
                time.sleep(delay)
