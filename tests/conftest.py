"""Shared test configuration.

Fixture modules named ``tests/fixtures_*.py`` are loaded as pytest plugins automatically, so
each area (data, db, farm) keeps its fixtures next to its tests without editing this file.

PostgreSQL: tests that need it use the ``pg_url`` fixture. The server comes from
``NASFARM_TEST_PG_URL`` (default: the local trust-auth server, database ``test``). Without a
reachable server those tests skip with the reason, unless ``NASFARM_REQUIRE_POSTGRES=1`` (CI),
which turns the missing server into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"tests.{path.stem}" for path in Path(__file__).parent.glob("fixtures_*.py")
)

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def postgres_required() -> bool:
    return os.environ.get("NASFARM_REQUIRE_POSTGRES", "") not in ("", "0", "false", "no")


def _pg_reachable(url: str) -> str | None:
    """None when we can connect, else the reason."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect is a reason to skip (or fail in CI)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """URL of a reachable PostgreSQL server (skips, or fails under NASFARM_REQUIRE_POSTGRES=1)."""
    url = os.environ.get("NASFARM_TEST_PG_URL", DEFAULT_PG_URL)
    reason = _pg_reachable(url)
    if reason is not None:
        message = f"PostgreSQL not reachable at NASFARM_TEST_PG_URL ({reason})"
        if postgres_required():
            pytest.fail(message + " and NASFARM_REQUIRE_POSTGRES=1", pytrace=False)
        pytest.skip(message)
    return url


# The suite runs on two pytest-xdist workers (pyproject: -n 2 --dist loadgroup). Every test that
# drives a Ray farm goes to one group, so one worker runs them one after another on the shared
# session cluster while the other worker runs the rest: two Ray farms at once on a 2-core machine
# would only slow both and stretch the fault tests' timing.
RAY_FIXTURES = {"farm", "ray_address", "metrics_cluster"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        uses_ray = RAY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_ray or item.module.__name__.rsplit(".", 1)[-1].startswith("test_farm_"):
            item.add_marker(pytest.mark.xdist_group("ray"))
