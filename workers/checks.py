"""Node-local checks: can this machine train? (its checkpoint storage, its device)

Run by the driver's pre-flight for the cluster as a whole and by every worker when it starts, on its
own node: a node that fails them is drained before it takes a job.
"""

from __future__ import annotations

import os
import uuid

import fsspec


def storage_problems(root: str) -> list[str]:
    """Write, read back and delete a probe object under the checkpoint ``root``."""
    probe = f"{root.rstrip('/')}/.nasfarm-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    payload = b"nasfarm storage probe\n"
    try:
        fs, path = fsspec.core.url_to_fs(probe)
        fs.makedirs(fs._parent(path), exist_ok=True)
        with fs.open(path, "wb") as out:
            out.write(payload)
        with fs.open(path, "rb") as back:
            if back.read() != payload:
                return [f"checkpoint storage {root}: a probe read back different bytes"]
        fs.rm(path)
    except Exception as exc:  # any failure of the store is the answer, whatever its type
        return [f"checkpoint storage {root} is not writable: {type(exc).__name__}: {exc}"]
    return []


def device_problems(device: str, cuda_available: bool, *, where: str) -> list[str]:
    if device == "cuda" and not cuda_available:
        return [f"--device cuda: {where} has no usable CUDA GPU"]
    return []


def node_problems(device: str, storage_root: str) -> list[str]:
    """The node-local checks a worker runs when it starts (its answer goes back in ``ready()``)."""
    problems = storage_problems(storage_root)
    if device.startswith("cuda"):
        import torch

        try:
            ok = torch.cuda.is_available() and torch.cuda.device_count() > 0
            if ok:
                torch.zeros(1, device=device)  # a driver that loads but cannot allocate is sick too
        except Exception as exc:
            return [*problems, f"CUDA on this node fails: {type(exc).__name__}: {exc}"]
        problems += device_problems("cuda", ok, where="this node")
    return problems
