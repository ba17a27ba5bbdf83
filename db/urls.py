"""Database URLs made safe to show: one small module that both db.engine and db.errors use."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url


def redact(url: str | URL) -> str:
    """The URL with any password replaced by ``***`` (safe to log or print)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: hide anything between "user:" and "@"
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))
