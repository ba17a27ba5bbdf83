"""Adaptive campaigns on the command line: ``campaign create --promote``, ``campaign promote`` and the
lines ``nasfarm status`` shows for such a campaign (from the ``campaign_budgets`` view)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import click

from nasfarm.cli.db import db_errors, db_option, open_engine
from nasfarm.cli.errors import BadInput

PROMOTE_HELP = ("Make the campaign adaptive: train every cell at the first budget and only the top "
                "FRACTION of a budget's cells (mean validation accuracy over their repeats) at the "
                "next, e.g. 25%, 0.25 or 1/4 (successive halving; docs/campaigns.md).")
MODE_HELP = ("rounds: promote exactly ceil(f x n) cells when a budget's jobs are all finished; async: "
             "ASHA-style, promote the top of what has finished as results arrive.")


def promote_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--promote FRACTION`` and ``--promote-mode rounds|async`` (the command gets ``promote``:
    a :class:`farm.adaptive.PromotionRule` or None)."""
    command = click.option("--promote-mode", default="rounds", show_default=True,
                           type=click.Choice(["rounds", "async"]), help=MODE_HELP)(command)
    return click.option("--promote", "promote_text", default=None, metavar="FRACTION",
                        help=PROMOTE_HELP)(command)


def parse_promote(text: str | None, mode: str) -> Any:
    """The rule of ``--promote``/``--promote-mode`` (None without --promote); BadInput if malformed."""
    from farm.adaptive import PromotionRule

    if text is None:
        return None
    try:
        return PromotionRule.parse(text, mode)
    except ValueError as exc:
        raise BadInput(f"--promote: {exc}") from None


def cli_decider() -> str:
    """Who a decision taken by hand is recorded as."""
    return f"cli:{socket.gethostname()}:{os.getpid()}"


@click.command("promote")
@click.option("--campaign", "name", required=True, metavar="NAME",
              help="The adaptive campaign (every command names it with --campaign).")
@db_option
def promote_cmd(name: str, db_url: str | None) -> None:
    """Decide and record what an adaptive campaign can promote now (nasfarm run does this itself),
    and enqueue the promoted cells' jobs at the next budget; then print its budgets."""
    from db.campaigns import get_campaign
    from db.queue import JobQueue

    with db_errors():
        engine = open_engine(db_url)
        if get_campaign(engine, name)["promote"] is None:
            raise BadInput(f"campaign {name!r} is not adaptive (create it with --promote)")
        done = JobQueue(engine).promote_ready_budgets([name], decided_by=cli_decider())
        lines = budget_lines(engine, [name]).get(name, [])
    for decision in done.rounds:
        threshold = "-" if decision.threshold is None else f"{decision.threshold:.4f}"
        click.echo(f"{decision.epochs} epochs: promoted {decision.promoted:,} of {decision.cells_ranked:,} "
                   f"ranked cells to {decision.next_epochs} epochs (threshold {threshold}); "
                   f"{decision.jobs_added:,} jobs enqueued")
    if done.promoted_early:
        click.echo(f"{done.promoted_early:,} cell(s) promoted early (async)")
    for _, epochs, cancelled in done.held:
        click.echo(f"{epochs} epochs: held by {cancelled:,} cancelled job(s) "
                   f"(nasfarm retry --campaign {name} --include-cancelled resumes them)")
    if not done.rounds and not done.promoted_early and not done.held:
        click.echo("nothing to promote now" + (": a budget is still running" if done.waiting else ""))
    for line in lines:
        click.echo(line)


def _number(value: Any) -> float:
    return float(value or 0.0)  # Decimal from PostgreSQL arithmetic, None for an empty sum


def budget_lines(engine: Any, names: list[str]) -> dict[str, list[str]]:
    """Per adaptive campaign among ``names``: a line per budget and one of compute (from the
    ``campaign_budgets`` and ``campaign_compute`` views). Campaigns that are not adaptive: none."""
    from db.views import read_view

    out: dict[str, list[str]] = {}
    for row in read_view(engine, "campaign_budgets", names):
        lines = out.setdefault(row["campaign"], [])
        if not lines:
            lines.append(f"  adaptive: top {100 * _number(row['promote_fraction']):g}% per budget "
                         f"({row['promote_mode']}); SELECT * FROM campaign_budgets")
        finished = f"{int(row['cells_finished']):,}/{int(row['cells']):,} cells finished"
        if row["next_epochs"] is None:
            state = "" if int(row["cells"]) else ", not reached"
        elif row["decided"]:
            state = (f", promoted {int(row['promoted']):,} of {int(row['cells_ranked']):,} to "
                     f"{row['next_epochs']} ep (threshold {_number(row['threshold']):.4f})")
        elif row["threshold"] is not None:
            state = (f", {int(row['promoted']):,} promoted so far; threshold now "
                     f"{_number(row['threshold']):.4f} over {int(row['cells_ranked']):,} ranked")
        else:
            state = ", not reached" if not int(row["cells"]) else ", no result yet"
        lines.append(f"    {int(row['epochs']):>4} ep: {finished}, {int(row['pending']):,} pending, "
                     f"{int(row['running']):,} running, {int(row['failed']):,} failed{state}")
    for row in read_view(engine, "campaign_compute", list(out)):
        grid = _number(row["grid_cost"])
        out[row["campaign"]].append(
            f"    compute: {100 * _number(row['done_fraction_of_grid']):.1f}% of the full grid's done, "
            f"{100 * _number(row['enqueued_fraction_of_grid']):.1f}% enqueued (cost = FLOPs x epochs; "
            f"full grid {grid:.3g}); {int(row['cells_at_last_budget'] or 0):,} of {int(row['cells'] or 0):,} "
            "cells at the last budget")
    return out
