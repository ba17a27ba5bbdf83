"""The ``nasfarm`` command line.

Subcommands live in their own modules and are imported only when invoked, so ``nasfarm --help``
and ``nasfarm space hash`` stay fast (no torch, no Ray, no SQLAlchemy import unless needed).
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group.
SPACE_COMMANDS = {
    "enumerate": "farm.cli.space:enumerate_cmd",
    "hash": "farm.cli.space:hash_cmd",
    "describe": "farm.cli.describe:describe_cmd",
}

ROOT_COMMANDS = {
    "space": "farm.cli:space",
    "data": "farm.cli.data:data",
    "train": "farm.cli.train:train_cmd",
    "db": "farm.cli.db:db",
    "campaign": "farm.cli.campaign:campaign",
    "status": "farm.cli.status:status_cmd",
    "retry": "farm.cli.campaign:retry_cmd",
    "cancel": "farm.cli.campaign:cancel_cmd",
    "run": "farm.cli.run:run_cmd",
    "demo": "farm.cli.demo:demo_cmd",
    "report": "farm.cli.report:report_cmd",
    "export": "farm.cli.bench:export_cmd",
    "import-nb101": "farm.cli.bench:import_cmd",
    "compare": "farm.cli.bench:compare_cmd",
    "search": "farm.cli.search:search_cmd",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith(("farm", "db", "scheduler", "workers")):
                    raise click.ClickException(
                        f"'{cmd_name}' is not available in this build ({exc.name} is missing)"
                    ) from exc
                raise
            return getattr(module, attribute)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy_commands=ROOT_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nasfarm")
def main() -> None:
    """nasfarm: regenerate and grow NAS-Bench-101 on a job-queue training farm."""


@click.group(cls=LazyGroup, lazy_commands=SPACE_COMMANDS)
def space() -> None:
    """The NAS-Bench-101 cell space: hashes, enumeration, descriptions."""
