"""Claiming: lease runnable pending jobs to an owner, one by one or a cell's repeats together."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from db.errors import IncompleteCampaign, translated
from db.queue_core import DEFAULT_LEASE_TTL_S, QueueCore
from db.statements import queue as q

Cells = dict[int, tuple[str, list[list[int]], list[str]]]  # cell id -> (hash, matrix, ops)


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    campaign: str
    cell_hash: str
    matrix: list[list[int]]
    ops: list[str]
    epochs: int
    repeat: int
    seed: int
    attempt: int
    max_attempts: int
    lease_token: str
    checkpoint_location: str | None
    profile: dict[str, Any]


class Claims(QueueCore):
    @translated
    def claim(
        self,
        n: int,
        owner: str,
        *,
        campaigns: Sequence[str] | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> list[ClaimedJob]:
        """Lease up to ``n`` runnable pending jobs to ``owner``: highest priority first, then the
        campaign's order (job id).

        ``campaigns`` restricts the claim to those campaigns (by name; unknown names raise
        :class:`UnknownCampaign`), served in the order given. Each claim charges the job an attempt.
        The leases expire ``lease_ttl_s`` seconds from now unless heartbeats renew them: the
        owner's TTL, which any reaper honours whatever its own.
        """
        if n <= 0 or (campaigns is not None and not campaigns):
            return []
        params: dict[str, Any] = {"owner": owner, "lease_ttl": lease_ttl_s}
        with self._statements() as conn:
            rows: list[Any] = []
            for campaign_filter, extra in self._campaign_filters(conn, campaigns):
                statement = self._statement(self.sql.claim_jobs, campaign_filter=campaign_filter)
                rows += conn.execute(statement, {**params, **extra, "n": n - len(rows)}).mappings().all()
                if len(rows) >= n:
                    break
            cells = self._log_claims(conn, rows, owner)
        if campaigns is None:  # RETURNING does not keep the ORDER BY
            rows.sort(key=lambda r: (-r["priority"], r["id"]))
        else:
            position = {name: i for i, name in enumerate(campaigns)}
            rows.sort(key=lambda r: (position[self._campaigns[r["campaign_id"]][0]], -r["priority"], r["id"]))
        return self._claimed_jobs(rows, cells)

    @translated
    def claim_groups(
        self,
        n_groups: int,
        owner: str,
        *,
        campaigns: Sequence[str] | None = None,
        max_group: int = 3,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> list[list[ClaimedJob]]:
        """Lease up to ``n_groups`` groups of jobs that share (campaign, cell, epochs) -- the
        repeats of a cell, to train together as one fused network.

        Each group's lead is the job :meth:`claim` would take next (same order, same
        ``campaigns``); with it come up to ``max_group - 1`` other runnable pending jobs of its
        (campaign, cell, epochs). PostgreSQL skips siblings another claimer holds locked (they
        are its to claim), never waiting for them. Every job is an ordinary claim (attempt + 1,
        its own lease token and ``lease_ttl_s``, its own claim event), so heartbeat, complete,
        fail, release and the reaper keep working job by job. Returns the groups in their leads'
        claim order, each sorted by ``repeat``; fewer (possibly none) when the queue runs dry.
        ``max_group=1`` claims exactly what ``claim(n_groups, ...)`` would, one job per group.
        """
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1 (jobs per group), not {max_group}")
        if n_groups <= 0 or (campaigns is not None and not campaigns):
            return []
        params: dict[str, Any] = {"owner": owner, "max_group": max_group, "lease_ttl": lease_ttl_s}
        # PostgreSQL: one autocommitted statement per group (n_groups is small: the idle workers),
        # so a crash between two leaves each group claimed whole or not at all.
        with self._statements() as conn:
            groups: list[list[Any]] = []
            for campaign_filter, extra in self._campaign_filters(conn, campaigns):
                statement = self._statement(self.sql.claim_group, campaign_filter=campaign_filter)
                while len(groups) < n_groups:
                    rows = conn.execute(statement, {**params, **extra}).mappings().all()
                    if not rows:  # no lead left in this campaign (a lead found is always in its group)
                        break
                    groups.append(sorted(rows, key=lambda r: r["repeat"]))
            cells = self._log_claims(conn, [r for group in groups for r in group], owner)
        return [self._claimed_jobs(group, cells) for group in groups]

    def _campaign_filters(
        self, conn: sa.Connection, campaigns: Sequence[str] | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The claim's ``{campaign_filter}`` fragments with their parameters: none, or one campaign
        at a time in the order given -- each claim then walks that campaign's own pending index
        (ix_jobs_campaign_claim) instead of everyone's. A campaign whose creation has not finished
        enqueueing is never claimed from: named, it raises :class:`IncompleteCampaign`; unnamed,
        it is left out."""
        if campaigns is None:
            unfinished = [int(cid) for (cid,) in conn.execute(self._sql(q.UNFINISHED_CAMPAIGNS))]
            if not unfinished:
                return [("", {})]
            # ids read from the database, never a caller's string
            return [(f"AND campaign_id NOT IN ({', '.join(map(str, unfinished))})", {})]
        ids = self._campaign_ids(conn, campaigns)
        self._require_enqueued(conn, ids)
        return [("AND campaign_id = :campaign_id", {"campaign_id": campaign_id}) for campaign_id in ids]

    def _require_enqueued(self, conn: sa.Connection, campaign_ids: Sequence[int]) -> None:
        """Raise :class:`IncompleteCampaign` for a campaign whose creation is unfinished (a complete
        one stays complete: cached)."""
        unknown = sorted(set(campaign_ids) - self._enqueued)
        if not unknown:
            return
        statement = self.sql.render(q.UNFINISHED_AMONG, expanding=("ids",))
        unfinished = conn.execute(statement, {"ids": unknown}).all()
        if unfinished:
            name = unfinished[0][1]
            raise IncompleteCampaign(
                f"campaign {name!r} is incomplete: its creation is still enqueueing jobs or was "
                "interrupted; run the same `nasfarm campaign create` again to complete it"
            )
        self._enqueued.update(unknown)

    def _log_claims(self, conn: sa.Connection, rows: Sequence[Any], owner: str) -> Cells:
        """After the claim statements, on their connection: the claim events (unless the claim
        statements logged them), the claimed jobs' cells, and their campaigns cached."""
        if not rows:
            return {}
        if self.sql.compound_writes:  # logged by the claim, which also returned the cells
            cells = {r["cell_id"]: (r["cell_hash"], json.loads(r["matrix"]), json.loads(r["ops"]))
                     for r in rows}
        else:
            events = [
                {"job_id": r["id"], "attempt": r["attempts"], "owner": owner, "at": r["claimed_at"]}
                for r in rows
            ]
            conn.execute(self._statement(q.CLAIM_EVENTS), events)
            statement = self.sql.render(q.CELLS, expanding=("ids",))
            found = conn.execute(statement, {"ids": sorted({r["cell_id"] for r in rows})})
            cells = {i: (h, json.loads(matrix), json.loads(ops)) for i, h, matrix, ops in found}
        self._campaign_info(conn, {r["campaign_id"] for r in rows})
        return cells

    def _claimed_jobs(self, rows: Sequence[Any], cells: Cells) -> list[ClaimedJob]:
        """ClaimedJobs from claimed rows, in the rows' order (campaigns must be cached)."""
        claimed = []
        for r in rows:
            cell_hash, matrix, ops = cells[r["cell_id"]]
            name, profile = self._campaigns[r["campaign_id"]]
            claimed.append(
                ClaimedJob(
                    job_id=r["id"],
                    campaign=name,
                    cell_hash=cell_hash,
                    matrix=matrix,
                    ops=ops,
                    epochs=r["epochs"],
                    repeat=r["repeat"],
                    seed=r["seed"],
                    attempt=r["attempts"],
                    max_attempts=r["max_attempts"],
                    lease_token=r["lease_token"],
                    checkpoint_location=r["checkpoint_location"],
                    profile=dict(profile),
                )
            )
        return claimed
