"""Sizing the worker pool to the Ray cluster, and keeping it sized as nodes join or leave.

One actor per job slot. A slot is a whole or fractional GPU (``--gpus-per-job 0.5`` packs two jobs
on a card) plus ``--cpus-per-job`` CPUs; on a cluster without GPUs every ``--cpus-per-job`` CPUs
make a CPU slot. Slots are counted per node because a Ray actor cannot span nodes: two nodes with
half a free GPU each do not make one slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Ray accounts resources in units of 1e-4; a little slack keeps 3 x (1/3 GPU) from rounding to 2.
_RESOURCE_SLACK = 1e-6


class PoolConfigError(ValueError):
    """A worker shape Ray cannot schedule (e.g. 1.5 GPUs per job)."""


@dataclass(frozen=True)
class WorkerShape:
    """The Ray resources one worker actor (= one job at a time) reserves."""

    gpus: float
    cpus: float

    @property
    def uses_gpu(self) -> bool:
        return self.gpus > 0

    def describe(self) -> str:
        if self.uses_gpu:
            return f"{self.gpus:g} GPU + {self.cpus:g} CPU per job"
        return f"{self.cpus:g} CPU per job (no GPUs)"


def choose_shape(cluster_gpus: float, gpus_per_job: float, cpus_per_job: float | None) -> WorkerShape:
    """The actor shape for this cluster: GPU slots when it has GPUs and jobs ask for them, else CPU.

    ``gpus_per_job`` must be a fraction in (0, 1] or a whole number (Ray refuses 1.5), and 0 means
    "train on CPUs even if there are GPUs".
    """
    if gpus_per_job < 0:
        raise PoolConfigError(f"--gpus-per-job must be >= 0, got {gpus_per_job:g}")
    if gpus_per_job > 1 and not float(gpus_per_job).is_integer():
        raise PoolConfigError(
            f"--gpus-per-job {gpus_per_job:g}: Ray accepts fractions up to 1 or whole numbers of GPUs"
        )
    if cpus_per_job is not None and cpus_per_job <= 0:
        raise PoolConfigError(f"--cpus-per-job must be > 0, got {cpus_per_job:g}")
    cpus = 1.0 if cpus_per_job is None else float(cpus_per_job)
    if gpus_per_job > 0 and cluster_gpus > 0:
        return WorkerShape(gpus=float(gpus_per_job), cpus=cpus)
    return WorkerShape(gpus=0.0, cpus=cpus)


def node_slots(resources: Mapping[str, float], shape: WorkerShape) -> int:
    """How many workers of ``shape`` fit on a node with these total resources."""
    cpu_slots = math.floor(resources.get("CPU", 0.0) / shape.cpus + _RESOURCE_SLACK)
    if not shape.uses_gpu:
        return max(cpu_slots, 0)
    gpu_slots = math.floor(resources.get("GPU", 0.0) / shape.gpus + _RESOURCE_SLACK)
    return max(min(gpu_slots, cpu_slots), 0)


def pool_target(
    nodes: Iterable[Mapping[str, float]], shape: WorkerShape, max_workers: int | None = None
) -> int:
    """The pool size for a cluster whose alive nodes have these total resources."""
    total = sum(node_slots(resources, shape) for resources in nodes)
    return total if max_workers is None else min(total, max_workers)


# `--gpus-per-job auto`: each job's share of a card comes from its cell's FLOPs (scheduler.placement).
AUTO = "auto"


def parse_gpus_per_job(value: str | float) -> float | str:
    """``auto`` or a number (the CLI's and RunOptions' form); anything else is a PoolConfigError."""
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return AUTO
        try:
            value = float(value)
        except ValueError:
            raise PoolConfigError(f"--gpus-per-job must be a number or 'auto', got {value!r}") from None
    choose_shape(1.0, float(value), None)  # the same checks as for a real cluster
    return float(value)


def auto_shape(
    nodes: Iterable[Mapping[str, float]], jobs_per_gpu: int, cpus_per_job: float | None
) -> WorkerShape:
    """The actor shape for ``--gpus-per-job auto``: ``jobs_per_gpu`` workers on every GPU.

    Ray fills one GPU with fractional actors before it moves to the next, so a node whose CPUs
    hold fewer actors than its GPU slots would leave whole cards without a worker. Unless
    ``cpus_per_job`` is given, each worker reserves at most 1 CPU and little enough that every
    GPU node fits all its GPU slots (Ray's CPUs are a scheduling count, not pinned cores). A
    cluster without GPUs gets CPU workers, as for a fixed fraction.
    """
    if jobs_per_gpu < 1:
        raise PoolConfigError(f"jobs per GPU must be >= 1, got {jobs_per_gpu}")
    if cpus_per_job is not None and cpus_per_job <= 0:
        raise PoolConfigError(f"--cpus-per-job must be > 0, got {cpus_per_job:g}")
    gpu_nodes = [n for n in nodes if n.get("GPU", 0.0) > 0]
    if not gpu_nodes:
        return choose_shape(0.0, 1.0, cpus_per_job)
    cpus = cpus_per_job
    if cpus is None:
        fitting = min(n.get("CPU", 0.0) / (n["GPU"] * jobs_per_gpu) for n in gpu_nodes)
        cpus = max(math.floor(min(fitting, 1.0) * 100) / 100, 0.01)
    return WorkerShape(gpus=1.0 / jobs_per_gpu, cpus=float(cpus))


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    resources: dict[str, float]


def alive_nodes() -> list[NodeInfo]:
    """The cluster's alive nodes and their total resources (needs a connected Ray)."""
    import ray

    return [
        NodeInfo(
            node_id=node["NodeID"],
            address=node.get("NodeManagerAddress", ""),
            resources={k: float(v) for k, v in node.get("Resources", {}).items()},
        )
        for node in ray.nodes()
        if node.get("Alive")
    ]
