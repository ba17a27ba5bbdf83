"""Reading results back: the ``nb101_results`` view and the example monitoring queries."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from db.dialect import dialect_of
from db.engine import read_connection
from db.errors import UnknownCampaign, translating
from db.statements import monitoring as sql
from db.urls import redact

EXAMPLE_QUERIES_FILE = Path(__file__).resolve().parent / "sql" / "example_queries.sql"


@cache
def example_queries() -> dict[str, str]:
    """name -> SQL of db/sql/example_queries.sql (the queries docs/database.md shows)."""
    text = EXAMPLE_QUERIES_FILE.read_text()
    queries = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, body = block.split("\n", 1)
        sql = "\n".join(line for line in body.splitlines() if not line.startswith("--")).strip()
        queries[name.strip()] = sql.rstrip(";")
    return queries


def nb101_results(engine: sa.Engine, campaign: str | None = None) -> list[dict[str, Any]]:
    """Finished jobs in NAS-Bench-101's shape (adjacency and ops decoded from JSON), by job id."""
    dialect = dialect_of(engine)
    params = {"campaign": campaign}
    with translating(redact(engine.url)), read_connection(engine) as conn:
        if campaign is not None and conn.execute(dialect.render(sql.CAMPAIGN_EXISTS), params).first() is None:
            raise UnknownCampaign(f"unknown campaign {campaign!r}")
        where = "" if campaign is None else "WHERE campaign = :campaign"
        rows = conn.execute(dialect.render(sql.NB101_RESULTS, where=where), params).mappings().all()
    out = []
    for row in rows:
        record = dict(row)
        record["module_adjacency"] = json.loads(record["module_adjacency"])
        record["module_operations"] = json.loads(record["module_operations"])
        record["evaluations"] = json.loads(record["evaluations"]) if record["evaluations"] else []
        out.append(record)
    return out
