"""The lease keeper: a thread beside the training loop that keeps one job's lease alive.

It heartbeats every ``interval_s`` (a quarter of the lease TTL) and streams the job's epoch and
evaluation events to the database in order. Training never waits on the database: events queue up
here while the server is away and are written, in order, when it returns. When the database says
the lease is gone (another driver reaped it, the job was cancelled), ``lost`` is set (and
``on_lost`` called once) so that training stops at its next step and the worker writes nothing
more for this attempt.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from db.errors import DatabaseUnavailable
from db.retry import backoff_delays, retry_db

log = logging.getLogger(__name__)


class LeaseQueue(Protocol):
    def heartbeat(self, job_id: int, token: str, *, step: int | None = None,
                  epoch: float | None = None, lease_ttl_s: float | None = None) -> bool: ...

    def record_metrics(self, job_id: int, token: str, event: dict) -> bool: ...


class LeaseKeeper:
    def __init__(
        self,
        queue: LeaseQueue,
        job_id: int,
        token: str,
        *,
        interval_s: float,
        lease_ttl_s: float | None = None,
        on_lost: Callable[[], None] | None = None,
    ):
        self.queue = queue
        self.job_id = job_id
        self.token = token
        self.interval_s = interval_s
        self.lease_ttl_s = lease_ttl_s  # each beat keeps the lease this long (None: its own TTL)
        self.on_lost = on_lost
        self.lost = threading.Event()
        self.beats = 0
        self._outbox: collections.deque[dict[str, Any]] = collections.deque()
        self._progress: tuple[int | None, float | None] = (None, None)
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def post(self, event: dict[str, Any]) -> None:
        """Queue a training event for the database (called from the training thread)."""
        self._progress = (event.get("step"), event.get("epoch"))
        self._outbox.append(event)
        self._wake.set()

    def progress(self, step: int, epoch: float) -> None:
        """Note how far training got (cheap enough for every step): the next heartbeat carries it,
        and ``active_workers`` shows the newer of it and the latest epoch metric."""
        self._progress = (step, epoch)

    def _mark_lost(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("job %d: lease lost (%s); stopping without writing more", self.job_id, why)
            self.lost.set()
            if self.on_lost is not None:
                self.on_lost()

    def _flush_once(self) -> None:
        """Write queued events; an event leaves the outbox only once it is written."""
        while self._outbox and not self.lost.is_set():
            if not self.queue.record_metrics(self.job_id, self.token, self._outbox[0]):
                self._mark_lost("record_metrics refused")
                return
            self._outbox.popleft()

    def _beat(self) -> None:
        step, epoch = self._progress
        if self.queue.heartbeat(self.job_id, self.token, step=step, epoch=epoch,
                                lease_ttl_s=self.lease_ttl_s):
            self.beats += 1
        else:
            self._mark_lost("heartbeat refused")

    def _run(self) -> None:
        next_beat = time.monotonic()  # first beat at once: it also proves the lease is ours
        delays = None
        while not self._closing.is_set() and not self.lost.is_set():
            try:
                self._flush_once()
                if time.monotonic() >= next_beat and not self.lost.is_set():
                    self._beat()
                    next_beat = time.monotonic() + self.interval_s
                delays = None
            except DatabaseUnavailable as exc:
                delays = delays or backoff_delays()
                pause = next(delays)
                log.warning("job %d: %s; retrying in %.1f s", self.job_id, exc, pause)
                self._closing.wait(pause)
                continue
            except Exception:  # a bug must not kill the lease silently: log, back off, keep beating
                log.exception("job %d: lease keeper error", self.job_id)
                self._closing.wait(1.0)
                continue
            self._wake.wait(max(next_beat - time.monotonic(), 0.0))
            self._wake.clear()

    def close(self, *, flush: bool = True) -> bool:
        """Stop the thread; with ``flush``, write the remaining events (retrying through outages).

        Returns False when the lease was lost.
        """
        self._closing.set()
        self._wake.set()
        self._thread.join()
        if flush and not self.lost.is_set():
            retry_db(self._flush_once, what=f"job {self.job_id}: stream metrics")
        return not self.lost.is_set()
