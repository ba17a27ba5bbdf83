"""``nasfarm train``: train one cell and print its NAS-Bench-101 metrics as JSON (resumable)."""

from __future__ import annotations

import json
import os
import signal
import sys

import click

from nasfarm.cli.dataopts import data_dir_option, dataset_option, download_option, load_or_fail
from nasfarm.cli.errors import BadInput


def _parse_cell(matrix: str, ops: str):
    from farm.spec import Cell, InvalidCellError

    try:
        op_list = json.loads(ops) if ops.strip().startswith("[") else ops
        return Cell.from_any(matrix, op_list)
    except (InvalidCellError, json.JSONDecodeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--matrix/--ops") from exc


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: one of cpu, cuda, cuda:N")
    return value


class _Progress:
    """A tqdm bar over training steps on a terminal; silent otherwise."""

    def __init__(self, total_steps: int) -> None:
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, unit="step", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, event: dict) -> None:
        if self.bar is None:
            return
        self.bar.n = event["step"]
        if event["kind"] == "epoch":
            self.bar.set_postfix(epoch=f"{event['epoch']:.2f}", loss=f"{event['loss']:.3f}")
        elif event["kind"] == "evaluation":
            self.bar.write(
                f"epoch {event['epoch']:g}: train {event['train_accuracy']:.4f} "
                f"valid {event['validation_accuracy']:.4f} test {event['test_accuracy']:.4f}"
            )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("train")
@click.option("--matrix", required=True,
              help='Adjacency matrix: JSON ("[[0,1],[0,0]]") or a 0/1 string ("0100").')
@click.option("--ops", required=True, help="Op names, comma-separated or as a JSON list.")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True, help="Budget E.")
@click.option("--repeat", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--profile", type=click.Choice(["nb101", "smoke"]), default="nb101", show_default=True,
              help="Training hyperparameters (smoke: a tiny network on a data subset, for trying it).")
@dataset_option
@data_dir_option
@download_option(default=True)
@click.option("--checkpoint-dir", type=str, default=None,
              help="Folder (or fsspec URI) for this job's checkpoint; re-running resumes from it.")
@click.option("--device", default="cpu", show_default=True, callback=_check_device, metavar="cpu|cuda|cuda:N",
              help="Training device.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: the CPUs this process may run on).")
def train_cmd(matrix, ops, epochs, repeat, seed, profile, dataset, data_dir, download, checkpoint_dir,
              device, threads) -> None:
    """Train one cell and print its metrics as JSON.

    SIGTERM or Ctrl-C checkpoints (with --checkpoint-dir) and exits with status 75; running the
    same command again resumes.
    """
    from farm.config import get_profile
    from farm.datasets import fit_config

    cell = _parse_cell(matrix, ops)
    try:
        config = get_profile(profile)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--profile") from exc

    import torch

    from farm.train import BadInputError, Stopped, TrainingError, TrainJob, train

    # Sized to this process's allotment (its CPU affinity: a cpuset, taskset, a container's
    # limit), never to the machine's core count that torch would otherwise assume.
    torch.set_num_threads(threads or max(len(os.sched_getaffinity(0)), 1))
    data = load_or_fail(dataset, data_dir, download=download)
    config = fit_config(config, data.num_classes)  # the data set's head (CIFAR-10: unchanged)
    job = TrainJob(cell=cell, epochs=epochs, repeat=repeat, seed=seed, config=config)
    checkpoint_path = None
    if checkpoint_dir:
        checkpoint_path = f"{checkpoint_dir.rstrip('/')}/{job.checkpoint_name()}"

    stop_requested = []

    def request_stop(signum, frame) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    progress = _Progress(config.total_steps(epochs))
    try:
        result = train(job, data, device=device, checkpoint_path=checkpoint_path, on_event=progress,
                       should_stop=lambda: bool(stop_requested))
    except Stopped as stopped:
        progress.close()
        where = f"; resume with the same --checkpoint-dir ({checkpoint_path})" if stopped.checkpointed else ""
        click.echo(f"nasfarm train: {stopped}{where}", err=True)
        sys.exit(75)
    except BadInputError as exc:
        progress.close()
        raise BadInput(str(exc)) from exc
    except TrainingError as exc:
        progress.close()
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    progress.close()
    output = {"hash": cell.hash, "epochs": epochs, "repeat": repeat, "seed": seed, "profile": config.name,
              "dataset": data.dataset, "checkpoint": checkpoint_path, **result.to_dict()}
    click.echo(json.dumps(output, indent=2))
