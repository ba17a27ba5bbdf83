"""Schema migrations: the migrated database equals db/schema.py; older schemas are refused clearly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from db.engine import make_engine
from db.errors import SchemaOutdated
from db.migrate import current_revision, head_revision, require_current, upgrade
from db.schema import metadata
from db.views import VIEW_NAMES
from nasfarm.cli import main


def test_migrations_build_exactly_the_declared_schema(db_url):
    engine = make_engine(db_url)
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        database = conn.dialect.name

        def this_databases(obj, _name, _type, _reflected, _compare_to) -> bool:
            # An index declared in two forms (db.schema.per_database): compare this database's.
            return obj.info.get("database", database) == database

        context = MigrationContext.configure(conn, opts={"include_object": this_databases})
        diff = compare_metadata(context, metadata)
        views = set(sa.inspect(conn).get_view_names())
    assert diff == []
    assert views == set(VIEW_NAMES)
    assert upgrade(engine) == head_revision()  # repeating is harmless
    require_current(engine)
    engine.dispose()


def test_an_older_schema_is_refused_until_upgraded(db_url):
    engine = make_engine(db_url)
    with pytest.raises(SchemaOutdated, match="no nasfarm schema: run nasfarm db init"):
        require_current(engine)
    upgrade(engine, "0001")
    # a database in use at 0001: jobs exist before the counts do
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO campaigns (name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at) VALUES ('old', 'smoke', '{}', '[4]', 1, 0, 'as-given', 3, 0)"
        ))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_hash, epochs, repeat, seed, status, attempts) VALUES"
            " (1, 'a', 4, 0, 1, 'pending', 0), (1, 'b', 4, 0, 2, 'done', 1), (1, 'c', 4, 0, 3, 'done', 2)"
        ))
    outdated = f"revision 0001, this nasfarm needs {head_revision()}: run nasfarm db upgrade"
    with pytest.raises(SchemaOutdated, match=outdated):
        require_current(engine)

    runner = CliRunner()
    result = runner.invoke(main, ["status", "--db", db_url])
    assert result.exit_code == 1 and "run nasfarm db upgrade" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["db", "current", "--db", db_url])
    assert result.exit_code == 1 and "0001" in result.output

    result = runner.invoke(main, ["db", "upgrade", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        progress = conn.execute(sa.text("SELECT total, pending, done, attempts FROM campaign_progress"))
        assert progress.all() == [(3, 1, 2, 3)]
    assert runner.invoke(main, ["status", "--db", db_url]).exit_code == 0
    engine.dispose()


def test_db_init_on_a_fresh_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFARM_DB", f"sqlite:///{tmp_path / 'farm.db'}")
    result = CliRunner().invoke(main, ["db", "init"])
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output
    assert (tmp_path / "farm.db").exists()


def test_upgrading_keeps_running_leases_and_judges_them_by_their_heartbeat(db_url):
    """Leases written by a driver at schema 0003 have no expiry: after `nasfarm db upgrade` the
    reaper judges them by their last heartbeat and its own TTL (as 0003 did), and a current
    worker's next heartbeat gives them one."""
    from db.dialect import dialect_of
    from db.queue import JobQueue

    engine = make_engine(db_url)
    upgrade(engine, "0003")
    now = dialect_of(engine).now
    # Rows as a 0003 farm left them (written with 0003's columns): two started jobs whose driver's
    # last heartbeats were 100 s and 10 s ago, and a pending one.
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO campaigns (name, profile_name, profile, epochs, repeats, seed, job_order,"
            " max_attempts, created_at) VALUES ('old', 'smoke', '{}', '[4]', 1, 0, 'as-given', 3, 0)"
        ))
        conn.execute(sa.text(
            "INSERT INTO jobs (campaign_id, cell_hash, epochs, repeat, seed, status, attempts, lease_owner,"
            " lease_token, lease_node, claimed_at, heartbeat_at) VALUES"
            f" (1, 'a', 4, 0, 1, 'running', 1, 'old-driver', 't1', 'node-1', {now} - 200, {now} - 100),"
            f" (1, 'b', 4, 0, 2, 'running', 1, 'old-driver', 't2', 'node-1', {now} - 200, {now} - 10),"
            " (1, 'c', 4, 0, 3, 'pending', 0, NULL, NULL, NULL, NULL, NULL)"
        ))
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert current_revision(engine) == head_revision()

    queue = JobQueue(engine, backoff_base=0)
    assert queue.job(1)["lease_expires_at"] is None and queue.job(2)["lease_expires_at"] is None
    assert queue.reap(legacy_ttl_s=60.0) == 1
    assert queue.job(1)["status"] == "pending" and queue.job(2)["status"] == "running"
    assert queue.job(1)["last_error"].startswith("lease expired: no heartbeat from old-driver for 60 s")
    assert queue.heartbeat(2, "t2")  # a heartbeat without a TTL keeps the lease's (none)
    assert queue.job(2)["lease_expires_at"] is None
    assert queue.heartbeat(2, "t2", lease_ttl_s=30.0)
    row = queue.job(2)
    assert row["lease_expires_at"] - row["heartbeat_at"] == pytest.approx(30.0, abs=1e-3)
    assert queue.reap(legacy_ttl_s=0.0) == 0  # now judged by its expiry alone
    engine.dispose()
