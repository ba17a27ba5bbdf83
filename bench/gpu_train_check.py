"""One-shot CUDA check of the training path (run on a GPU machine; prints JSON lines).

1. smoke profile, 4 epochs on the synthetic set: the CUDA path (bf16 autocast, channels_last,
   device-resident data) runs and learns;
2. the nb101 profile, Inception-like cell, 1 epoch (156 steps) on a synthetic CIFAR-sized set:
   steps/s and images/s of the real loop, with evaluations on 3 x 9,984 images;
3. stop at step 60 with a checkpoint and resume: whether the final weights match the
   uninterrupted run (cuDNN autotuning may pick non-deterministic kernels, so this reports, not
   asserts);
4. no host synchronisation inside training steps (torch.cuda.set_sync_debug_mode("error") over
   steps that cross an epoch boundary of the stream).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# Run as `python3 bench/<this>.py`, Python puts bench/ first on sys.path, where a sibling module
# could shadow the standard library (as bench/queue.py once did); import from the repository root instead.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

import torch  # noqa: E402

from farm.config import NB101, SMOKE  # noqa: E402
from farm.data import load_cifar10, write_synthetic_cifar10  # noqa: E402
from farm.spec import Cell  # noqa: E402
from farm.train import Stopped, TrainJob, train  # noqa: E402
from farm.train.run import Run  # noqa: E402

INCEPTION = Cell.from_any(
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
     "output"],
)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    emit(device=torch.cuda.get_device_name(0), torch=torch.__version__)
    root = Path(tempfile.mkdtemp())
    small = load_cifar10(write_synthetic_cifar10(root / "small", images_per_batch=256))
    start = time.perf_counter()
    result = train(TrainJob(INCEPTION, 4, config=SMOKE), small, device="cuda")
    emit(check="smoke_cuda", seconds=round(time.perf_counter() - start, 2),
         evaluations=[[e["train_accuracy"], e["validation_accuracy"], e["test_accuracy"]]
                      for e in result.evaluations])

    full = load_cifar10(write_synthetic_cifar10(root / "full", images_per_batch=10_000))
    job = TrainJob(INCEPTION, 1, config=NB101)
    events: list[dict] = []
    start = time.perf_counter()
    reference = train(job, full, device="cuda", on_event=events.append)
    wall = time.perf_counter() - start
    steps = NB101.total_steps(1)
    emit(check="nb101_1_epoch", steps=steps, wall_s=round(wall, 2),
         training_time=round(reference.metrics["final_training_time"], 2),
         images_per_s_training=round((steps - 1) * 256 / reference.metrics["final_training_time"], 1),
         trainable_parameters=reference.metrics["trainable_parameters"],
         final=[reference.evaluations[-1][k] for k in ("train_accuracy", "validation_accuracy",
                                                       "test_accuracy")],
         peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))

    path = str(root / "stop.ckpt")
    polls = iter(range(10**6))
    try:
        train(job, full, device="cuda", checkpoint_path=path, should_stop=lambda: next(polls) >= 60)
    except Stopped as stopped:
        emit(check="stopped", step=stopped.step, checkpointed=stopped.checkpointed)
    resumed = train(job, full, device="cuda", checkpoint_path=path)
    emit(check="resume_cuda", resumed_from_step=resumed.resumed_from_step,
         identical_weights=resumed.weights_sha256 == reference.weights_sha256,
         final_resumed=[resumed.evaluations[-1][k] for k in ("train_accuracy", "validation_accuracy",
                                                             "test_accuracy")])
    check_no_host_sync(small)


def check_no_host_sync(data) -> None:
    config = replace(NB101, train_images=1200, eval_images=256)  # 1200/256: epochs end mid-batch
    run = Run([TrainJob(INCEPTION, 108, config=config)], data, torch.device("cuda"))
    run.train_step(0.0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(6):
            run.train_step(0.1)
        emit(check="no_host_sync", ok=True, steps=6)
    except RuntimeError as exc:
        emit(check="no_host_sync", ok=False, error=str(exc).splitlines()[0])
    finally:
        torch.cuda.set_sync_debug_mode(0)


if __name__ == "__main__":
    main()
