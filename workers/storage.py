"""Where a job's checkpoint lives: one location per job (not per attempt), local path or fsspec URI.

The location is derived from the job's identity (campaign, cell hash, epochs, repeat), so any
attempt on any node finds the checkpoint of the previous one, provided the storage root is shared
(an NFS path mounted at the same place everywhere, or a URI such as ``s3://bucket/prefix``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

import fsspec

ENV_STORAGE = "NASFARM_STORAGE"


class JobIdentity(Protocol):
    campaign: str
    cell_hash: str
    epochs: int
    repeat: int


def is_uri(location: str) -> bool:
    return "://" in location


def default_storage() -> str:
    """``$NASFARM_STORAGE``, else the user's cache (``~/.cache/nasfarm/checkpoints``)."""
    if os.environ.get(ENV_STORAGE):
        return os.environ[ENV_STORAGE]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "nasfarm", "checkpoints")


def resolve_storage(storage: str | None) -> str:
    """An absolute local path or an unchanged URI, fixed in the driver so every worker agrees."""
    root = storage or default_storage()
    if is_uri(root):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def _safe(name: str) -> str:
    # Campaign names are user text; keep the path one component and portable.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "_"


def checkpoint_location(root: str, job: JobIdentity) -> str:
    return f"{root.rstrip('/')}/{_safe(job.campaign)}/{job.cell_hash}-e{job.epochs}-r{job.repeat}.ckpt"


def prepare_location(location: str) -> None:
    """Create the checkpoint's parent directory (a no-op on object stores)."""
    fs, path = fsspec.core.url_to_fs(location)
    fs.makedirs(fs._parent(path), exist_ok=True)


def checkpoint_exists(location: str) -> bool:
    fs, path = fsspec.core.url_to_fs(location)
    return fs.exists(path)


def remove_checkpoint(location: str) -> bool:
    """Delete the checkpoint once its job's result is committed; False if it was not there."""
    fs, path = fsspec.core.url_to_fs(location)
    try:
        fs.rm(path)
    except FileNotFoundError:
        return False
    return True


def quarantine_checkpoint(location: str, now: float | None = None) -> str | None:
    """Move a checkpoint that cannot be loaded (corrupt, or another job's) aside, next to where it
    was, as ``<name>.corrupt-<UTC time>``: kept for a person to inspect, out of the job's way so it
    restarts from epoch 0. Returns the new location, or None if there was nothing to move."""
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = f"{location}.corrupt-{stamp}"
    fs, path = fsspec.core.url_to_fs(location)
    _, target_path = fsspec.core.url_to_fs(target)
    try:
        fs.mv(path, target_path)
    except FileNotFoundError:
        return None
    return target
