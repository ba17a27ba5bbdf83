"""The training run: R >= 1 repeats of one cell, trained the NAS-Bench-101 way, resumable bit for bit.

The run (SPEC e.2, e.4, f.2): one update at learning rate 0 (it still moves BN statistics and the
RMSProp mean square), the "epoch 0" evaluation, then cosine-by-step training to
``int(E * images / batch)`` steps with evaluations at each intermediate fraction (halfway) and at
the end. Accuracy is measured in eval-mode BN on the first ``eval_images`` of train_eval
(data_batch_1), valid and test.

One :class:`Run` serves every trainer; what differs is a parameter, never a copy of the loop:

- how a step runs (:mod:`farm.train.step`): ``mode="eager"`` is the faithful trainer (host LR, op
  by op, bf16 autocast + channels_last on CUDA only); ``mode="graph"`` the fast one (static buffers,
  device LR, one CUDA-graph replay per step on a GPU when ``use_graph``);
- how the network is laid out: R = 1 the plain network; R > 1 the repeats side by side in one
  network (:mod:`farm.fused`), optionally with each grouped conv split into R plain ones.

Each repeat keeps its own initial weights, data order and augmentation, events, evaluations and
checkpoint file; a checkpoint holds one job's plain state whatever R and mode wrote it, so any
repeat resumes alone or grouped, in either mode.

Host synchronisation happens only at "sync points": epoch boundaries, evaluations, checkpoints and
stop requests. Between them the loss is accumulated on the device, so a non-finite loss is detected
at the next sync point (at most one epoch late) instead of costing an ``.item()`` per step; the
weights are never checkpointed or evaluated without that check. ``training_time`` is the wall time
of training steps only, read at sync points (after a device synchronise), excluding evaluations and
checkpoints -- and, like the original's timer, excluding the zero-LR first step, so it is 0 at the
epoch-0 evaluation. Fused repeats train concurrently: each one's ``training_time`` is the group's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from farm import checkpoint as ckpt
from farm import failpoints
from farm.augment import TrainStream
from farm.datasets import Splits
from farm.fused import (
    build_fused_network,
    fuse_state_dicts,
    split_grouped_convs,
    split_state_dict,
    split_tensor,
)
from farm.model import build_network, count_parameters
from farm.optim import cosine_by_step_lr
from farm.train.job import TrainJob, TrainResult, state_dict_digest, stream_seed
from farm.train.schedule import Schedule, Stopped, run_metrics
from farm.train.step import EvalStep, StepMode, TrainStep, eval_batch_size, loss_dtype, nb101_optimizer
from farm.train_errors import CheckpointError, NonFiniteLossError

EventSink = Callable[[dict], None] | None
StopRequest = Callable[[], bool] | None
EVAL_SPLITS = (("train", "train_eval"), ("validation", "valid"), ("test", "test"))


class Run:
    """One run of R >= 1 jobs of the same cell, epochs and config.

    ``saved[r]``: job r's checkpoint state (``farm.checkpoint.load``), all absent, all complete or
    all at the same step. ``autocast``/``channels_last``: None = on for CUDA (the benches flip them).
    """

    def __init__(self, jobs: Sequence[TrainJob], data: Splits, device: torch.device, *,
                 checkpoint_paths: Sequence[str | None] | None = None,
                 on_events: Sequence[EventSink] | None = None, should_stop: StopRequest = None,
                 saved: Sequence[dict[str, Any] | None] | None = None, mode: StepMode = "eager",
                 use_graph: bool = True, dtype: torch.dtype | None = None, split_convs: bool = False,
                 autocast: bool | None = None, channels_last: bool | None = None) -> None:
        self.wall_start = time.perf_counter()
        self.jobs = list(jobs)
        self.repeats = repeats = len(self.jobs)
        self.config = config = self.jobs[0].config
        self.device = device
        self.cuda = device.type == "cuda"
        self.mode = mode
        self.use_graph = use_graph
        self.checkpoint_paths = list(checkpoint_paths or [None] * repeats)
        self.checkpointing = any(path is not None for path in self.checkpoint_paths)
        self.on_events = list(on_events or [None] * repeats)
        self.should_stop = should_stop
        self.schedule = Schedule(config, self.jobs[0].epochs)
        self.autocast_dtype = torch.bfloat16 if (self.cuda if autocast is None else autocast) else None
        self.channels_last = self.cuda if channels_last is None else channels_last

        generators = [torch.Generator(device="cpu").manual_seed(stream_seed(j.seed, j.repeat, "init"))
                      for j in self.jobs]
        if repeats == 1:
            model = build_network(self.jobs[0].cell, config, generator=generators[0])
        else:
            model = build_fused_network(self.jobs[0].cell, config, generators)
        if split_convs:
            split_grouped_convs(model)
        self.trainable_parameters = count_parameters(model) // repeats
        if dtype is not None:
            model = model.to(dtype)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # autotuned once per conv shape per process
        if self.channels_last:
            model = model.to(device, memory_format=torch.channels_last)
        else:
            model = model.to(device)
        self.model = model.train()
        self.optimizer = nb101_optimizer(model.parameters(), config)
        # One device copy of the training images, shared by the repeats' streams.
        train_images = data.train[0][: config.train_images].to(device)
        train_labels = data.train[1][: config.train_images].to(device)
        # The data set's normalisation statistics, for training and evaluation alike.
        self.mean, self.std = tuple(data.mean), tuple(data.std)
        self.streams = [
            TrainStream(train_images, train_labels, config.batch_size,
                        order_seed=stream_seed(j.seed, j.repeat, "order"),
                        augment_seed=stream_seed(j.seed, j.repeat, "augment"), mean=self.mean, std=self.std)
            for j in self.jobs
        ]
        n = config.eval_images
        self.eval_batch = eval_batch_size(n, config.batch_size) if mode == "graph" else config.batch_size
        self.eval_splits = {
            name: (getattr(data, split)[0][:n].to(device), getattr(data, split)[1][:n].to(device))
            for name, split in EVAL_SPLITS
        }
        # Run state (all of it goes into checkpoints).
        self.step = 0
        self.training_time = 0.0
        self.elapsed_before = 0.0  # wall time of earlier attempts, up to their last checkpoint
        self.evaluations: list[list[dict[str, Any]]] = [[] for _ in self.jobs]
        param_dtype = next(model.parameters()).dtype
        self.loss_sum = torch.zeros((repeats,), dtype=loss_dtype(param_dtype), device=device)
        self.loss_count = 0
        self.resumed_from_step = 0
        self.finished: list[TrainResult] | None = None
        self.stepper: TrainStep | None = None
        self.evaluator: EvalStep | None = None
        if saved is None:
            saved = [ckpt.load(path, job.identity()) if path is not None else None
                     for job, path in zip(self.jobs, self.checkpoint_paths, strict=True)]
        self._restore(saved)

    # -- steps -------------------------------------------------------------------------------

    def train_step(self, lr: float | None = None) -> None:
        """One update, no host sync. ``lr``: None = the schedule's (the loop); the benches
        (bench/train_cpu.py, bench/gpu_train_check.py) pass a fixed one to an eager run."""
        if self.stepper is None:  # built after any restore: a graph captures the restored tensors
            self.stepper = TrainStep(
                self.model, self.optimizer, repeats=self.repeats, batch_size=self.config.batch_size,
                total_steps=self.schedule.total_steps, base_lr=self.config.learning_rate, step=self.step,
                loss_sum=self.loss_sum, autocast_dtype=self.autocast_dtype, channels_last=self.channels_last,
                mode=self.mode, use_graph=self.use_graph,
            )
        batches = [stream.next_batch() for stream in self.streams]
        self.stepper([images for images, _ in batches], [labels for _, labels in batches], lr)
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
                f"non-finite training loss before step {self.step} "
                f"(epoch {self.schedule.epoch_at(self.step):.2f})"
                + (f" in repeat(s) {which}" if self.repeats > 1 else "")
            )

    def _end_epoch(self) -> None:
        for r, total in enumerate(self.loss_sum.tolist()):
            self._emit(r, "epoch", loss=float(total) / max(self.loss_count, 1))
        self.loss_sum.zero_()
        self.loss_count = 0

    def _emit(self, r: int, kind: str, **fields: Any) -> None:
        sink = self.on_events[r]
        if sink is not None:
            event = {"kind": kind, "epoch": self.schedule.epoch_at(self.step), "step": self.step,
                     "training_time": self.training_time}
            event.update(fields)
            sink(event)

    def _evaluate(self, nominal_epoch: float, recorded_steps: int) -> None:
        if self.evaluator is None:
            self.evaluator = EvalStep(self.model, repeats=self.repeats, batch_size=self.eval_batch,
                                      autocast_dtype=self.autocast_dtype, channels_last=self.channels_last,
                                      mode=self.mode, use_graph=self.use_graph, mean=self.mean, std=self.std)
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
            entry = {"epochs": nominal_epoch, "training_steps": recorded_steps,
                     "training_time": self.training_time, **accuracies}
            self.evaluations[r].append(entry)
            self._emit(r, "evaluation", **accuracies, epoch=nominal_epoch)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> list[TrainResult]:
        if self.finished is None:
            self._train_loop()
            self.finished = self._finish()
        return self.finished

    def _train_loop(self) -> None:
        """Train from ``self.step`` to the end; raises :class:`Stopped` on request."""
        schedule, total = self.schedule, self.schedule.total_steps
        segment_start = time.perf_counter()
        while self.step < total:
            if self.should_stop is not None and self.should_stop():
                self._synchronize()
                if self.step > 0:
                    self.training_time += time.perf_counter() - segment_start
                self._check_finite()
                if self.checkpointing:
                    self._checkpoint()
                epoch = schedule.epoch_at(self.step)
                raise Stopped(checkpointed=self.checkpointing, step=self.step, epoch=epoch)
            if failpoints.ENABLED:
                failpoints.hit("train.step", cell=self.jobs[0].cell.hash, step=self.step)
            self.train_step()
            self.step += 1
            step = self.step
            epoch_end = schedule.crossed(step, 1.0) or step == total
            checkpoint_due = self.checkpointing and schedule.crossed(step, schedule.checkpoint_every_epochs)
            evaluation = step == 1 or step in schedule.evaluation_points
            if not (epoch_end or checkpoint_due or evaluation):
                continue
            # A sync point: stop the training clock (the zero-LR first step is not counted).
            self._synchronize()
            if step > 1:
                self.training_time += time.perf_counter() - segment_start
            self._check_finite()
            if epoch_end:
                self._end_epoch()
            if step == 1:
                self._evaluate(0.0, 0)
            if step in schedule.evaluation_points:
                self._evaluate(schedule.evaluation_points[step], step)
            if checkpoint_due and step < total:
                self._checkpoint()
            segment_start = time.perf_counter()

    # -- checkpoints and results -----------------------------------------------------------------

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.wall_start)

    def _write(self, r: int, state: dict[str, Any], **event: Any) -> None:
        path = self.checkpoint_paths[r]
        if path is None:
            return
        failpoints.hit("checkpoint.write", cell=self.jobs[r].cell.hash, repeat=self.jobs[r].repeat,
                       step=self.step, complete=state["complete"])
        ckpt.save(path, self.jobs[r].identity(), state)
        self._emit(r, "checkpoint", path=path, **event)

    def _optimizer_states(self) -> list[dict[str, Any]]:
        """The optimizer state as R plain TFRMSprop state dicts, the LR the float of the last update."""
        full = self.optimizer.state_dict()
        last_lr = cosine_by_step_lr(self.step - 1, self.schedule.total_steps, self.config.learning_rate)
        groups = [{**group, "lr": last_lr} for group in full["param_groups"]]
        parts: list[dict[str, Any]] = [{"state": {}, "param_groups": groups} for _ in range(self.repeats)]
        for index, slots in full["state"].items():
            pieces = {name: split_tensor(value, self.repeats) for name, value in slots.items()}
            for r in range(self.repeats):
                parts[r]["state"][index] = {name: pieces[name][r] for name in slots}
        return parts

    def _checkpoint(self) -> None:
        models = split_state_dict(self.model.state_dict(), self.repeats)
        optimizers = self._optimizer_states()
        elapsed = self._elapsed()
        for r in range(self.repeats):
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
            self._write(r, state)

    def _restore(self, saved: Sequence[dict[str, Any] | None]) -> None:
        if all(state is None for state in saved):
            return
        total = self.schedule.total_steps
        if all(state is not None and state.get("complete") for state in saved):
            self.finished = []
            for state in saved:
                result = TrainResult.from_dict(state["result"])
                result.resumed_from_step = total
                result.resumed_from_epoch = self.schedule.epoch_at(total)
                self.finished.append(result)
            return
        states = list(saved)
        try:
            self.model.load_state_dict(fuse_state_dicts([s["model"] for s in states]))
            fused_slots = {index: {name: torch.cat([s["optimizer"]["state"][index][name] for s in states])
                                   for name in slots}
                           for index, slots in states[0]["optimizer"]["state"].items()}
            self.optimizer.load_state_dict(
                {"state": fused_slots, "param_groups": self.optimizer.state_dict()["param_groups"]})
            for stream, state in zip(self.streams, states, strict=True):
                stream.load_state_dict(state["stream"])
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
            where = ", ".join(str(p) for p in self.checkpoint_paths)
            raise CheckpointError(f"checkpoint {where} does not fit this job: {exc}") from exc
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

    def _provenance(self) -> dict[str, Any]:
        """Stored with each result (the results table's ``extra``): which trainer made it. A
        result without ``trainer`` is the faithful (eager, plain) trainer's."""
        extra: dict[str, Any] = {}
        if self.mode == "graph":
            extra = {"trainer": "fast", "cuda_graphs": self.use_graph and self.cuda}
        if self.repeats > 1:
            extra["fused_repeats"] = self.repeats
        return extra

    def _finish(self) -> list[TrainResult]:
        models = split_state_dict(self.model.state_dict(), self.repeats)
        elapsed = self._elapsed()
        results = []
        for r, evaluations in enumerate(self.evaluations):
            metrics = run_metrics(evaluations, self.jobs[r].epochs,
                                  trainable_parameters=self.trainable_parameters, total_time=elapsed)
            results.append(TrainResult(
                metrics=metrics, evaluations=[dict(e) for e in evaluations],
                resumed_from_step=self.resumed_from_step,
                resumed_from_epoch=self.schedule.epoch_at(self.resumed_from_step),
                weights_sha256=state_dict_digest(models[r]), extra=self._provenance(),
            ))
            # Replace the (large) training state with the result: a retry after a crash between
            # here and the caller recording the result returns it without training again.
            self._write(r, {"complete": True, "result": results[r].to_dict()}, complete=True)
        return results
