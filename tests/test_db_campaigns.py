"""Campaign creation: idempotence, claim orders, stored cells, seeds and the CLI."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db.campaigns import get_campaign
from farm.config import SMOKE
from farm.cost import forward_flops, trainable_parameters
from nasfarm.campaigns import create_campaign, job_seed
from nasfarm.cli import main
from tests.fixtures_db import random_cells

PROFILE = SMOKE.to_dict()


def _jobs(engine, name="c"):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT cl.hash AS cell_hash, j.epochs, j.repeat, j.seed FROM jobs j JOIN campaigns c"
            " ON c.id = j.campaign_id JOIN cells cl ON cl.id = j.cell_id WHERE c.name = :n ORDER BY j.id"),
            {"n": name}).all()


def _cell_order(jobs):
    order = []
    for cell_hash, *_ in jobs:
        if not order or order[-1] != cell_hash:
            order.append(cell_hash)
    return order


def test_creating_twice_adds_nothing_and_more_cells_add_only_their_jobs(db_engine):
    cells = random_cells(6, seed=1)
    first = create_campaign(db_engine, "c", cells[:4], profile=PROFILE, epochs=(4, 12), repeats=3)
    assert (first["created"], first["cells_added"], first["jobs_added"]) == (True, 4, 24)
    again = create_campaign(db_engine, "c", cells[:4], profile=PROFILE, epochs=(4, 12), repeats=3)
    assert (again["created"], again["cells_added"], again["jobs_added"]) == (False, 0, 0)
    more = create_campaign(db_engine, "c", cells, profile=PROFILE, epochs=(4, 12), repeats=3)
    assert (more["cells_added"], more["jobs_added"]) == (2, 12)
    jobs = _jobs(db_engine)
    assert len(jobs) == len(set(j[:3] for j in jobs)) == 36
    # a second campaign shares the stored cells
    other = create_campaign(db_engine, "d", cells, profile=PROFILE, epochs=(108,), repeats=1)
    assert (other["cells_added"], other["jobs_added"]) == (0, 6)
    with db_engine.connect() as conn:
        progress = "SELECT campaign, total, pending FROM campaign_progress ORDER BY campaign"
        counts = conn.execute(sa.text(progress)).all()
    assert counts == [("c", 36, 36), ("d", 6, 6)]
    info = get_campaign(db_engine, "c")
    assert info["profile"] == PROFILE and info["epochs"] == [4, 12] and info["order"] == "shuffled"


@pytest.mark.parametrize("helper_process", [False, True], ids=["inline", "helper-process"])
def test_the_cells_table_holds_the_pruned_cell_and_its_costs(db_engine, monkeypatch, helper_process):
    if helper_process:  # what the full space does on PostgreSQL: rows built by a spawned process
        monkeypatch.setattr("nasfarm.campaigns.PARALLEL_CELLS_ABOVE", 2)
        monkeypatch.setattr("nasfarm.campaigns._CELL_CHUNK", 2)
    cells = random_cells(5, seed=2)
    create_campaign(db_engine, "c", cells, profile=PROFILE, epochs=(4,), repeats=1)
    with db_engine.connect() as conn:
        rows = {r.hash: r for r in conn.execute(sa.text("SELECT * FROM cells"))}
    assert set(rows) == {c.hash for c in cells}
    for cell in cells:
        row = rows[cell.hash]
        assert json.loads(row.matrix) == cell.matrix.tolist() and json.loads(row.ops) == list(cell.ops)
        assert (row.vertices, row.edges) == (cell.num_vertices, cell.num_edges)
        assert row.trainable_parameters == trainable_parameters(cell)
        assert row.flops == forward_flops(cell)


def test_orders(db_engine):
    cells = random_cells(8, seed=3)
    hashes = [c.hash for c in cells]
    for name, order, seed in (("s0", "shuffled", 0), ("s0b", "shuffled", 0), ("s1", "shuffled", 1),
                              ("cheap", "cheap-first", 0), ("given", "as-given", 0)):
        create_campaign(db_engine, name, cells, profile=PROFILE, order=order, seed=seed,
                        epochs=(4, 12), repeats=2)
    shuffled = _cell_order(_jobs(db_engine, "s0"))
    assert len(shuffled) == 8 and sorted(shuffled) == sorted(hashes)  # cell-major permutation
    assert shuffled == _cell_order(_jobs(db_engine, "s0b"))  # seeded: reproducible
    assert shuffled != _cell_order(_jobs(db_engine, "s1"))
    assert shuffled != hashes
    assert _cell_order(_jobs(db_engine, "given")) == hashes
    flops = {c.hash: forward_flops(c) for c in cells}
    cost = [flops[h] * e for h, e, _, _ in _jobs(db_engine, "cheap")]
    assert cost == sorted(cost) and len(cost) == 32


def test_job_seeds_depend_on_campaign_seed_cell_and_repeat(db_engine):
    cells = random_cells(3, seed=4)
    create_campaign(db_engine, "c", cells, profile=PROFILE, seed=42, epochs=(4, 12), repeats=3)
    jobs = _jobs(db_engine)
    assert all(seed == job_seed(42, h, r) for h, _, r, seed in jobs)
    by_key = {}
    for h, _epochs, r, seed in jobs:
        by_key.setdefault((h, r), set()).add(seed)
    assert all(len(seeds) == 1 for seeds in by_key.values())  # same seed at every budget
    assert len({next(iter(s)) for s in by_key.values()}) == 9  # distinct across cells and repeats
    assert job_seed(43, cells[0].hash, 0) != job_seed(42, cells[0].hash, 0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="order"):
        create_campaign(None, "c", [], profile=PROFILE, order="random")
    with pytest.raises(ValueError, match="epoch budgets"):
        create_campaign(None, "c", [], profile=PROFILE, epochs=(4, 0))
    with pytest.raises(ValueError, match="repeats"):
        create_campaign(None, "c", [], profile=PROFILE, repeats=0)


def test_cli_creates_campaigns_from_a_sample_and_a_file(sqlite_url, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["db", "init", "--db", sqlite_url]).exit_code == 0
    result = runner.invoke(main, ["campaign", "create", "--campaign", "s", "--cells", "sample:7",
                                  "--profile", "smoke",
                                  "--epochs", "4,108", "--repeats", "2", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "28 jobs added" in result.output
    cells = random_cells(3, seed=5)
    lines = [json.dumps({"matrix": cells[0].matrix.tolist(), "ops": list(cells[0].ops)}),
             json.dumps({"matrix": cells[1].matrix.tolist(), "ops": ",".join(cells[1].ops)}),
             json.dumps({"matrix": cells[2].matrix.tolist(), "labels": cells[2].labels})]
    path = tmp_path / "cells.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(main, ["campaign", "create", "--campaign", "f", "--cells", str(path),
                                  "--order", "as-given",
                                  "--repeats", "1", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "12 jobs added" in result.output
    again = runner.invoke(main, ["campaign", "create", "--campaign", "f", "--cells", str(path),
                                 "--order", "as-given",
                                 "--repeats", "1", "--db", sqlite_url])
    assert "exists: 0 jobs added" in again.output
    status = runner.invoke(main, ["status", "--json", "--db", sqlite_url])
    rows = [json.loads(line) for line in status.output.splitlines()]
    assert [(r["campaign"], r["total"], r["pending"]) for r in rows] == [("s", 28, 28), ("f", 12, 12)]
    shown = json.loads(
        runner.invoke(main, ["campaign", "show", "--campaign", "f", "--db", sqlite_url]).output)
    assert shown["counts"]["pending"] == 12 and shown["profile"]["name"] == "nb101"
    # cancel then retry through the CLI
    cancelled = runner.invoke(main, ["cancel", "--campaign", "f", "--db", sqlite_url]).output
    assert "12 jobs cancelled" in cancelled
    assert "12 jobs of 'f' back" in runner.invoke(
        main, ["retry", "--campaign", "f", "--include-cancelled", "--db", sqlite_url]).output
    table = runner.invoke(main, ["status", "--campaign", "f", "--db", sqlite_url]).output
    assert table.splitlines()[0].split()[:3] == ["campaign", "total", "pending"]
    assert table.splitlines()[1].split()[:3] == ["f", "12", "12"]


@pytest.mark.parametrize(
    "cells_arg, content, message",
    [
        ("bad.jsonl", '{"matrix": [[0, 1], [0, 0]], "ops": ["input", "conv9x9", "output"]}\n',
         "bad.jsonl:1: not a valid cell"),
        ("bad.jsonl", '{"matrix": [[0, 1], [0, 0]], "ops": ["input", "output"]}\nnot json\n',
         "bad.jsonl:2: not a valid cell"),
        ("sample:x", None, "sample:N needs an integer"),
        ("nothing-here", None, "all, sample:N or a JSON-lines file"),
    ],
)
def test_cli_rejects_bad_cells(sqlite_url, tmp_path, monkeypatch, cells_arg, content, message):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / cells_arg).write_text(content)
    runner = CliRunner()
    runner.invoke(main, ["db", "init", "--db", sqlite_url])
    result = runner.invoke(main, ["campaign", "create", "--campaign", "c", "--cells", cells_arg,
                                  "--db", sqlite_url])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    bad_epochs = runner.invoke(main, ["campaign", "create", "--campaign", "c", "--cells", "sample:1",
                                      "--epochs", "4,x",
                                      "--db", sqlite_url])
    assert bad_epochs.exit_code == 2 and "--epochs" in bad_epochs.output


@pytest.mark.postgres
def test_a_script_without_a_main_guard_creates_its_campaign_once(pg_url, tmp_path):
    """On PostgreSQL a large campaign builds its cell rows in a spawned helper process. Spawned
    children re-run the caller's ``__main__``: an unguarded script failed (BrokenProcessPool)
    instead of creating its campaign. The threshold is lowered so a few cells take that path."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "print('top-level code ran')\n"
        "import nasfarm.campaigns\n"
        "from db.engine import make_engine\n"
        "from farm.config import SMOKE\n"
        "from tests.fixtures_db import random_cells\n"
        "nasfarm.campaigns.PARALLEL_CELLS_ABOVE = 2\n"
        f"engine = make_engine({pg_url!r})\n"
        "from db.migrate import upgrade\n"
        "upgrade(engine)\n"
        "made = nasfarm.campaigns.create_campaign(engine, 'c', random_cells(5, seed=3), epochs=(4,),\n"
        "                                    repeats=1, profile=SMOKE.to_dict())\n"
        "print(made['cells_added'], made['jobs_added'])\n"
    )
    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["top-level code ran", "5 5"]
