"""The one user-mistake error of the command line."""

from __future__ import annotations

import click


class BadInput(click.ClickException):
    """A user mistake (bad URL, unknown campaign, a malformed cell...): one line on stderr, exit
    status 2 like click's own usage errors."""

    exit_code = 2
