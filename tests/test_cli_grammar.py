"""One command-line grammar: the campaign is --campaign everywhere, downloading is
--download/--no-download everywhere, fixed values are fixed choices; outputs never half-written."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from nasfarm.cli import ROOT_COMMANDS, main

CAMPAIGN_COMMANDS = [("run",), ("status",), ("report",), ("export",), ("compare",), ("retry",),
                     ("cancel",), ("demo",), ("import-nb101",), ("campaign", "create"),
                     ("campaign", "show")]


def _command(path: tuple[str, ...]) -> click.Command:
    ctx = click.Context(main)
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.get_command(ctx, name)
        assert command is not None, path
    return command


@pytest.mark.parametrize("path", CAMPAIGN_COMMANDS, ids=" ".join)
def test_the_campaign_is_spelled_one_way(path):
    params = _command(path).params
    assert any("--campaign" in p.opts for p in params if isinstance(p, click.Option)), path
    positional = [p.name for p in params if isinstance(p, click.Argument)]
    assert "name" not in positional and "campaign" not in positional, path


def test_downloading_is_spelled_one_way():
    for name in sorted(ROOT_COMMANDS):
        stack = [((name,), _command((name,)))]
        while stack:
            path, command = stack.pop()
            if isinstance(command, click.Group):
                ctx = click.Context(command)
                stack += [((*path, sub), command.get_command(ctx, sub)) for sub in command.list_commands(ctx)]
                continue
            for param in command.params:
                if isinstance(param, click.Option) and not param.hidden:
                    spelled = [o for o in param.opts + param.secondary_opts
                               if "download" in o or "offline" in o]
                    assert spelled in ([], ["--download", "--no-download"]), (path, spelled)


def test_fixed_values_are_choices_and_help_matches_the_readme():
    train = _command(("train",))
    params = {p.name: p for p in train.params}
    assert isinstance(params["profile"].type, click.Choice)
    assert "0100" in params["matrix"].help
    result = CliRunner().invoke(main, ["train", "--matrix", "0100", "--ops", "input,output",
                                       "--device", "gpu"])
    assert result.exit_code == 2 and "one of cpu, cuda, cuda:N" in result.output


def test_export_makes_its_folder_and_leaves_nothing_half_written(tmp_path):
    from db.engine import make_engine
    from db.migrate import upgrade
    from farm.config import SMOKE
    from nasfarm.campaigns import create_campaign
    from tests.fixtures_db import random_cells

    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = make_engine(url)
    upgrade(engine)
    create_campaign(engine, "c", random_cells(2, seed=1), epochs=(4,), repeats=1, profile=SMOKE.to_dict())
    runner = CliRunner()
    out = tmp_path / "new" / "deeper" / "c.jsonl"
    made = runner.invoke(main, ["export", "--campaign", "c", "--out", str(out), "--db", url])
    assert made.exit_code == 0, made.output
    assert out.exists() and "exported 0 records" in made.output
    missing = tmp_path / "other" / "ghost.jsonl"
    refused = runner.invoke(main, ["export", "--campaign", "ghost", "--out", str(missing), "--db", url])
    assert refused.exit_code == 2 and "ghost" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "other").exists()  # refused before anything was made
    compared = runner.invoke(main, ["compare", "--campaign", "c", "--against", "published", "--db", url])
    assert compared.exit_code == 2 and "nasfarm import-nb101" in compared.output


def test_records_writer_removes_its_temp_file_on_error(tmp_path):
    from farm.records import write_file

    def broken():
        raise RuntimeError("the database went away")
        yield

    target = tmp_path / "x.jsonl"
    with pytest.raises(RuntimeError):
        write_file(target, broken())
    assert list(tmp_path.iterdir()) == []


def test_demo_refuses_to_silently_resize_an_existing_campaign(tmp_path, synthetic_cifar_dir):
    from db.engine import make_engine
    from db.migrate import upgrade
    from farm.config import SMOKE
    from nasfarm.campaigns import create_campaign
    from tests.fixtures_db import random_cells

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    engine = make_engine(url)
    upgrade(engine)
    create_campaign(engine, "demo", random_cells(4, seed=2), epochs=(4,), repeats=1, profile=SMOKE.to_dict())
    result = CliRunner().invoke(main, ["demo", "--no-download", "--cells", "2", "--db", url,
                                       "--data-dir", str(synthetic_cifar_dir), "--profile", "smoke"])
    assert result.exit_code == 2, result.output
    assert "exists with 4 cell(s)" in result.output and "--campaign demo-2" in result.output
