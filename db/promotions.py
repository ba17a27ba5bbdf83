"""Adaptive campaigns: promotion decisions, made in the database and recorded there.

An adaptive campaign (``campaigns.promote_*`` set) enqueues jobs at its first budget only. A cell's
jobs at the next budget are enqueued once it ranks in the top fraction f of the cells at its
current budget (mean final validation accuracy over its finished repeats, ties broken by hash: the
rule of :mod:`farm.adaptive`, in SQL):

- **rounds** (the default): when a budget is *complete*, exactly ceil(f x n) of its n ranked cells
  are promoted at once;
- **async** (ASHA-style): whenever a pass runs, the top floor(f x m) of the m cells finished so far
  are promoted (those not promoted yet), and the round at completion tops the budget up to the
  ceil(f x n) best; a cell promoted early stays promoted.

Rules for the edges, and why:

- A budget is *complete* when every job there is done or failed. A *cancelled* job holds the round
  (no decision until ``nasfarm retry --include-cancelled`` sends it back): cancelling is how a
  campaign is stopped, and a promotion would restart it on half the evidence.
- A cell is *ranked* when it has a finished repeat (mean over those it has); a cell whose repeats
  all failed is not ranked and never promoted. n counts ranked cells.
- A cell promoted gets every repeat at the next budget, whenever it is promoted, with the seed each
  repeat has at every budget.
- A decision, once recorded, is never revisited: retrying a job later changes no round.

Every decision is one transaction that takes the campaign's lock (PostgreSQL: its row, ``FOR
UPDATE``; SQLite: the single writer), reads the rounds afresh, checks the budget is complete and
undecided, and writes the round (an ``UPDATE ... WHERE decided_at IS NULL``), the promotions (unique
on campaign, budget, cell) and the next budget's jobs (unique on campaign, cell, epochs, repeat)
together. Two drivers deciding at once therefore decide once; a decider that crashes leaves nothing.
Rounds mode is a function of the results alone, so a resumed or repeated campaign decides the same.
Async decisions depend on the order results arrive; the recorded ones stand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from db.counts import counting_new_jobs
from db.dialect import dialect_of
from db.engine import read_connection
from db.errors import translated, translating
from db.queue_core import QueueCore
from db.statements import promotions as q
from db.urls import redact
from farm.adaptive import PromotionRule


@dataclass(frozen=True)
class RoundDecision:
    """A budget's round as decided (recorded in ``promotion_rounds``)."""

    campaign: str
    epochs: int
    next_epochs: int
    cells: int  # cells with jobs at the budget
    cells_ranked: int  # n
    promoted: int  # cells promoted from this budget in all (async: early ones included)
    threshold: float | None  # mean of the ceil(f x n)-th cell; None when nothing was ranked
    jobs_added: int


@dataclass
class PromotionPass:
    """What one :meth:`Promotions.promote_ready_budgets` call did and found."""

    rounds: list[RoundDecision] = field(default_factory=list)
    promoted_early: int = 0  # async promotions before their budget completed
    jobs_added: int = 0
    # Campaigns with a budget reached but not decided whose jobs are not all finished yet: a
    # promotion may still add jobs there.
    waiting: list[str] = field(default_factory=list)
    # (campaign, epochs, cancelled jobs): budgets whose every job is finished but some cancelled.
    held: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def can_add_jobs(self) -> bool:
        """True while a promotion added jobs now or may add some later (the run must not end)."""
        return self.jobs_added > 0 or bool(self.waiting)

    def merge(self, other: PromotionPass) -> None:
        self.rounds += other.rounds
        self.promoted_early += other.promoted_early
        self.jobs_added += other.jobs_added
        self.waiting += other.waiting
        self.held += other.held


@dataclass(frozen=True)
class _Campaign:
    id: int
    name: str
    rule: PromotionRule


@dataclass(frozen=True)
class _Round:
    epochs: int
    budget_index: int
    next_epochs: int | None
    decided: bool

    @classmethod
    def of(cls, row: Any) -> _Round:
        return cls(int(row.epochs), int(row.budget_index), row.next_epochs, row.decided_at is not None)


