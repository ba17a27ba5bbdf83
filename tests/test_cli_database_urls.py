"""Database URLs as users type them, and read-only commands that never create a database."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from db.engine import parse_url
from nasfarm.cli import main


@pytest.mark.parametrize("url, driver", [
    ("postgres://farm@db.example.com:5432/nasfarm", "postgresql+psycopg2"),
    ("postgresql://farm@db.example.com/nasfarm", "postgresql+psycopg2"),
    ("postgres+psycopg2://farm@db.example.com/nasfarm", "postgresql+psycopg2"),
    ("sqlite:///nasfarm.db", "sqlite+pysqlite"),
])
def test_common_spellings_map_to_the_driver(url, driver):
    parsed = parse_url(url)
    assert parsed.drivername == driver
    assert parsed.host == (None if url.startswith("sqlite") else "db.example.com")


@pytest.mark.parametrize("command", [
    ["status"], ["status", "--json"], ["report", "--campaign", "x", "--out", "{tmp}/r"],
    ["export", "--campaign", "x", "--out", "{tmp}/x.jsonl"], ["campaign", "show", "--campaign", "x"],
    ["run", "--campaign", "x"], ["db", "current"], ["retry", "--campaign", "x"],
])
def test_commands_that_read_never_create_a_database(tmp_path, command):
    missing = tmp_path / "typo.db"
    args = [part.replace("{tmp}", str(tmp_path)) for part in command]
    result = CliRunner().invoke(main, [*args, "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 2, result.output
    assert f"no database at {missing}" in result.output
    assert not missing.exists()


def test_db_init_creates_it(tmp_path):
    target = tmp_path / "new.db"
    result = CliRunner().invoke(main, ["db", "init", "--db", f"sqlite:///{target}"])
    assert result.exit_code == 0, result.output
    assert target.exists()
