"""Clear errors instead of stack traces: bad URLs, unreachable servers, dropped connections."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db.campaigns import get_campaign
from db.engine import PING_AFTER_IDLE_S, check_connection, make_engine, redact
from db.errors import (
    BadDatabaseURL,
    CampaignConflict,
    DatabaseUnavailable,
    UnknownCampaign,
    translating,
)
from db.queue import JobQueue
from farm.config import NB101, SMOKE
from nasfarm.campaigns import create_campaign
from nasfarm.cli import main
from tests.fixtures_db import random_cells


@pytest.mark.parametrize(
    "url, message",
    [
        ("nasfarm.db", "cannot parse database URL"),
        ("mysql://root@localhost/farm", "unsupported database 'mysql'"),
        ("postgresql+asyncpg://u@h/db", "unsupported driver 'postgresql+asyncpg'"),
        ("sqlite:////no/such/directory/farm.db", "directory /no/such/directory does not exist"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(BadDatabaseURL, match=re.escape(message)):
        make_engine(url)
    result = CliRunner().invoke(main, ["status", "--db", url])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_unreachable_server_is_unavailable_and_the_password_stays_hidden():
    url = "postgresql://farm:s3cret@127.0.0.1:1/nasfarm"  # nothing listens on port 1
    engine = make_engine(url)
    with pytest.raises(DatabaseUnavailable, match="Connection refused") as caught:
        check_connection(engine)
    assert "s3cret" not in str(caught.value) and "farm:***@127.0.0.1:1" in str(caught.value)
    with pytest.raises(DatabaseUnavailable):
        JobQueue(engine).claim(1, "w")
    result = CliRunner().invoke(main, ["status", "--db", url])
    assert result.exit_code == 1 and "database unavailable" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
    assert redact(url) == "postgresql://farm:***@127.0.0.1:1/nasfarm"


def test_a_dropped_connection_is_transient_and_the_pool_recovers(pg_url):
    from db.migrate import upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    kill = sa.text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    # A connection killed mid-transaction ("terminating connection due to administrator command")
    with pytest.raises(DatabaseUnavailable), translating(), engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        with admin.connect() as other:
            other.execute(kill)
        conn.execute(sa.text("SELECT 1"))
    # Idle pooled connections killed by a server restart are replaced (pool_pre_ping).
    queue = JobQueue(engine)
    assert queue.counts()["pending"] == 0
    with admin.connect() as other:
        other.execute(kill)
    assert queue.counts()["pending"] == 0
    # The queue's autocommit pool pings only connections idle for a while: one killed in the
    # middle of a hot loop fails once (transient), then the pool is replaced...
    assert not queue.heartbeat(1, "no-such-lease")
    with admin.connect() as other:
        other.execute(kill)
    with pytest.raises(DatabaseUnavailable):
        queue.heartbeat(1, "no-such-lease")
    assert not queue.heartbeat(1, "no-such-lease")
    # ... and one killed while idle is replaced before use.
    with admin.connect() as other:
        other.execute(kill)
    time.sleep(PING_AFTER_IDLE_S + 0.2)
    assert not queue.heartbeat(1, "no-such-lease")
    admin.dispose()
    engine.dispose()


def test_unknown_campaign_everywhere(db_engine, db_url):
    queue = JobQueue(db_engine)
    with pytest.raises(UnknownCampaign, match="unknown campaign 'ghost'"):
        get_campaign(db_engine, "ghost")
    with pytest.raises(UnknownCampaign):
        queue.counts(["ghost"])
    runner = CliRunner()
    for args in (["status", "--campaign", "ghost"], ["retry", "--campaign", "ghost"],
                 ["cancel", "--campaign", "ghost"],
                 ["campaign", "show", "--campaign", "ghost"]):
        result = runner.invoke(main, [*args, "--db", db_url])
        assert result.exit_code == 2 and "unknown campaign 'ghost'" in result.output, args


def test_a_name_taken_with_other_settings_is_a_conflict(db_engine):
    cells = random_cells(2)
    create_campaign(db_engine, "c", cells, profile=SMOKE.to_dict())
    with pytest.raises(CampaignConflict, match="different profile_name, profile"):
        create_campaign(db_engine, "c", cells, profile=NB101.to_dict())
    with pytest.raises(CampaignConflict, match="different epochs"):
        create_campaign(db_engine, "c", cells, profile=SMOKE.to_dict(), epochs=(4,))
