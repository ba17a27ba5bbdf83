"""Node health: a node whose workers keep hitting environment faults is drained.

HTCondor and Slurm call it a black-hole node: it takes a job, fails it fast, takes the next. Here an
environment fault (``workers.faults``) releases the job uncharged and counts against the node; a
node with ``max_faults`` of them within ``window_s`` seconds is drained: the driver places no more
jobs there and retires its workers. A node drained is drained for the rest of the run (a person
fixes it and starts a new run). When every node with workers is drained, the run stops.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field


@dataclass
class NodeHealth:
    node_id: str
    label: str  # host/node shown to people
    faults: collections.deque[float] = field(default_factory=collections.deque)
    total_faults: int = 0
    last_error: str | None = None
    drained_at: float | None = None

    @property
    def state(self) -> str:
        if self.drained_at is not None:
            return "drained"
        return "unhealthy" if self.faults else "healthy"


class HealthBook:
    def __init__(self, max_faults: int = 3, window_s: float = 600.0, clock=time.monotonic):
        if max_faults < 1:
            raise ValueError(f"max_faults must be >= 1, got {max_faults}")
        self.max_faults = max_faults
        self.window_s = window_s
        self.clock = clock
        self.nodes: dict[str, NodeHealth] = {}

    def node(self, node_id: str, label: str = "") -> NodeHealth:
        health = self.nodes.get(node_id)
        if health is None:
            health = self.nodes[node_id] = NodeHealth(node_id, label or node_id)
        elif label:
            health.label = label
        return health

    def environment_fault(self, node_id: str, label: str, error: str) -> bool:
        """Record one fault; True when this fault drains the node."""
        health = self.node(node_id, label)
        now = self.clock()
        health.faults.append(now)
        health.total_faults += 1
        health.last_error = error
        while health.faults and now - health.faults[0] > self.window_s:
            health.faults.popleft()
        if health.drained_at is None and len(health.faults) >= self.max_faults:
            health.drained_at = now
            return True
        return False

    def is_drained(self, node_id: str | None) -> bool:
        health = self.nodes.get(node_id or "")
        return health is not None and health.drained_at is not None

    def drained(self) -> list[NodeHealth]:
        return [h for h in self.nodes.values() if h.drained_at is not None]
