"""Connecting the driver to Ray: an embedded local cluster by default, or an existing one.

``address``: None or "local" starts a private local cluster with this machine's resources (it
goes away with the driver); "auto" joins the cluster started on this machine with ``ray start``
(or the one named by ``RAY_ADDRESS``); "HOST:PORT" joins that cluster's GCS; "ray://HOST:10001"
connects through the Ray client.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Environment variables forwarded to the worker processes (a shared cluster's workers inherit the
# environment of `ray start`, not the driver's): the nasfarm knobs, e.g. NASFARM_POISON_HASHES.
FORWARDED_ENV_PREFIX = "NASFARM_"


class ClusterError(RuntimeError):
    """Ray could not be started or reached; the message says which address was tried."""


@dataclass
class ClusterHandle:
    address: str
    started_local: bool
    owned: bool = True  # False: the caller had connected already and keeps its connection

    def disconnect(self) -> None:
        import ray

        if self.owned and ray.is_initialized():
            ray.shutdown()


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    log_to_driver: bool = True,
) -> ClusterHandle:
    """``ray.init`` for the farm; raises :class:`ClusterError` with a readable message."""
    import ray

    if ray.is_initialized():  # an embedding program (a notebook, the demo) already connected
        return ClusterHandle(address="(existing connection)", started_local=False, owned=False)
    local = address in (None, "", "local")
    runtime_env = {"env_vars": forwarded_env()} if forwarded_env() else None
    kwargs: dict = {
        "log_to_driver": log_to_driver,
        "logging_level": logging.WARNING,
        "runtime_env": runtime_env,
    }
    if local:
        # RAY_ADDRESS would silently turn "start a local cluster" into "join that one".
        os.environ.pop("RAY_ADDRESS", None)
        kwargs.update(include_dashboard=False, num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        ray.init(address=None if local else address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray cluster" if local else f"the Ray cluster at {address!r}"
        raise ClusterError(f"could not connect to {where}: {str(exc).splitlines()[0]}") from exc
    context = ray.get_runtime_context()
    gcs = getattr(context, "gcs_address", None) or address or "local"
    return ClusterHandle(address=str(gcs), started_local=local)
