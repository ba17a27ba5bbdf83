"""Jobs sharing GPUs by their size (``--gpus-per-job auto``): the placement rule on its own, the
actor shape it needs, and a real ``run_campaigns`` on a Ray node that declares one GPU, whose jobs
record when they ran (a 2-second sleep instead of training: what is tested is who runs beside whom).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from scheduler.placement import CardShare, IdleWorker, assign, no_share, usable_idle
from scheduler.pool import AUTO, PoolConfigError, auto_shape, node_slots, parse_gpus_per_job

SHARES = {"small": 0.25, "half": 0.5, "large": 1.0}


def share(unit: str) -> float:
    return SHARES[unit.split("-")[0]]


def workers(device: str, n: int) -> list[IdleWorker]:
    return [IdleWorker(f"{device}/w{i}", device) for i in range(n)]


def test_four_small_jobs_share_a_card_and_a_fifth_waits():
    units = [f"small-{i}" for i in range(5)]
    plan = assign(units, share, workers("gpu0", 4) + workers("gpu1", 4), {"gpu1": 1.0})
    assert [index for index, _ in plan] == [0, 1, 2, 3]
    assert {worker.split("/")[0] for _, worker in plan} == {"gpu0"}


def test_a_large_job_runs_alone_and_small_ones_fill_the_fullest_card_first():
    # gpu0 half busy, gpu1 empty: the large job needs gpu1; the small jobs go to gpu0 (best fit),
    # keeping nothing else on the large job's card.
    plan = dict(assign(["large-0", "small-0", "small-1"], share, workers("gpu0", 3) + workers("gpu1", 4),
                       {"gpu0": 0.5}))
    assert plan[0].startswith("gpu1/")
    assert plan[1].startswith("gpu0/") and plan[2].startswith("gpu0/")


def test_a_large_job_that_fits_nowhere_reserves_the_emptiest_card_against_small_ones():
    # Both cards partly busy: the large job waits, and the card it waits for (gpu0, the emptiest)
    # takes no new small job; small jobs may still start on gpu1.
    plan = assign(["large-0", "small-0", "small-1"], share, workers("gpu0", 3) + workers("gpu1", 2),
                  {"gpu0": 0.25, "gpu1": 0.5})
    assert [index for index, _ in plan] == [1, 2]
    assert all(worker.startswith("gpu1/") for _, worker in plan)
    # With one card only, nothing may start until it drains for the large job.
    assert assign(["large-0", "small-0"], share, workers("gpu0", 3), {"gpu0": 0.25}) == []
    # Drained: the large job starts, and the small one does not join it.
    assert assign(["large-0", "small-0"], share, workers("gpu0", 4), {}) == [(0, "gpu0/w0")]


def test_without_shares_placement_is_first_come_first_served():
    idle = [IdleWorker(f"w{i}", ("worker", i)) for i in range(3)]
    assert assign(["a", "b", "c", "d"], no_share, idle, {}) == [(0, "w0"), (1, "w1"), (2, "w2")]
    assert usable_idle(idle, {}, smallest_share=0.0) == 3


def test_idle_workers_on_a_full_card_are_not_claimed_for():
    idle = workers("gpu0", 3) + workers("gpu1", 2)
    assert usable_idle(idle, {"gpu0": 1.0, "gpu1": 0.5}, smallest_share=0.25) == 2


def test_auto_shape_puts_a_worker_on_every_gpu_slot():
    # 8 GPUs x 4 slots on 16 CPUs: each worker reserves half a CPU, so all 32 fit (Ray fills one
    # GPU before the next: fewer actors would leave cards empty).
    node = {"GPU": 8.0, "CPU": 16.0}
    shape = auto_shape([node], 4, None)
    assert (shape.gpus, shape.cpus) == (0.25, 0.5)
    assert node_slots(node, shape) == 32
    # Plenty of CPUs: one each. An explicit --cpus-per-job wins.
    assert auto_shape([{"GPU": 1.0, "CPU": 64.0}], 4, None).cpus == 1.0
    assert auto_shape([node], 4, 2.0).cpus == 2.0
    # No GPU anywhere: CPU workers, as for a fixed fraction.
    cpu_only = auto_shape([{"CPU": 4.0}], 4, None)
    assert not cpu_only.uses_gpu and node_slots({"CPU": 4.0}, cpu_only) == 4


def test_gpus_per_job_accepts_auto_and_numbers_and_refuses_the_rest():
    assert parse_gpus_per_job("auto") == AUTO and parse_gpus_per_job("AUTO") == AUTO
    assert parse_gpus_per_job("0.5") == 0.5 and parse_gpus_per_job(2) == 2.0
    for bad in ("half", "1.5", "-1"):
        with pytest.raises(PoolConfigError):
            parse_gpus_per_job(bad)


def claimed(cell, campaign: str = "c", profile: dict | None = None):
    from farm.config import NB101

    return SimpleNamespace(cell_hash=cell.hash, campaign=campaign, matrix=cell.matrix.tolist(),
                           ops=list(cell.ops), profile=profile or NB101.to_dict())


def test_card_share_follows_the_packing_rule_of_the_cell_and_its_repeats():
    from farm.config import NB101, SMOKE
    from farm.cost import forward_flops
    from farm.packing import gpu_fraction
    from farm.spec import Cell

    chain3x3 = Cell.from_any([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    pool = Cell.from_any([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "maxpool3x3", "output"])
    shares = CardShare()
    assert shares([claimed(pool)]) == 0.25 == gpu_fraction(forward_flops(pool, NB101))
    assert shares([claimed(pool)] * 3) == 0.5  # three fused repeats: three times the work
    assert shares([claimed(chain3x3)]) == 1.0 == gpu_fraction(forward_flops(chain3x3, NB101))
    # The campaign's own profile counts: the smoke network is tiny whatever the cell.
    assert shares([claimed(chain3x3, "smoke", SMOKE.to_dict())]) == 0.25


def test_a_job_whose_cell_cannot_be_read_gets_a_whole_card_instead_of_stopping_the_driver():
    from farm.spec import Cell

    pool = Cell.from_any([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "maxpool3x3", "output"])
    broken = SimpleNamespace(**vars(claimed(pool)), job_id=7)
    broken.ops = ["input", "no-such-op", "output"]
    assert CardShare()([broken]) == 1.0  # the worker then fails it as bad input


# -- a real driver on a node with one (declared) GPU -----------------------------------------------

DRIVER = textwrap.dedent('''
    import json, os, sys, time
    from scheduler.launch import run_campaigns
    from scheduler.options import RunOptions

    url, address, data_dir, storage, log_dir = sys.argv[1:6]


    class Result:
        def to_dict(self):
            from farm.metrics import RUN_METRICS

            return {"metrics": dict.fromkeys(RUN_METRICS, 0.0), "evaluations": [],
                    "resumed_from_step": 0, "resumed_from_epoch": 0.0}


    def sleeper(job, data, *, device, checkpoint_path, on_event, should_stop):
        import ray

        start = time.time()
        time.sleep(2.0)
        record = {"cell": job.cell.hash, "start": start, "end": time.time(),
                  "gpus": [str(g) for g in ray.get_gpu_ids()]}
        with open(os.path.join(log_dir, f"{job.cell.hash}.json"), "w") as out:
            json.dump(record, out)
        return Result()


    summary = run_campaigns(url, ["packed"], RunOptions(
        address=address, gpus_per_job="auto", data_dir=data_dir, storage=storage, lease_ttl_s=30.0,
        retry_backoff_s=0.5, progress=False, job_runner=sleeper))
    print(json.dumps(summary.to_dict()))
''')


def pick_cells(want: dict[str, int]):
    """Sampled cells by their NB101 share of a card: ``{"small": 5, "large": 1}``."""
    from farm.config import NB101
    from farm.cost import forward_flops
    from farm.packing import gpu_fraction
    from farm.space import sample_cells
    from farm.spec import cell_from_labels

    by_kind: dict[str, list] = {kind: [] for kind in want}
    for sampled in sample_cells(400, seed=3):
        cell = cell_from_labels(sampled.matrix, sampled.labels)
        kind = {0.25: "small", 0.5: "half", 1.0: "large"}[gpu_fraction(forward_flops(cell, NB101))]
        if kind in by_kind and len(by_kind[kind]) < want[kind]:
            by_kind[kind].append(cell)
    assert all(len(by_kind[k]) == n for k, n in want.items()), "too few sampled cells of a kind"
    return by_kind


@pytest.mark.postgres
@pytest.mark.slow
def test_auto_packs_small_jobs_on_a_card_and_runs_a_large_one_alone(farm, tmp_path):
    from farm.config import NB101
    from nasfarm.campaigns import create_campaign
    from tests.fixtures_farm import start_ray_cluster

    cells = pick_cells({"small": 5, "large": 1})
    small, (large,) = cells["small"], cells["large"]
    # Claim order: two small, the large, three small. The large one must wait for the first two
    # and block the rest until it is done.
    ordered = [*small[:2], large, *small[2:]]
    create_campaign(farm.engine, "packed", ordered, epochs=(4,), repeats=1, profile=NB101.to_dict(),
                    order="as-given")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    log_dir = tmp_path / "ran"
    log_dir.mkdir()
    cluster = start_ray_cluster(num_cpus=0)
    try:
        cluster.add_node(num_cpus=2, num_gpus=1)
        repo = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(repo)}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run(
            [sys.executable, str(script), farm.db_url, cluster.address, str(farm.data_dir),
             str(farm.storage), str(log_dir)],
            capture_output=True, text=True, timeout=240, env=env, cwd=repo,
        )
    finally:
        cluster.shutdown()
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["done"] == 6 and summary["complete"], summary

    runs = {r["cell"]: r for r in (json.loads(p.read_text()) for p in log_dir.glob("*.json"))}
    assert sorted(runs) == sorted(c.hash for c in ordered)
    assert {tuple(r["gpus"]) for r in runs.values()} == {("0",)}  # one card, four workers on it
    big = runs[large.hash]
    others = [r for cell, r in runs.items() if cell != large.hash]
    # The large job ran alone: no other job's run overlaps its run.
    assert all(r["end"] <= big["start"] or r["start"] >= big["end"] for r in others)
    # The jobs claimed after it waited for it (no small job slipped past onto its card)...
    after = [runs[c.hash] for c in small[2:]]
    assert all(r["start"] >= big["end"] for r in after)
    # ...and then ran together: the three share the card at one moment.
    assert max(r["start"] for r in after) < min(r["end"] for r in after)
    assert farm.query("SELECT COUNT(*) AS n FROM results")[0]["n"] == 6
