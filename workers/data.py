"""The dataset travels to workers once per node through Ray's object store.

The driver reads CIFAR-10 from ``--data-dir`` once and ``ray.put``s it as plain numpy arrays. Ray
copies an object to a node the first time a task there needs it and keeps it in that node's
shared-memory store, so every worker actor on a node maps the same pages (numpy arrays deserialize
zero-copy); the tensors handed to training are views of that shared memory, read-only.
"""

from __future__ import annotations

import warnings
from typing import Any

SPLITS = ("train", "valid", "test", "train_eval")


def to_payload(splits) -> dict[str, Any]:
    """CifarSplits -> {split: (images uint8 array, labels int64 array)} for ``ray.put``."""
    return {name: tuple(t.numpy() for t in getattr(splits, name)) for name in SPLITS}


def from_payload(payload: dict[str, Any]):
    """The inverse: CifarSplits whose tensors share the payload's (object store) memory."""
    import torch

    from farm.data import CifarSplits

    with warnings.catch_warnings():
        # Object-store arrays are read-only; training only reads them (batches are gathered copies).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return CifarSplits(**{
            name: tuple(torch.from_numpy(array) for array in payload[name]) for name in SPLITS
        })
