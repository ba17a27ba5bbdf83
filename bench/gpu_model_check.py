"""Device check of farm.model on CUDA (run on a GPU machine): same init as on the CPU, same
forward, channels_last + bf16 autocast, and the cost of the sharded (ghost) BatchNorm.

Prints facts and ratios measured in this process. Usage: python3 bench/gpu_model_check.py
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from farm.config import NB101
from farm.model import build_network
from farm.spec import Cell

INCEPTION = Cell.from_any(
    [[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0]],
    ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu",
     "maxpool3x3", "output"],
)


def same_init_everywhere() -> None:
    cpu = build_network(INCEPTION, NB101, generator=torch.Generator().manual_seed(1))
    with torch.device("cuda"):
        gpu = build_network(INCEPTION, NB101, generator=torch.Generator().manual_seed(1))
    moved = {k: v.cpu() for k, v in gpu.state_dict().items()}
    same = all(torch.equal(moved[k], v) for k, v in cpu.state_dict().items())
    print(f"built on cuda == built on cpu (same generator seed): {same}")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out_cpu = cpu.train()(x)
        out_gpu = gpu.train()(x.cuda()).cpu()
    print(f"train-mode logits cpu vs cuda fp32, max abs diff: {(out_cpu - out_gpu).abs().max():.2e}")
    rm_cpu = cpu.stem.bn.running_mean
    rm_gpu = gpu.stem.bn.running_mean.cpu()
    print(f"stem BN running mean cpu vs cuda, max abs diff: {(rm_cpu - rm_gpu).abs().max():.2e}")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True


def step_time(shard: int, bf16: bool, channels_last: bool, steps: int = 30) -> float:
    config = replace(NB101, bn_shard_size=shard)
    with torch.device("cuda"):
        model = build_network(INCEPTION, config, generator=torch.Generator().manual_seed(0))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(256, 3, 32, 32, device="cuda").to(memory_format=fmt)
    y = torch.randint(0, 10, (256,), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    torch.backends.cudnn.benchmark = True
    print(torch.cuda.get_device_name(), torch.__version__)
    same_init_everywhere()
    with torch.device("cuda"):
        m = build_network(INCEPTION, NB101).to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = m.stem(x)
    print(f"stem output channels_last under bf16 autocast: "
          f"{h.is_contiguous(memory_format=torch.channels_last)}, dtype {h.dtype}")
    base = step_time(0, False, False)
    print(f"Inception nb101 batch 256 train step, fp32 NCHW, whole-batch BN: {base * 1e3:.1f} ms")
    for shard, bf16, cl in [(128, False, False), (0, True, True), (128, True, True)]:
        t = step_time(shard, bf16, cl)
        print(f"  shard={shard:<3} bf16={bf16!s:<5} channels_last={cl!s:<5}: {t * 1e3:7.1f} ms "
              f"({256 / t:8.0f} img/s, {base / t:5.2f}x vs fp32 NCHW whole-batch BN)")


if __name__ == "__main__":
    main()
