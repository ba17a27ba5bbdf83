"""The run's progress: a live bar on a terminal (tqdm), and a callback for programs that watch."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from scheduler.summary import FINISHED_STATUSES


class RunProgress:
    """Shows the campaigns' job counts as they change. ``show``: None = a bar when stderr is a
    terminal (tqdm's output would only clutter a log file)."""

    def __init__(self, show: bool | None, on_counts: Callable[[dict[str, int]], None] | None = None):
        self.on_counts = on_counts
        self.bar: Any = None
        if show if show is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="job", desc="nasfarm run", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total} jobs [{elapsed}<{remaining}, "
                                       "{rate_fmt}{postfix}]")

    def update(self, counts: dict[str, int], *, workers: int, training: int,
               running_fraction: float = 0.0) -> None:
        """``running_fraction``: jobs' worth of steps the running jobs have trained, so the bar (and
        its rate and ETA) moves by training steps, not by whole jobs."""
        if self.on_counts is not None:
            self.on_counts(dict(counts))
        if self.bar is None:
            return
        total = sum(counts.values())
        if self.bar.total != total:
            self.bar.total = total
        finished = sum(counts.get(s, 0) for s in FINISHED_STATUSES)
        self.bar.n = round(min(finished + running_fraction, total), 2)
        # "training": jobs on a worker now (the table's 'running' also counts jobs claimed ahead).
        self.bar.set_postfix(training=training, failed=counts.get("failed", 0), workers=workers,
                             refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
