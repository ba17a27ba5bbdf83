"""Errors of the persistence layer, each with a message a user can act on.

Callers catch :class:`DatabaseError` for "tell the user and stop" and :class:`DatabaseUnavailable`
for "the server is restarting or the network blipped: back off and retry". The raw driver errors
(psycopg2, sqlite3) never leave ``db/``: :func:`translated` turns them into these.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import sqlalchemy.exc as sa_exc

from db.urls import redact


class DatabaseError(Exception):
    """A database problem the user has to fix (bad URL, missing schema, unknown campaign...)."""


class BadDatabaseURL(DatabaseError):
    """The URL cannot be parsed, names an unknown driver, or points at an impossible path."""


class MissingDatabase(BadDatabaseURL):
    """A SQLite file that does not exist, given to a command that must not create one."""


class DatabaseUnavailable(DatabaseError):
    """A transient failure: server down or restarting, connection dropped, SQLite busy.

    Retrying the same call later with backoff is the right reaction; nothing was written.
    """


class SchemaOutdated(DatabaseError):
    """The database has no nasfarm schema, or an older one."""


class UnknownCampaign(DatabaseError, KeyError):
    """No campaign of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown campaign"


class CampaignConflict(DatabaseError):
    """A campaign of that name exists with different settings (profile, budgets, repeats, seed)."""


class IncompleteCampaign(CampaignConflict):
    """The campaign's creation has not finished enqueueing its jobs (it is running, or it was
    interrupted: running the same create again completes it); its jobs cannot be claimed yet."""


# SQLSTATE classes / codes (psycopg2 ``pgcode``) that mean "try again later":
# 08 = connection exception, 57P01..57P03 = admin shutdown, crash shutdown, cannot connect now,
# 53300 = too many connections, 40001/40P01 = serialization failure / deadlock (retry the txn).
_TRANSIENT_PG_CODES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")
# Message fragments of transient failures raised before a SQLSTATE exists (connect) or by SQLite.
_TRANSIENT_MESSAGES = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection already closed",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "ssl connection has been closed",
    "timeout expired",
    "could not receive data",
    "could not send data",
    "no route to host",
    "network is unreachable",
    "database is locked",  # SQLite: busy_timeout ran out
    "database table is locked",
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (a SQLAlchemy or DBAPI error) is worth retrying later."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "pgcode", None)
    if code and code.startswith(_TRANSIENT_PG_CODES):
        return True
    text = str(orig).lower()
    return any(fragment in text for fragment in _TRANSIENT_MESSAGES)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def translate(exc: BaseException, where: str = "") -> DatabaseError:
    """The nasfarm error for a SQLAlchemy/DBAPI exception (``where`` names the database, redacted)."""
    place = f" ({where})" if where else ""
    detail = _first_line(exc)
    if is_transient(exc):
        return DatabaseUnavailable(f"database unavailable{place}: {detail}")
    lowered = detail.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return SchemaOutdated(
            f"the database{place} has no nasfarm schema (or an older one): run nasfarm db upgrade"
        )
    if "unable to open database file" in lowered:
        return BadDatabaseURL(f"cannot open the SQLite database{place}: {detail}")
    return DatabaseError(f"database error{place}: {detail}")


P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def translating(where: str = "") -> Iterator[None]:
    """Re-raise SQLAlchemy errors inside the block as :class:`DatabaseError` subclasses."""
    try:
        yield
    except DatabaseError:
        raise
    except (sa_exc.DBAPIError, sa_exc.OperationalError) as exc:
        raise translate(exc, where) from exc


def translated(method: Callable[P, R]) -> Callable[P, R]:
    """Decorator for methods of objects with an ``engine``: translate driver errors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        engine = getattr(args[0], "engine", None) if args else None
        where = ""
        if engine is not None:
            where = redact(engine.url)
        with translating(where):
            return method(*args, **kwargs)

    return wrapper
