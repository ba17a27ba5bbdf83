"""The fast trainer: farm.train's contract, with graph-replayed steps and repeat fusion.

``train_fast(job, data, ...)`` takes and returns exactly what :func:`farm.train.train` does --
same metrics, evaluation points, events, checkpoints (same file format: a checkpoint written by
one resumes in the other), ``should_stop``/:class:`~farm.train.Stopped` and typed errors. The
difference is how a step runs: :class:`farm.fast.graph.TrainStep` (one CUDA-graph replay per step
on a GPU; the identical Python eagerly on a CPU), and a sync-free, graph-replayed evaluation.

``train_repeats_fused(jobs, data, ...)`` trains the repeats of one cell together as one
:class:`farm.fast.fused.FusedNetwork`. Each repeat keeps its own initial weights, data order and
augmentation (the streams ``farm.train`` derives from (seed, repeat)), its own events and its own
checkpoint file in farm.train's format, so any repeat can later be resumed alone, by either
trainer. Results are one :class:`~farm.train.TrainResult` per job. Timing: the repeats train
concurrently, so each one's ``training_time`` is the fused run's wall time (``extra`` records
``fused_repeats``).

Host synchronisation happens only at the sync points farm.train has (epoch ends, evaluations,
checkpoints, stop requests); between them the step loop only enqueues work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from farm import checkpoint as ckpt
from farm.data import CifarSplits
from farm.fast.fused import (
    build_fused_network,
    fuse_state_dicts,
    split_grouped_convs,
    split_state_dict,
    split_tensor,
)
from farm.fast.graph import EvalStep, TrainStep, eval_batch_size, loss_dtype
from farm.optim import TFRMSprop, cosine_by_step_lr
from farm.schedule import ScheduledRun, run_metrics
from farm.train import (
    BadInputError,
    CheckpointError,
    NonFiniteLossError,
    TrainJob,
    TrainResult,
    _check_poison,
    _resolve_device,
    _validate,
    run_guarded,
    state_dict_digest,
    stream_seed,
)

__all__ = ["train_fast", "train_repeats_fused"]

EventSink = Callable[[dict], None] | None
EVAL_SPLITS = (("train", "train_eval"), ("validation", "valid"), ("test", "test"))


class _FastRun(ScheduledRun):
    """One run of R >= 1 jobs of the same cell, epochs and config (R = 1: the plain network)."""

    def __init__(
        self,
        jobs: Sequence[TrainJob],
        data: CifarSplits,
        device: torch.device,
        checkpoint_paths: Sequence[str | None],
        on_events: Sequence[EventSink],
        should_stop: Callable[[], bool] | None,
        saved: Sequence[dict[str, Any] | None],
        *,
        use_graph: bool,
        dtype: torch.dtype | None,
        split_convs: bool = False,
    ) -> None:
        from farm.model import build_network

        self.wall_start = time.perf_counter()
        self.jobs = list(jobs)
        self.repeats = repeats = len(self.jobs)
        job = self.jobs[0]
        self.config = config = job.config
        self.device = device
        self.cuda = device.type == "cuda"
        self.checkpoint_paths = list(checkpoint_paths)
        self.checkpointing = any(path is not None for path in self.checkpoint_paths)
        self.on_events = list(on_events)
        self.should_stop = should_stop
        self.use_graph = use_graph
        self._init_schedule(config, job.epochs)

        generators = [
            torch.Generator(device="cpu").manual_seed(stream_seed(j.seed, j.repeat, "init"))
            for j in self.jobs
        ]
        if repeats == 1:
            model = build_network(job.cell, config, generator=generators[0])
        else:
            model = build_fused_network(job.cell, config, generators)
            if split_convs:
                split_grouped_convs(model)
        self.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad) // repeats
        if dtype is not None:
            model = model.to(dtype)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # autotuned once per conv shape per process
            model = model.to(device, memory_format=torch.channels_last)
        else:
            model = model.to(device)
        self.model = model.train()
        self.param_dtype = next(model.parameters()).dtype
        self.optimizer = TFRMSprop(
            model.parameters(),
            lr=0.0,
            decay=config.rms_decay,
            momentum=config.momentum,
            epsilon=config.rms_epsilon,
            weight_decay=config.weight_decay,
        )
        from farm.augment import TrainStream

        # One device copy of the training images, shared by the repeats' streams.
        train_images = data.train[0][: config.train_images].to(device)
        train_labels = data.train[1][: config.train_images].to(device)
        self.streams = [
            TrainStream(
                train_images,
                train_labels,
                config.batch_size,
                order_seed=stream_seed(j.seed, j.repeat, "order"),
                augment_seed=stream_seed(j.seed, j.repeat, "augment"),
            )
            for j in self.jobs
        ]
        n = config.eval_images
        self.eval_batch = eval_batch_size(n, config.batch_size)
        self.eval_splits = {
            name: (getattr(data, split)[0][:n].to(device), getattr(data, split)[1][:n].to(device))
            for name, split in EVAL_SPLITS
        }
        self.step = 0
        self.training_time = 0.0
        self.elapsed_before = 0.0
        self.evaluations: list[list[dict[str, Any]]] = [[] for _ in self.jobs]
        self.loss_sum = torch.zeros((repeats,), dtype=loss_dtype(self.param_dtype), device=device)
        self.loss_count = 0
        self.resumed_from_step = 0
        self.finished: list[TrainResult] | None = None
        self.stepper: TrainStep | None = None
        self.evaluator: EvalStep | None = None
        self._restore(saved)

    # -- steps -------------------------------------------------------------------------------

    def _autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.cuda else None

    def _train_step(self) -> None:
        if self.stepper is None:  # built after any restore: it captures the restored tensors
            self.stepper = TrainStep(
                self.model,
                self.optimizer,
                repeats=self.repeats,
                batch_size=self.config.batch_size,
                total_steps=self.total_steps,
                base_lr=self.config.learning_rate,
                step=self.step,
                loss_sum=self.loss_sum,
                autocast_dtype=self._autocast_dtype(),
                channels_last=self.cuda,
                use_graph=self.use_graph,
            )
        batches = [stream.next_batch() for stream in self.streams]
        self.stepper([images for images, _ in batches], [labels for _, labels in batches])
        self.loss_count += 1

    def _synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _check_finite(self) -> None:
        if not self.loss_count:
            return
        finite = torch.isfinite(self.loss_sum).tolist()
        if not all(finite):
            which = [self.jobs[r].repeat for r, ok in enumerate(finite) if not ok]
            raise NonFiniteLossError(
                f"non-finite training loss before step {self.step} (epoch {self.epoch_at(self.step):.2f})"
                + (f" in repeat(s) {which}" if self.repeats > 1 else "")
            )

    def _end_epoch(self) -> None:
        losses = (self.loss_sum / max(self.loss_count, 1)).tolist()
        for r in range(self.repeats):
            self._emit(r, "epoch", loss=float(losses[r]))
        self.loss_sum.zero_()
        self.loss_count = 0

    def _emit(self, r: int, kind: str, **fields: Any) -> None:
        sink = self.on_events[r]
        if sink is not None:
            event = {"kind": kind, "epoch": self.epoch_at(self.step), "step": self.step,
                     "training_time": self.training_time}
            event.update(fields)
            sink(event)

    def _evaluate(self, nominal_epoch: float, recorded_steps: int) -> None:
        if self.evaluator is None:
            self.evaluator = EvalStep(
                self.model,
                repeats=self.repeats,
                batch_size=self.eval_batch,
                autocast_dtype=self._autocast_dtype(),
                channels_last=self.cuda,
                use_graph=self.use_graph,
            )
        batch = self.eval_batch
        counts = []
        self.model.eval()
        try:
            with torch.no_grad():
                for images, labels in self.eval_splits.values():
                    self.evaluator.reset()
                    for start in range(0, images.shape[0], batch):
                        self.evaluator(images[start : start + batch], labels[start : start + batch])
                    counts.append(self.evaluator.correct.clone())
        finally:
            self.model.train()
        correct = torch.stack(counts).tolist()  # the one host read of this evaluation
        for r in range(self.repeats):
            accuracies = {
                f"{name}_accuracy": int(correct[i][r]) / images.shape[0]
                for i, (name, (images, _)) in enumerate(self.eval_splits.items())
            }
            entry = {
                "epochs": nominal_epoch,
                "training_steps": recorded_steps,
                "training_time": self.training_time,
                **accuracies,
            }
            self.evaluations[r].append(entry)
            self._emit(r, "evaluation", **accuracies, epoch=nominal_epoch)

    # -- checkpoints -------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.wall_start)

    def _optimizer_states(self) -> list[dict[str, Any]]:
        """The fused optimizer state as R TFRMSprop state dicts (the LR as the float farm.train
        would have stored: the last update's)."""
        full = self.optimizer.state_dict()
        last_lr = cosine_by_step_lr(self.step - 1, self.total_steps, self.config.learning_rate)
        groups = [{**group, "lr": last_lr} for group in full["param_groups"]]
        parts: list[dict[str, Any]] = [{"state": {}, "param_groups": groups} for _ in range(self.repeats)]
        for index, slots in full["state"].items():
            pieces = {name: split_tensor(value, self.repeats) for name, value in slots.items()}
            for r in range(self.repeats):
                parts[r]["state"][index] = {name: pieces[name][r] for name in slots}
        return parts

    def _model_states(self) -> list[dict[str, torch.Tensor]]:
        return split_state_dict(self.model.state_dict(), self.repeats)

    def _checkpoint(self) -> None:
        models = self._model_states()
        optimizers = self._optimizer_states()
        elapsed = self._elapsed()
        for r, path in enumerate(self.checkpoint_paths):
            if path is None:
                continue
            state = {
                "complete": False,
                "step": self.step,
                "training_time": self.training_time,
                "elapsed": elapsed,
                "evaluations": [dict(e) for e in self.evaluations[r]],
                "model": models[r],
                "optimizer": optimizers[r],
                "stream": self.streams[r].state_dict(),
                "loss_sum": self.loss_sum[r].detach().to("cpu", torch.float32).clone(),
                "loss_count": self.loss_count,
                "cpu_rng": torch.get_rng_state(),
            }
            if self.cuda:
                state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
            ckpt.save(path, self.jobs[r].identity(), state)
            self._emit(r, "checkpoint", path=path)

    def _restore(self, saved: Sequence[dict[str, Any] | None]) -> None:
        """Resume from the jobs' checkpoints (the caller checked they are all absent, all
        complete, or all incomplete at the same step)."""
        if all(state is None for state in saved):
            return
        if all(state is not None and state.get("complete") for state in saved):
            self.finished = []
            for state in saved:
                result = TrainResult.from_dict(state["result"])
                result.resumed_from_step = self.total_steps
                result.resumed_from_epoch = self.epoch_at(self.total_steps)
                self.finished.append(result)
            return
        states = list(saved)
        where = ", ".join(str(p) for p in self.checkpoint_paths)
        try:
            self.model.load_state_dict(fuse_state_dicts([s["model"] for s in states]))
            self.optimizer.load_state_dict(self._fused_optimizer_state([s["optimizer"] for s in states]))
            for stream, state in zip(self.streams, states, strict=True):
                stream.load_state_dict(state["stream"])
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            raise CheckpointError(f"checkpoint(s) {where} do not fit this job: {exc}") from exc
        self._match_slot_layouts()
        first = states[0]
        self.step = int(first["step"])
        self.training_time = max(float(s["training_time"]) for s in states)
        self.elapsed_before = max(float(s["elapsed"]) for s in states)
        self.evaluations = [[dict(e) for e in s["evaluations"]] for s in states]
        self.loss_sum.copy_(torch.stack([s["loss_sum"].reshape(()) for s in states]))
        self.loss_count = int(first["loss_count"])
        torch.set_rng_state(first["cpu_rng"])
        if self.cuda and "cuda_rng" in first:
            torch.cuda.set_rng_state(first["cuda_rng"], self.device)
        self.resumed_from_step = self.step

    def _match_slot_layouts(self) -> None:
        """Give loaded optimizer slots their parameter's memory layout (channels_last on CUDA):
        the multi-tensor update only takes its fused fast path when all strides match."""
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                slots = self.optimizer.state.get(param, {})
                for name, value in slots.items():
                    if isinstance(value, torch.Tensor) and value.stride() != param.stride():
                        slots[name] = torch.empty_like(param).copy_(value)

    def _fused_optimizer_state(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        template = self.optimizer.state_dict()
        state = {}
        for index in parts[0]["state"]:
            slots = parts[0]["state"][index]
            state[index] = {name: torch.cat([p["state"][index][name] for p in parts]) for name in slots}
        return {"state": state, "param_groups": template["param_groups"]}

    # -- the loop (farm.train's, step for step) -------------------------------------------------

    def run(self) -> list[TrainResult]:
        if self.finished is not None:
            return self.finished
        self.train_loop()
        return self._finish()

    def _provenance(self) -> dict[str, Any]:
        """Stored with each result (the results table's ``extra``): which trainer made it. A
        result without ``trainer`` is farm.train's."""
        extra: dict[str, Any] = {"trainer": "fast", "cuda_graphs": self.use_graph and self.cuda}
        if self.repeats > 1:
            extra["fused_repeats"] = self.repeats
        return extra

    def _finish(self) -> list[TrainResult]:
        models = self._model_states()
        elapsed = self._elapsed()
        results = []
        for r, evaluations in enumerate(self.evaluations):
            results.append(
                TrainResult(
                    metrics=run_metrics(evaluations, self.jobs[0].epochs,
                                        trainable_parameters=self.trainable_parameters, total_time=elapsed),
                    evaluations=[dict(e) for e in evaluations],
                    resumed_from_step=self.resumed_from_step,
                    resumed_from_epoch=self.epoch_at(self.resumed_from_step),
                    weights_sha256=state_dict_digest(models[r]),
                    extra=self._provenance(),
                )
            )
        for r, path in enumerate(self.checkpoint_paths):
            if path is not None:
                # As farm.train: the result replaces the training state, so a retry returns it.
                ckpt.save(path, self.jobs[r].identity(), {"complete": True, "result": results[r].to_dict()})
                self._emit(r, "checkpoint", path=path, complete=True)
        return results


# -- entry points ----------------------------------------------------------------------------


def _checked_group(jobs: Sequence[TrainJob], data: CifarSplits) -> None:
    if not jobs:
        raise BadInputError("no jobs to train")
    for job in jobs:
        _validate(job, data)
    first = jobs[0]
    for job in jobs[1:]:
        if job.cell.hash != first.cell.hash or job.epochs != first.epochs or job.config != first.config:
            raise BadInputError(
                "fused repeats must share cell, epochs and config; got "
                f"{first.cell.hash}/{first.epochs}/{first.config.name} and "
                f"{job.cell.hash}/{job.epochs}/{job.config.name}"
            )
    identities = {(job.seed, job.repeat) for job in jobs}
    if len(identities) != len(jobs):
        raise BadInputError("fused repeats must differ in (seed, repeat)")


def _per_job(values: Sequence[Any] | None, count: int, what: str) -> list[Any]:
    if values is None:
        return [None] * count
    values = list(values)
    if len(values) != count:
        raise BadInputError(f"{len(values)} {what} for {count} jobs")
    return values


def _load_checkpoints(
    jobs: Sequence[TrainJob], paths: Sequence[str | None]
) -> list[dict[str, Any] | None]:
    return [
        ckpt.load(path, job.identity()) if path is not None else None
        for job, path in zip(jobs, paths, strict=True)
    ]


def _resumable_together(states: Sequence[dict[str, Any] | None]) -> bool:
    """All absent, all complete, or all incomplete at the same step."""
    if all(s is None for s in states):
        return True
    if any(s is None for s in states):
        return False
    if all(s.get("complete") for s in states):
        return True
    if any(s.get("complete") for s in states):
        return False
    return len({int(s["step"]) for s in states}) == 1


def train_fast(
    job: TrainJob,
    data: CifarSplits,
    *,
    device: str = "cuda",
    checkpoint_path: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cuda_graphs: bool = True,
    dtype: torch.dtype | None = None,
) -> TrainResult:
    """:func:`farm.train.train` with graph-replayed steps (same arguments, result, errors).

    ``cuda_graphs=False`` runs the same step code eagerly (for comparisons). ``dtype`` casts the
    model (e.g. ``torch.float64`` for CPU equivalence tests); None keeps fp32 weights.
    """
    _check_poison(job)
    resolved = _resolve_device(device)
    _validate(job, data)
    paths = [checkpoint_path]

    def body() -> TrainResult:
        saved = _load_checkpoints([job], paths)
        run = _FastRun(
            [job], data, resolved, paths, [on_event], should_stop, saved, use_graph=cuda_graphs, dtype=dtype
        )
        return run.run()[0]

    return run_guarded(resolved, body)


def train_repeats_fused(
    jobs: Sequence[TrainJob],
    data: CifarSplits,
    *,
    device: str = "cuda",
    checkpoint_paths: Sequence[str | None] | None = None,
    on_events: Sequence[Callable[[dict], None] | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cuda_graphs: bool = True,
    dtype: torch.dtype | None = None,
    split_convs: bool = False,
) -> list[TrainResult]:
    """Train the repeats of one cell (same cell, epochs, config) as one fused network.

    ``split_convs``: run each grouped conv as one conv per repeat (same weights, same result;
    for a backend whose grouped kernels fail, see :class:`farm.fast.fused.SplitGroupConv2d`).

    ``checkpoint_paths[i]`` and ``on_events[i]`` belong to ``jobs[i]``: each job gets exactly the
    checkpoints and events farm.train would give it. Resumes together when the jobs' checkpoints
    agree (all absent, all complete, or all at the same step); otherwise each job resumes alone
    through :func:`train_fast`, which is slower but loses nothing. ``should_stop`` stops them all
    (one :class:`~farm.train.Stopped`, after checkpointing every job that has a path).
    """
    jobs = list(jobs)
    for job in jobs:
        _check_poison(job)
    resolved = _resolve_device(device)
    _checked_group(jobs, data)
    paths = _per_job(checkpoint_paths, len(jobs), "checkpoint paths")
    sinks = _per_job(on_events, len(jobs), "event sinks")

    def body() -> list[TrainResult]:
        saved = _load_checkpoints(jobs, paths)
        if not _resumable_together(saved):
            del saved
            return [
                train_fast(job, data, device=device, checkpoint_path=path, on_event=sink,
                           should_stop=should_stop, cuda_graphs=cuda_graphs, dtype=dtype)
                for job, path, sink in zip(jobs, paths, sinks, strict=True)
            ]
        run = _FastRun(
            jobs, data, resolved, paths, sinks, should_stop, saved, use_graph=cuda_graphs, dtype=dtype,
            split_convs=split_convs,
        )
        return run.run()

    return run_guarded(resolved, body)
