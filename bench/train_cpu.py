"""Training throughput (images/s) of our pipeline vs the usual PyTorch way, in one process.

Both train the nb101 network of the Inception-like cell with batch 256 on the current device:

* ours: the dataset resident on the device as uint8, batched pad/crop/flip/normalise there
  (farm.augment), TF1 RMSProp with foreach ops (farm.optim), the exact step of farm.train.train
  (bf16 autocast + channels_last on CUDA, float32 on CPU);
* baseline: torchvision transforms on PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize) + DataLoader workers + torch.optim.RMSprop, float32.

Each side runs ``--warmup`` untimed steps, then ``--steps`` timed ones; the figure is timed
images / timed seconds. The ratio is ours / baseline. Absolute numbers depend on the machine's
load, so the script prints ``os.getloadavg()`` next to them.

    python3 bench/train_cpu.py                      # CPU, synthetic data, 3 timed steps each
    python3 bench/train_cpu.py --device cuda --steps 30 --warmup 5
    python3 bench/train_cpu.py --data-dir ~/.cache/nasfarm/cifar10   # real CIFAR-10 if placed
"""

from __future__ import annotations

import argparse
import json
import os
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
import torch.nn.functional as F  # noqa: E402

from farm.augment import CIFAR_MEAN, CIFAR_STD  # noqa: E402
from farm.config import NB101  # noqa: E402
from farm.data import load_cifar10, missing_files, write_synthetic_cifar10  # noqa: E402
from farm.spec import Cell  # noqa: E402

INCEPTION = Cell.from_any(
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3",
     "output"],
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_ours(
    data, device: torch.device, batch: int, warmup: int, steps: int, *,
    autocast: bool | None = None, channels_last: bool | None = None, profile: bool = False,
) -> float:
    from farm.train import TrainJob
    from farm.train.run import Run

    n = data.train[0].shape[0]
    # The production run object (the faithful, eager step), on however many images we have;
    # evaluation is not measured.
    config = replace(NB101, batch_size=batch, train_images=n, eval_images=min(n, batch))
    run = Run([TrainJob(INCEPTION, 108, config=config)], data, device, autocast=autocast,
              channels_last=channels_last)
    for _ in range(warmup):
        run.train_step(0.1)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run.train_step(0.1)
    _sync(device)
    rate = steps * batch / (time.perf_counter() - start)
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch_profile(activities=activities) as prof:
            for _ in range(3):
                run.train_step(0.1)
            _sync(device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=15), file=sys.stderr)
        kernels = sum(e.count for e in prof.key_averages() if e.device_type.name == "CUDA")
        print(f"CUDA kernels per step: {kernels / 3:.0f}", file=sys.stderr)
    return rate


class _PilCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image through a transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images.numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def bench_baseline(data, device: torch.device, batch: int, warmup: int, steps: int, workers: int) -> float:
    from torchvision import transforms

    from farm.model import build_network

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([m / 255 for m in CIFAR_MEAN], [s / 255 for s in CIFAR_STD]),
    ])
    loader = torch.utils.data.DataLoader(
        _PilCifar(*data.train, transform), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )
    model = build_network(INCEPTION, NB101).to(device).train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.1, alpha=0.9, eps=1.0, momentum=0.9,
                                    weight_decay=1e-4)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step() -> None:
        images, labels = next(stream)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per pipeline")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per pipeline")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-dir", type=Path, default=None, help="a placed CIFAR-10 (default: synthetic)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    parser.add_argument("--variants", action="store_true",
                        help="also time ours without autocast and/or without channels_last")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of ours")
    parser.add_argument("--baseline-first", action="store_true",
                        help="time the baseline before ours (to see drift in the machine's load)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.data_dir and not missing_files(args.data_dir):
        data, source = load_cifar10(args.data_dir), "cifar10"
    else:
        folder = Path(tempfile.mkdtemp(prefix="nasfarm-bench-"))
        per_file = max(args.batch_size * (args.steps + args.warmup) // 4 + 1, 256)
        data, source = load_cifar10(write_synthetic_cifar10(folder, images_per_batch=per_file)), "synthetic"

    def run_baseline() -> float:
        return bench_baseline(data, device, args.batch_size, args.warmup, args.steps, args.workers)

    baseline = run_baseline() if args.baseline_first else None
    ours = bench_ours(data, device, args.batch_size, args.warmup, args.steps, profile=args.profile)
    variants = {}
    if args.variants:
        for name, autocast, channels_last in (("fp32_channels_last", False, True),
                                              ("fp32_nchw", False, False), ("bf16_nchw", True, False)):
            variants[name] = round(bench_ours(data, device, args.batch_size, args.warmup, args.steps,
                                              autocast=autocast, channels_last=channels_last), 1)
    if baseline is None:
        baseline = run_baseline()
    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "data": source,
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "order": "baseline, ours" if args.baseline_first else "ours, baseline",
        "ours_images_per_s": round(ours, 2),
        "baseline_images_per_s": round(baseline, 2),
        "ratio": round(ours / baseline, 3),
        **({"ours_variants_images_per_s": variants} if variants else {}),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"device {report['device']} ({report['torch_threads']} torch threads), {source} data, "
          f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"order: {report['order']}")
    print(f"  ours      {ours:9.1f} images/s  (device-resident uint8, batched augmentation, TF RMSProp)")
    print(f"  baseline  {baseline:9.1f} images/s  (torchvision transforms + "
          f"DataLoader({args.workers} workers) + torch.optim.RMSprop)")
    print(f"  ratio     {ours / baseline:9.3f}x")
    for name, rate in variants.items():
        print(f"  ours, {name:18s} {rate:9.1f} images/s")
    print(f"  load average {report['loadavg']}")


if __name__ == "__main__":
    main()
