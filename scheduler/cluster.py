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

# Environment variables the workers read, forwarded from the driver (a shared cluster's workers
# inherit the environment of `ray start`, not the driver's). Only when set: a runtime_env makes Ray
# start dedicated worker processes instead of reusing its pre-started idle ones.
FORWARDED_ENV = ("NASFARM_FAILPOINTS",)


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
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}


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
        # The embedded cluster serves this machine only: bind it to loopback, not the node's
        # network interface.
        kwargs.update(include_dashboard=False, num_cpus=num_cpus, num_gpus=num_gpus,
                      _node_ip_address="127.0.0.1")
    try:
        # "local", not None: ray.init(None) would join RAY_ADDRESS or the last cluster started on
        # this machine (/tmp/ray/ray_current_cluster), even a dead one, instead of starting ours.
        ray.init(address="local" if local else address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray cluster" if local else f"the Ray cluster at {address!r}"
        raise ClusterError(f"could not connect to {where}: {str(exc).splitlines()[0]}") from exc
    context = ray.get_runtime_context()
    gcs = getattr(context, "gcs_address", None) or address or "local"
    return ClusterHandle(address=str(gcs), started_local=local)
