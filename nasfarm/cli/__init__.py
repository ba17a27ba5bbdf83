"""The ``nasfarm`` command line.

Subcommands live in their own modules and are imported only when invoked, so ``nasfarm --help``
and ``nasfarm space hash`` stay fast (no torch, no Ray, no SQLAlchemy import unless needed).
"""

from __future__ import annotations

import importlib

import click

# name -> ("module:attribute" of a click command or group, one-line help shown by --help).
# The help text lives here so that `nasfarm --help` imports none of the subcommand modules.
SPACE_COMMANDS = {
    "enumerate": ("nasfarm.cli.space:enumerate_cmd", "Enumerate every unique cell as JSON lines."),
    "hash": ("nasfarm.cli.space:hash_cmd", "Print the NAS-Bench-101 hash of a cell."),
    "describe": ("nasfarm.cli.describe:describe_cmd", "Parameters and FLOPs of cells, as JSON lines."),
    "show": ("nasfarm.cli.show:show_cmd", "Draw a cell (PNG or SVG) as NAS-Bench-101's paper does."),
}

ROOT_COMMANDS = {
    # Not "nasfarm.cli:space": importing the submodule nasfarm.cli.space rebinds that package attribute.
    "space": ("nasfarm.cli:space_group", "The NAS-Bench-101 cell space."),
    "data": ("nasfarm.cli.data:data", "Data sets: list, check a placed copy, write a synthetic set."),
    "train": ("nasfarm.cli.train:train_cmd", "Train one cell and print its metrics (resumable)."),
    "db": ("nasfarm.cli.db:db", "Create or upgrade the job database."),
    "campaign": ("nasfarm.cli.campaign:campaign", "Create and inspect campaigns."),
    "status": ("nasfarm.cli.status:status_cmd", "Where the campaigns stand."),
    "retry": ("nasfarm.cli.campaign:retry_cmd", "Send a campaign's failed jobs back to pending."),
    "cancel": ("nasfarm.cli.campaign:cancel_cmd", "Cancel a campaign's unfinished jobs."),
    "run": ("nasfarm.cli.run:run_cmd", "Work through campaigns on a Ray cluster."),
    "demo": ("nasfarm.cli.demo:demo_cmd", "The main job: a small real campaign, end to end."),
    "report": ("nasfarm.cli.report:report_cmd", "Write a campaign's plots and HTML report."),
    "export": ("nasfarm.cli.bench:export_cmd", "Export a campaign's results (tfrecord, jsonl, parquet)."),
    "import-nb101": ("nasfarm.cli.bench:import_cmd", "Load the published NAS-Bench-101 table."),
    "compare": ("nasfarm.cli.bench:compare_cmd", "Compare a campaign with another (e.g. published)."),
    "search": ("nasfarm.cli.search:search_cmd", "Run and compare NAS algorithms on a benchmark table."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[cmd_name][0].split(":")
            module = importlib.import_module(module_name)
            return getattr(module, attribute)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(self.lazy_commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy_commands=ROOT_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="nasfarm")
def main() -> None:
    """nasfarm: regenerate and grow NAS-Bench-101 on a job-queue training farm."""


@click.group("space", cls=LazyGroup, lazy_commands=SPACE_COMMANDS)
def space_group() -> None:
    """The NAS-Bench-101 cell space: hashes, enumeration, descriptions."""
