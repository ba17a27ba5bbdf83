"""The data set travels to workers once per node through Ray's object store.

The driver reads the campaigns' data set from ``--data-dir`` once and ``ray.put``s it as plain
numpy arrays plus what training needs to know of it (name, classes, normalisation, fingerprint).
Ray copies an object to a node the first time a task there needs it and keeps it in that node's
shared-memory store, so every worker actor on a node maps the same pages (numpy arrays deserialize
zero-copy); the tensors handed to training are views of that shared memory, read-only.

With ``--data-from nodes`` each worker reads its own node's copy instead; what travels is then only
the expectation (:func:`expectation_payload`): which data set to read and the fingerprint its copy
must have, so that a node whose copy differs is found and drained.
"""

from __future__ import annotations

import warnings
from typing import Any

SPLITS = ("train", "valid", "test", "train_eval")
_META = "meta"
_EXPECT = "expect"


def to_payload(splits) -> dict[str, Any]:
    """Splits -> {split: (images uint8 array, labels int64 array), "meta": {...}} for ``ray.put``."""
    payload: dict[str, Any] = {name: tuple(t.numpy() for t in getattr(splits, name)) for name in SPLITS}
    payload[_META] = {"dataset": splits.dataset, "num_classes": splits.num_classes,
                      "mean": tuple(splits.mean), "std": tuple(splits.std), "fingerprint": splits.fingerprint}
    return payload


def from_payload(payload: dict[str, Any]):
    """The inverse: Splits whose tensors share the payload's (object store) memory (a payload
    without "meta" is CIFAR-10's, as payloads were before other data sets)."""
    import torch

    from farm.datasets import Splits

    with warnings.catch_warnings():
        # Object-store arrays are read-only; training only reads them (batches are gathered copies).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {name: tuple(torch.from_numpy(array) for array in payload[name]) for name in SPLITS}
    meta = dict(payload.get(_META) or {})
    for key in ("mean", "std"):
        if key in meta:
            meta[key] = tuple(meta[key])
    return Splits(**tensors, **meta)


def expectation_payload(dataset: str, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    """What each node's own copy must be (``--data-from nodes``): the data set, and the fingerprint
    the campaigns recorded (None: not recorded, any readable copy will do)."""
    return {_EXPECT: {"dataset": dataset, "fingerprint": fingerprint}}


def expectation(payload: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """(data set, fingerprint) a node's copy must match; CIFAR-10 and nothing when none was sent."""
    expected = (payload or {}).get(_EXPECT) or {}
    return str(expected.get("dataset") or "cifar10"), expected.get("fingerprint")


def node_copy_problems(expected: dict[str, Any] | None, actual: dict[str, Any] | None) -> list[str]:
    """One line when this node's copy is not the one the campaigns were created with."""
    if expected is None or actual is None:
        return []
    from farm.datasets import differences

    differ = differences(expected, actual)
    if not differ:
        return []
    return ["data set on this node differs from the campaigns' (campaign's vs this node's: "
            + "; ".join(differ) + ")"]