class Promotions(QueueCore):
    """The promotion operations of :class:`db.queue.JobQueue`."""

    # campaign id -> finished jobs when its last async pass ran (a pass with nothing new finished
    # is skipped: it could promote nothing the last one did not)
    _async_seen: dict[int, int]

    @translated
    def promote_ready_budgets(
        self, campaigns: Sequence[str] | None = None, *, decided_by: str | None = None
    ) -> PromotionPass:
        """Decide what can be decided for the adaptive ones of ``campaigns`` (default: every
        campaign), record it, enqueue the promoted cells' next-budget jobs. Cheap when there is
        nothing to do: one look at the job counts and the rounds, no ranking."""
        seen = self.__dict__.setdefault("_async_seen", {})  # per queue object (one per driver)
        with read_connection(self.engine) as conn:
            adaptive = self._adaptive(conn, campaigns)
            if not adaptive:
                return PromotionPass()
            ids = [c.id for c in adaptive]
            totals = {row.campaign_id: (int(row.active or 0), int(row.finished or 0)) for row in conn.execute(
                self.sql.render(q.JOB_TOTALS, expanding=("campaign_ids",)), {"campaign_ids": ids})}
            rounds: dict[int, list[_Round]] = {cid: [] for cid in ids}
            for row in conn.execute(self.sql.render(q.ROUNDS_OF, expanding=("campaign_ids",)),
                                    {"campaign_ids": ids}):
                rounds[row.campaign_id].append(_Round.of(row))
        result = PromotionPass()
        for campaign in adaptive:
            if all(r.decided for r in rounds[campaign.id] if r.next_epochs is not None):
                continue  # every round decided: nothing more can be promoted
            active, finished = totals.get(campaign.id, (0, 0))
            if active and (campaign.rule.mode == "rounds" or seen.get(campaign.id) == finished):
                result.waiting.append(campaign.name)  # rounds: the budget in progress is not complete
                continue
            result.merge(self._promote_campaign(campaign, decided_by))
            seen[campaign.id] = finished
        return result

    def _adaptive(self, conn: sa.Connection, names: Sequence[str] | None) -> list[_Campaign]:
        if names is None:
            statement, params = self.sql.render(q.ADAPTIVE_CAMPAIGNS, where=""), {}
        else:
            if not names:
                return []
            self._campaign_ids(conn, names)  # UnknownCampaign for a name that does not exist
            statement = self.sql.render(q.ADAPTIVE_CAMPAIGNS, expanding=("names",),
                                        where="AND name IN :names")
            params = {"names": list(names)}
        return [_Campaign(row.id, row.name, PromotionRule(row.promote_numerator, row.promote_denominator,
                                                          row.promote_mode or "rounds"))
                for row in conn.execute(statement, params)]

    def _promote_campaign(self, campaign: _Campaign, decided_by: str | None) -> PromotionPass:
        """Every decision of one campaign that its state allows, in one transaction."""
        result = PromotionPass()
        params = {"campaign_id": campaign.id}
        with self._transaction(durable=True) as conn:
            conn.execute(self.sql.render(q.LOCK_CAMPAIGN), params)  # deciders take turns
            rounds = [_Round.of(row) for row in conn.execute(
                self.sql.render(q.ROUNDS_OF, expanding=("campaign_ids",)), {"campaign_ids": [campaign.id]})]
            for budget in rounds:
                if budget.next_epochs is None or budget.decided:
                    continue
                status = {row.status: int(row.n) for row in conn.execute(
                    self.sql.render(q.BUDGET_JOBS), {**params, "epochs": budget.epochs})}
                if not status:
                    break  # not reached: no cell has been promoted to it yet
                if campaign.rule.mode == "async":
                    self._decide(conn, campaign, budget, decided_by, result, final=False)
                if status.get("pending", 0) + status.get("running", 0):
                    result.waiting.append(campaign.name)
                    if campaign.rule.mode == "rounds":
                        break
                    continue
                if status.get("cancelled", 0):
                    result.held.append((campaign.name, budget.epochs, status["cancelled"]))
                    break
                self._decide(conn, campaign, budget, decided_by, result, final=True)
        return result

    def _decide(self, conn: sa.Connection, campaign: _Campaign, budget: _Round, decided_by: str | None,
                result: PromotionPass, *, final: bool) -> None:
        """Rank the budget's finished cells and promote the top: ceil(f x n) and the round's record
        (``final``), or ASHA's floor(f x m) of the m finished so far."""
        base = {"campaign_id": campaign.id, "epochs": budget.epochs}
        render = self.sql.render
        conn.execute(render(q.DROP_CANDIDATES))
        conn.execute(render(q.RANK_CANDIDATES), base)
        ranked = int(conn.execute(render(q.COUNT_CANDIDATES)).scalar_one())
        rule = campaign.rule
        promote = rule.promoted(ranked) if final else rule.promoted_so_far(ranked)
        threshold = None
        if promote:
            threshold = float(conn.execute(render(q.CANDIDATE_AT_RANK), {"cell_rank": promote}).scalar_one())
        if final:
            cells = int(conn.execute(render(q.COUNT_BUDGET_CELLS), base).scalar_one())
        before = result.jobs_added
        if promote:
            inserted = conn.execute(render(q.INSERT_PROMOTIONS), {
                **base, "next_epochs": budget.next_epochs, "cells_ranked": ranked, "threshold": threshold,
                "kind": "round" if final else "async", "decided_by": decided_by, "promote": promote,
            }).rowcount
            # higher budgets first in the claim order (async: promoted work overtakes the backlog)
            with counting_new_jobs(conn, campaign.id):  # per budget, with their cost (db.counts)
                added = conn.execute(render(q.ENQUEUE_PROMOTED),
                                     {**base, "priority": budget.budget_index + 1}).rowcount
            result.jobs_added += added
            if not final:
                result.promoted_early += inserted
        conn.execute(render(q.DROP_CANDIDATES))
        if not final:
            return
        decided = conn.execute(render(q.DECIDE_ROUND), {
            **base, "decided_by": decided_by, "cells": cells, "cells_ranked": ranked, "threshold": threshold,
        }).rowcount
        if decided != 1:  # cannot happen under the campaign lock; never record a round twice
            raise RuntimeError(f"round of {campaign.name!r} at {budget.epochs} epochs was decided meanwhile")
        promoted = conn.execute(render(q.ROUND_PROMOTED), base).scalar_one()
        result.rounds.append(RoundDecision(campaign.name, budget.epochs, int(budget.next_epochs or 0), cells,
                                           ranked, int(promoted), threshold, result.jobs_added - before))


# --- reading decisions back (the CLI, tests) --------------------------------------------------------

def campaign_rounds(engine: sa.Engine, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign's budgets, lowest first, with their rounds' records (NULLs while undecided)."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        rows = conn.execute(dialect_of(conn).render(q.ROUNDS_OF_CAMPAIGN), {"campaign_id": campaign_id})
        return [dict(r) for r in rows.mappings()]


def campaign_promotions(engine: sa.Engine, campaign_id: int) -> list[dict[str, Any]]:
    """Every promotion of the campaign with its evidence, by budget then rank."""
    with translating(redact(engine.url)), read_connection(engine) as conn:
        rows = conn.execute(dialect_of(conn).render(q.PROMOTIONS_OF), {"campaign_id": campaign_id})
        return [dict(r) for r in rows.mappings()]

