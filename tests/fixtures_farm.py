"""Farm fixtures: one real Ray cluster for the session, a fresh PostgreSQL database per test, and
helpers that run ``nasfarm run`` as a real process and read the job table.

Ray starts slowly on 2 cores (~5 s for a head node), so the tests share one 2-CPU head node;
each ``nasfarm run`` joins it as a driver (~1 s). The node-loss test builds its own cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FARM_EPOCHS = 2  # smoke profile, 16 steps per epoch: a job takes a few seconds on one core
RUN_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ray_cluster(num_cpus: int):
    """A Ray head node run by this process (killed by process handle, never ``ray stop``)."""
    from ray.cluster_utils import Cluster

    return Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": num_cpus,
            "gcs_server_port": free_port(),
            "include_dashboard": False,
        },
    )


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    cluster = start_ray_cluster(num_cpus=2)
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


def _admin_url(base_url: str, database: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(base_url).set(database=database).render_as_string(hide_password=False)


def create_database(base_url: str) -> str:
    """A new empty database on the server of ``base_url``, migrated to the current schema."""
    import sqlalchemy as sa

    from db.engine import make_engine
    from db.migrate import upgrade

    name = f"farm_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = _admin_url(base_url, name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_database(base_url: str, url: str) -> None:
    import sqlalchemy as sa

    name = sa.engine.make_url(url).database
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Farm:
    """One test's farm: its database, checkpoint storage, data and cluster."""

    db_url: str
    storage: Path
    data_dir: Path
    ray_address: str
    runs: list[subprocess.Popen] = field(default_factory=list)
    _engine: Any = None

    @property
    def engine(self):
        if self._engine is None:
            from db.engine import make_engine

            self._engine = make_engine(self.db_url)
        return self._engine

    # -- campaigns ---------------------------------------------------------------------------

    def create_campaign(self, name: str, n_cells: int, *, seed: int = 11,
                        checkpoint_every_epochs: float | None = None, **kwargs: Any) -> list[str]:
        """A smoke campaign of ``n_cells`` sampled cells x one 2-epoch budget; returns the hashes.

        ``checkpoint_every_epochs=0.5`` gives fault tests a first checkpoint with 1.5 epochs of the
        job still to go: a fault injected right after it always lands mid-job.
        """
        from dataclasses import replace

        from farm.config import SMOKE
        from farm.space import sample_cells
        from farm.spec import cell_from_labels
        from nasfarm.campaigns import create_campaign

        profile = SMOKE if checkpoint_every_epochs is None else replace(
            SMOKE, checkpoint_every_epochs=checkpoint_every_epochs)
        cells = [cell_from_labels(c.matrix, c.labels) for c in sample_cells(n_cells, seed=seed)]
        options = {"epochs": (FARM_EPOCHS,), "repeats": 1, "profile": profile.to_dict()} | kwargs
        create_campaign(self.engine, name, cells, **options)
        return [cell.hash for cell in cells]

    # -- running nasfarm run -------------------------------------------------------------------

    def start_run(self, *args: str, env: dict[str, str] | None = None, address: str | None = None,
                  lease_ttl: float = 30.0, data_dir: bool = True) -> subprocess.Popen:
        """``nasfarm run`` on this farm (``data_dir=False``: no --data-dir, each side uses its own
        default, e.g. a node's NASFARM_DATA_DIR with --data-from nodes)."""
        command = [
            sys.executable, "-c", "from nasfarm.cli import main; main()", "run",
            "--db", self.db_url,
            "--address", address or self.ray_address,
            "--storage", str(self.storage),
            *(["--data-dir", str(self.data_dir)] if data_dir else []),
            "--lease-ttl", str(lease_ttl),
            "--json",
            *args,
        ]
        # RAY_ADDRESS only where a test sets it (for --address auto), never from the outside.
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        full_env.pop("RAY_ADDRESS", None)
        full_env.update(env or {})
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=full_env)
        self.runs.append(process)
        return process

    @staticmethod
    def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """Wait for a run; returns its JSON summary (+ "returncode", "stderr")."""
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise AssertionError(f"nasfarm run did not finish in {timeout} s:\n{err[-4000:]}") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        summary = json.loads(lines[-1]) if lines else {}
        return {**summary, "returncode": process.returncode, "stderr": err}

    # -- reading the job table ------------------------------------------------------------------

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job row, with its cell's hash as ``cell_hash`` (jobs hold the cell's id)."""
        return self.query("SELECT j.*, cl.hash AS cell_hash FROM jobs j"
                          " LEFT JOIN cells cl ON cl.id = j.cell_id ORDER BY j.id")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM job_events ORDER BY id")
        return [r for r in rows if kind is None or r["kind"] == kind]

    def results(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM results ORDER BY job_id")

    def running_with_checkpoint(self) -> list[dict[str, Any]]:
        """Running jobs whose first epoch checkpoint is on disk."""
        return [j for j in self.jobs() if j["status"] == "running" and j["checkpoint_location"]
                and Path(j["checkpoint_location"]).exists()]

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """``wait_for`` that fails at once, with the output, when a run exits while waiting."""

        def check() -> Any:
            for process in self.runs:
                if process.poll() is not None:
                    out, err = process.communicate()
                    raise AssertionError(f"nasfarm run exited ({process.returncode}) while waiting "
                                         f"for {what}:\n{out[-2000:]}\n{err[-4000:]}")
            return predicate()

        try:
            return wait_for(check, timeout, what)
        except AssertionError:
            for process in self.runs:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    process.send_signal(signal.SIGINT)
                    print("nasfarm run stderr:", process.communicate(timeout=30)[1][-4000:])
            raise

    def close(self) -> None:
        for process in self.runs:
            if process.poll() is None:
                process.kill()
                process.communicate()
        if self._engine is not None:
            self._engine.dispose()


def worker_pid(job: dict[str, Any]) -> int:
    """The worker process running a job, from the node label its attempt recorded."""
    match = re.search(r"/pid(\d+)$", job["lease_node"] or "")
    assert match, f"no worker pid in lease_node {job['lease_node']!r}"
    return int(match.group(1))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_hard(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


class PostgresServer:
    """A throw-away PostgreSQL server on a spare port, which a test may stop and start at will.

    Uses the initdb/pg_ctl of the installed server; as root they run as the ``postgres`` user
    (initdb refuses root), in a directory made for it.
    """

    def __init__(self) -> None:
        import glob
        import shutil
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or [shutil.which("pg_ctl")]
        if not found or not found[-1]:
            pytest.skip("no pg_ctl/initdb found to run a private PostgreSQL server")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="nasfarm-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    @property
    def base_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        import shutil

        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def farm_db_url(pg_base_url: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (dropped afterwards)."""
    url = create_database(pg_base_url)
    try:
        yield url
    finally:
        drop_database(pg_base_url, url)


@pytest.fixture
def farm(farm_db_url: str, ray_address: str, synthetic_cifar_dir: Path, tmp_path: Path) -> Iterator[Farm]:
    harness = Farm(db_url=farm_db_url, storage=tmp_path / "checkpoints", data_dir=synthetic_cifar_dir,
                   ray_address=ray_address)
    try:
        yield harness
    finally:
        harness.close()
