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
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
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
