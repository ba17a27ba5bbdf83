"""Database fixtures (loaded as a pytest plugin by tests/conftest.py).

- ``pg_url``: a FRESH, EMPTY PostgreSQL database for one test (CREATE DATABASE with a random
  name on the ``pg_base_url`` server; dropped afterwards, even if processes still hold it).
- ``sqlite_url``: an SQLite file under the test's tmp_path.
- ``db_url``: parametrised over both (test ids ``[sqlite]`` / ``[postgresql]``).
- ``db_engine``: an engine on ``db_url`` with the schema migrated to head.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    base = make_url(pg_base_url)
    name = f"nasfarm_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nasfarm.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def db_engine(db_url: str) -> Iterator[sa.Engine]:
    from db.engine import make_engine
    from db.migrate import upgrade

    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


# --- helpers shared by the db tests (importable by spawned processes) ----------------------------

def random_cells(n: int, seed: int = 0) -> list:
    """``n`` distinct valid cells drawn at random (without farm.space, which enumerates the space)."""
    import random

    from farm.spec import AVAILABLE_OPS, Cell, InvalidCellError

    rng = random.Random(seed)
    cells: dict[str, object] = {}
    while len(cells) < n:
        v = rng.randint(3, 7)
        matrix = [[int(j > i and rng.random() < 0.4) for j in range(v)] for i in range(v)]
        ops = ["input"] + [rng.choice(AVAILABLE_OPS) for _ in range(v - 2)] + ["output"]
        try:
            cell = Cell.from_any(matrix, ops)
        except InvalidCellError:
            continue
        cells.setdefault(cell.hash, cell)
    return list(cells.values())


def fake_result(job, accuracy: float = 0.9) -> dict:
    """A TrainResult.to_dict()-shaped result for ``job`` (the numbers are the caller's)."""
    metrics = {
        "trainable_parameters": 1000 + job.job_id,
        "total_time": 10.0,
        "halfway_training_time": 4.0,
        "halfway_train_accuracy": accuracy / 2,
        "halfway_validation_accuracy": accuracy / 2,
        "halfway_test_accuracy": accuracy / 2,
        "final_training_time": 8.0,
        "final_train_accuracy": accuracy,
        "final_validation_accuracy": accuracy,
        "final_test_accuracy": accuracy,
    }
    evaluations = [
        {"epochs": e, "training_steps": s, "training_time": t, "train_accuracy": a,
         "validation_accuracy": a, "test_accuracy": a}
        for e, s, t, a in ((0, 0, 0.0, 0.1), (job.epochs / 2, 1, 4.0, accuracy / 2),
                           (job.epochs, 2, 8.0, accuracy))
    ]
    return {"metrics": metrics, "evaluations": evaluations, "resumed_from_step": 0,
            "resumed_from_epoch": 0.0}


def drain_worker(url: str, owner: str, batch: int, start, out) -> None:
    """Process body: claim and complete jobs until none is left; report the job ids completed."""
    from db.engine import make_engine
    from db.errors import DatabaseUnavailable
    from db.queue import JobQueue

    engine = make_engine(url)
    queue = JobQueue(engine)
    start.wait()
    completed: list[int] = []
    lost: list[int] = []
    while True:
        try:
            jobs = queue.claim(batch, owner)
        except DatabaseUnavailable:  # SQLite busy beyond the timeout: try again
            continue
        if not jobs:
            break
        for job in jobs:
            (completed if queue.complete(job.job_id, job.lease_token, fake_result(job)) else lost).append(
                job.job_id
            )
    out.put((owner, completed, lost))
    engine.dispose()


def claim_and_hang(url: str, owner: str, ready, lease_ttl_s: float = 120.0) -> None:
    """Process body: claim one job with a lease of ``lease_ttl_s``, heartbeat once, report it,
    then hang until killed."""
    import time

    from db.engine import make_engine
    from db.queue import JobQueue

    queue = JobQueue(make_engine(url))
    jobs = queue.claim(1, owner, lease_ttl_s=lease_ttl_s)
    if jobs:
        queue.start_attempt(jobs[0].job_id, jobs[0].lease_token, node="node-a", resumed_from_epoch=0.0)
        queue.heartbeat(jobs[0].job_id, jobs[0].lease_token, step=1, epoch=0.1)
    ready.put(jobs[0].job_id if jobs else None)
    while True:
        time.sleep(60)
