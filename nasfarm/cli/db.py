"""``nasfarm db``: create, upgrade and inspect the job database.

Also the shared plumbing of the database commands (``--db`` option, error translation): a
:class:`db.errors.DatabaseError` becomes a one-line message, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from nasfarm.cli.errors import BadInput

DB_OPTION_HELP = "Database URL (default: $NASFARM_DB, else sqlite:///nasfarm.db)."


def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--db URL`` option (environment variable NASFARM_DB)."""
    return click.option(
        "--db", "db_url", envvar="NASFARM_DB", metavar="URL", default=None, help=DB_OPTION_HELP
    )(command)


@contextmanager
def db_errors() -> Iterator[None]:
    """Turn database errors into one-line click errors (2 = bad input, 1 = anything else)."""
    from db.errors import BadDatabaseURL, CampaignConflict, DatabaseError, UnknownCampaign

    try:
        yield
    except (BadDatabaseURL, UnknownCampaign, CampaignConflict) as exc:
        raise BadInput(str(exc)) from None
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None


def open_engine(db_url: str | None, *, require_schema: bool = True, create: bool = False):
    """An engine for ``db_url``; checks the connection and (by default) the schema revision.
    Only ``create`` (db init / upgrade) may bring a new SQLite file into being."""
    from db.engine import check_connection, make_engine, require_existing
    from db.migrate import require_current

    if not create:
        require_existing(db_url)
    engine = make_engine(db_url)
    check_connection(engine)
    if require_schema:
        require_current(engine)
    return engine


@click.group()
def db() -> None:
    """Create, upgrade and inspect the job database."""


def _upgrade(db_url: str | None) -> None:
    from db.engine import redact
    from db.migrate import upgrade

    with db_errors():
        engine = open_engine(db_url, require_schema=False, create=True)
        revision = upgrade(engine)
        click.echo(f"{redact(engine.url)}: schema at revision {revision} (current)")


@db.command("init")
@db_option
def init_cmd(db_url: str | None) -> None:
    """Create the schema, or upgrade an existing one (safe to repeat)."""
    _upgrade(db_url)


@db.command("upgrade")
@db_option
def upgrade_cmd(db_url: str | None) -> None:
    """Bring the schema up to this nasfarm's revision."""
    _upgrade(db_url)


@db.command("current")
@db_option
def current_cmd(db_url: str | None) -> None:
    """Print the schema revision; exit 1 when it is not this nasfarm's."""
    from db.engine import redact
    from db.migrate import current_revision, head_revision

    with db_errors():
        engine = open_engine(db_url, require_schema=False)
        current, head = current_revision(engine), head_revision()
    where = redact(engine.url)
    if current == head:
        click.echo(f"{where}: revision {current} (current)")
        return
    raise click.ClickException(
        f"{where}: revision {current or 'none'}, this nasfarm needs {head}: run nasfarm db upgrade"
    )


@db.command("recount")
@db_option
def recount_cmd(db_url: str | None) -> None:
    """Rebuild the per-campaign job counts from the jobs (after editing jobs by hand)."""
    from db.views import recount

    with db_errors():
        recount(open_engine(db_url))
    click.echo("job counts rebuilt")
