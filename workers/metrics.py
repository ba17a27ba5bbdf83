"""The worker's metric: each epoch's training seconds, exported through Ray's metrics (see
:mod:`scheduler.metrics` for the farm's metrics and their names)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

EPOCH_SECONDS_BOUNDARIES = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600]


class EpochTimer:
    """Worker side: each epoch's training seconds into ``ray_nasfarm_epoch_seconds``, taken from
    the trainer's epoch events (``training_time`` is cumulative: the histogram gets differences)."""

    def __init__(self) -> None:
        self.last: float | None = None
        try:
            from ray.util.metrics import Histogram

            self.histogram: Any = Histogram(
                "nasfarm_epoch_seconds", description="Training seconds of each epoch.",
                boundaries=EPOCH_SECONDS_BOUNDARIES)
        except Exception as exc:  # noqa: BLE001
            log.debug("Ray metrics unavailable: %s", exc)
            self.histogram = None

    def event(self, event: dict) -> None:
        if event.get("kind") != "epoch" or self.histogram is None:
            return
        now = float(event.get("training_time") or 0.0)
        if self.last is not None and now >= self.last:
            self.histogram.observe(now - self.last)
        self.last = now
