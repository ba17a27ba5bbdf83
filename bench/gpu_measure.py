"""bench/gpu.py's measurements: one cell in one mode, the whole-card mix, torch.compile."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import torch

from bench.gpu_setup import (
    CELLS,
    EPOCH_BUDGETS,
    EVALUATIONS_PER_RUN,
    MIX,
    PEAK_BF16_TFLOPS,
    TPU_108_SECONDS,
    Budget,
    Setup,
    StreamStep,
    make_cell,
    make_streams,
    model_for,
    peak_gib,
    reset_memory,
    sync,
    time_evaluation,
    time_steps,
)
from farm.config import NB101
from farm.cost import forward_flops, trainable_parameters
from farm.fused import split_grouped_convs
from farm.packing import jobs_per_gpu


def measure_row(name: str, cell, mode: str, setup: Setup, steps: int | None) -> dict[str, Any]:
    reset_memory(setup)
    config = setup.config
    t0 = time.perf_counter()
    repeats = 3 if mode.startswith("fused3") else 1
    bf16 = mode != "eager-fp32"
    model = model_for(cell, setup, repeats, channels_last=bf16 and setup.cuda)
    if mode == "fused3-split-graph":
        split_grouped_convs(model)
    streams = make_streams(setup, repeats, seed=len(name))
    step = StreamStep(model, setup, streams, mode="eager" if mode.startswith("eager") else "graph",
                      autocast=bf16, channels_last=bf16)
    build_seconds = time.perf_counter() - t0
    per_step, windows, warmup_seconds = time_steps(step, setup, steps)
    evaluation = time_evaluation(model, setup, repeats, bf16=bf16, use_graph=not mode.startswith("eager"))
    macs = forward_flops(cell, config)
    per_repeat_step = per_step / repeats
    per_repeat_eval = evaluation / repeats
    row: dict[str, Any] = {
        "cell": name,
        "hash": cell.hash,
        "mode": mode,
        "repeats": repeats,
        "forward_macs": macs,
        "trainable_parameters": trainable_parameters(cell, config),
        "ms_per_step": per_step * 1e3,
        "ms_per_repeat_step": per_repeat_step * 1e3,
        "window_ms": [w * 1e3 for w in windows],
        "images_per_s": config.batch_size / per_repeat_step,
        "evaluation_s_per_repeat": per_repeat_eval,
        "tflops": 6 * macs * config.batch_size / per_repeat_step / 1e12,
        "build_s": build_seconds,
        "warmup_s": warmup_seconds,
        "peak_gib": peak_gib(setup),
    }
    row["fraction_of_bf16_peak"] = row["tflops"] / PEAK_BF16_TFLOPS
    for epochs in EPOCH_BUDGETS:
        row[f"run_{epochs}ep_s"] = (
            config.total_steps(epochs) * per_repeat_step + EVALUATIONS_PER_RUN * per_repeat_eval
        )
    if name in TPU_108_SECONDS and config == NB101:  # only the real network compares
        row["tpu_108ep_s"] = TPU_108_SECONDS[name]
        row["speedup_vs_tpu_108ep"] = TPU_108_SECONDS[name] / row["run_108ep_s"]
    del step, model, streams
    return row


# -- whole-card throughput -----------------------------------------------------------------------


def run_concurrently(jobs: list[StreamStep], steps: int, setup: Setup) -> float:
    """Wall seconds for every job to take ``steps`` steps at once (a thread and a stream each)."""
    sync(setup.device)
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def work(job: StreamStep) -> None:
        try:
            stream = torch.cuda.Stream(setup.device) if setup.cuda else None
            context = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
            with context:
                barrier.wait()
                for _ in range(steps):
                    job()
                sync(setup.device)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    sync(setup.device)
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def measure_mix(setup: Setup, budget: Budget, steps: int, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    reset_memory(setup)
    cells = {name: make_cell(entry) for name, entry in MIX.items()}
    jobs = []
    for i, (name, cell) in enumerate(cells.items()):
        model = model_for(cell, setup, 1, channels_last=setup.cuda)
        job = StreamStep(model, setup, make_streams(setup, 1, seed=50 + i), mode="graph")
        for _ in range(setup.warmup):  # capture now, in this thread
            job()
        jobs.append((name, job))
    sync(setup.device)
    rows = []
    alone = {name: run_concurrently([job], steps, setup) for name, job in jobs}
    serial = sum(alone.values())
    images = len(jobs) * steps * setup.config.batch_size
    for n in counts:
        if n == 1:
            wall = serial
        else:
            if budget.left() < serial * 1.5:
                rows.append({"cell": "mix", "mode": f"N={n}", "skipped": "budget"})
                continue
            groups = [jobs[i : i + n] for i in range(0, len(jobs), n)]
            wall = sum(run_concurrently([job for _, job in group], steps, setup) for group in groups)
        rows.append({
            "cell": "mix", "mode": f"N={n} jobs/GPU", "jobs": len(jobs), "steps_per_job": steps,
            "wall_s": wall, "images_per_s": images / wall, "speedup_vs_N1": serial / wall,
            "alone_s": alone, "cells": {name: cells[name].hash for name in cells},
            "rule_jobs_per_gpu": {name: jobs_per_gpu(forward_flops(cells[name], setup.config))
                                  for name in cells},
            "peak_gib": peak_gib(setup),
        })
    return rows


# -- torch.compile ----------------------------------------------------------------------------------


def measure_compile(setup: Setup, graph_row: dict[str, Any] | None) -> dict[str, Any]:
    """Compile cost and compiled step time of the median cell (bf16 + channels_last, eager step)."""
    reset_memory(setup)
    cell = make_cell(CELLS["median"])
    model = model_for(cell, setup, 1, channels_last=setup.cuda)
    step = StreamStep(model, setup, make_streams(setup, 1, seed=77), mode="eager")
    step.step.model = torch.compile(model)
    t0 = time.perf_counter()
    step()  # compiles forward and backward
    step()
    sync(setup.device)
    compile_s = time.perf_counter() - t0
    per_step, _, _ = time_steps(step, setup, None)
    row: dict[str, Any] = {"cell": "median", "mode": "compiled-eager-bf16", "compile_s": compile_s,
                           "ms_per_step": per_step * 1e3, "images_per_s": setup.config.batch_size / per_step}
    if graph_row is not None and "ms_per_step" in graph_row:
        steps4 = setup.config.total_steps(4)
        row["run_4ep_train_s_compiled"] = compile_s + steps4 * per_step
        row["run_4ep_train_s_graph"] = steps4 * graph_row["ms_per_step"] / 1e3
        row["pays_off_at_4ep"] = row["run_4ep_train_s_compiled"] < row["run_4ep_train_s_graph"]
    return row

