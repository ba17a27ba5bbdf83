"""Which claimed job starts on which idle worker, when jobs share GPUs by their size.

With ``--gpus-per-job auto`` every GPU hosts ``max_jobs_per_gpu`` worker actors (Ray fractional
GPUs), and each job needs a share of its card chosen from the cell's FLOPs by
:mod:`farm.packing` (1, 1/2 or 1/4 by default: a large cell alone, four small ones
together). Ray only guarantees that the actors fit; this module keeps the jobs within each card:
a job starts on an idle worker only while the shares of the jobs on that worker's card sum to at
most 1.

Without ``auto`` (a fixed fraction, or CPU workers) every job's share is 0 and each worker is its
own "device": placement is then plain first-come-first-served over the idle workers.

The rule, over claimed units (a job, or the repeats of a cell trained together) in claim order:

- a unit goes to an idle worker on a card with room for it, the fullest such card first (best
  fit keeps whole cards free for the large cells that need one);
- a unit that fits nowhere *reserves* the emptiest card it could use once that card drains: later
  units may not start there. Without that, a stream of small jobs could keep every card partly
  busy and a large job would wait for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

# Shares are sums of 1/2 and 1/4 (exact in binary) but the rule may be re-calibrated to 1/3.
_SLACK = 1e-9

Unit = TypeVar("Unit")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdleWorker:
    worker: Any
    device: Hashable  # (node id, GPU ids) of a GPU worker; a key of its own for a CPU worker
    node: str | None = None  # the Ray node it runs on


def assign(
    units: Sequence[Unit],
    share: Callable[[Unit], float],
    idle: Sequence[IdleWorker],
    load: Mapping[Hashable, float],
    avoid: Callable[[Unit], set[str]] | None = None,
) -> list[tuple[int, Any]]:
    """``(index into units, worker)`` pairs to start now, by the rule in the module docstring.

    ``load`` is the sum of the shares of the jobs running on each device. ``avoid(unit)``: nodes
    the unit must not start on (it waits for a worker elsewhere; it reserves nothing meanwhile).
    """
    load = dict(load)
    free: dict[Hashable, list[Any]] = {}
    node_of: dict[Hashable, str | None] = {}
    for slot in idle:
        free.setdefault(slot.device, []).append(slot.worker)
        node_of[slot.device] = slot.node
    reserved: set[Hashable] = set()
    plan: list[tuple[int, Any]] = []
    for index, unit in enumerate(units):
        open_devices = [d for d, workers in free.items() if workers and d not in reserved]
        if not open_devices:
            break
        avoided = avoid(unit) if avoid is not None else set()
        if avoided:
            open_devices = [d for d in open_devices if node_of[d] not in avoided]
            if not open_devices:
                continue
        need = share(unit)
        fits = [d for d in open_devices if load.get(d, 0.0) + need <= 1.0 + _SLACK]
        if fits:
            # max() keeps the first of equals: devices in the order their idle workers came.
            device = max(fits, key=lambda d: load.get(d, 0.0))
            plan.append((index, free[device].pop(0)))
            load[device] = load.get(device, 0.0) + need
        else:
            reserved.add(min(open_devices, key=lambda d: load.get(d, 0.0)))
    return plan


def usable_idle(idle: Sequence[IdleWorker], load: Mapping[Hashable, float], smallest_share: float) -> int:
    """How many idle workers could start the smallest job now: the claim asks for no more."""
    return sum(1 for slot in idle if load.get(slot.device, 0.0) + smallest_share <= 1.0 + _SLACK)


class CardShare:
    """The share of a GPU that a unit (one job, or repeats of a cell trained together) needs under
    ``--gpus-per-job auto``: :func:`farm.packing.gpu_fraction` of its cell's forward FLOPs
    times the repeats it trains at once. Cached per cell, campaign and group size (the driver asks
    again every loop for the jobs it holds)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, int], float] = {}

    def __call__(self, unit: Sequence[Any]) -> float:
        first = unit[0]
        key = (first.cell_hash, first.campaign, len(unit))
        if key not in self._cache:
            from farm.config import TrainConfig
            from farm.cost import forward_flops
            from farm.packing import gpu_fraction
            from farm.spec import Cell

            try:
                cell = Cell.from_any(first.matrix, first.ops)
                macs = forward_flops(cell, TrainConfig.from_dict(first.profile))
                self._cache[key] = gpu_fraction(macs, repeats=len(unit))
            except Exception as exc:  # noqa: BLE001 -- never stop the driver over one job
                # A cell or profile that cannot be read is bad input: the worker fails the job
                # with that error (workers.job.build_train_job). Until then it gets a card alone.
                log.warning("job %d: no GPU share from its cell (%s); giving it a whole card",
                            first.job_id, exc)
                self._cache[key] = 1.0
        return self._cache[key]


def no_share(unit: Sequence[Any]) -> float:
    """Every unit's share when Ray's own resources already keep jobs apart (fixed fractions, CPUs)."""
    return 0.0
