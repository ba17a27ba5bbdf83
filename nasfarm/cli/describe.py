"""``nasfarm space describe``: size and cost of cells, one JSON line each.

``trainable_parameters`` is counted from the real PyTorch network built on the meta device (no
memory, no initialization); the closed form of ``farm.cost`` is computed too and any disagreement
is reported as an error, so a run over many cells doubles as a check of the two. ``flops`` is the
analytic forward multiply-adds per 32x32 image (see ``farm.cost.forward_flops``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import click

from farm.config import PROFILES, TrainConfig, get_profile
from farm.spec import Cell, InvalidCellError, cell_from_labels
from nasfarm.cli.dataopts import dataset_option
from nasfarm.cli.errors import BadInput


def _parse_ops(text: str) -> Any:
    text = text.strip()
    return json.loads(text) if text.startswith("[") else text


def cell_from_record(record: Any) -> Cell:
    """A cell from one JSON object: ``matrix`` plus ``ops`` (names) or ``labels`` (-1, 0..2, -2)."""
    if not isinstance(record, dict) or "matrix" not in record:
        raise InvalidCellError("expected a JSON object with 'matrix' and 'ops' (or 'labels')")
    if "ops" in record:
        return Cell.from_any(record["matrix"], record["ops"])
    if "labels" in record:
        return cell_from_labels(record["matrix"], record["labels"])
    raise InvalidCellError("the object has a 'matrix' but neither 'ops' nor 'labels'")


def _records(stream: TextIO, name: str) -> Iterator[tuple[int, Cell]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield number, cell_from_record(json.loads(line))
        except (json.JSONDecodeError, InvalidCellError, ValueError, TypeError, IndexError) as exc:
            raise BadInput(f"{name} line {number}: {exc}") from None


def describe_cell(cell: Cell, config: TrainConfig, *, count: str = "module") -> dict[str, Any]:
    """The JSON record of one cell.

    ``count="module"`` counts parameters on the meta-device network and raises RuntimeError if
    the closed form disagrees; ``count="formula"`` uses the closed form alone (~200x faster).
    """
    from farm import cost

    closed_form = cost.trainable_parameters(cell, config)
    if count == "formula":
        counted = closed_form
    else:
        from farm.model import meta_parameter_count

        counted = meta_parameter_count(cell, config)
    if counted != closed_form:
        raise RuntimeError(
            f"cell {cell.hash}: the module has {counted} parameters, the closed form {closed_form}"
        )
    return {
        "hash": cell.hash,
        "vertices": cell.num_vertices,
        "edges": cell.num_edges,
        "trainable_parameters": counted,
        "flops": cost.forward_flops(cell, config),
    }


@click.command("describe")
@click.option("--matrix", help='Adjacency matrix: JSON ("[[0,1],[0,0]]") or a 0/1 string ("0100").')
@click.option("--ops", help='Op names: comma-separated or a JSON list, input and output included.')
@click.option(
    "--input",
    "input_path",
    type=click.File("r"),
    help="JSON lines with 'matrix' and 'ops' or 'labels' (e.g. nasfarm space enumerate); - = stdin.",
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="nb101",
    show_default=True,
    help="Network shape (stem channels, modules per stack).",
)
@dataset_option
@click.option(
    "--count",
    type=click.Choice(["module", "formula"]),
    default="module",
    show_default=True,
    help="Count parameters on the real torch module (meta device, checked against the closed "
    "form) or with the closed form only (for the whole space).",
)
def describe_cmd(
    matrix: str | None, ops: str | None, input_path: TextIO | None, profile: str, dataset: str, count: str
) -> None:
    """Print hash, vertices, edges, trainable_parameters and flops of cells as JSON lines.

    The network's head follows --dataset (its number of classes), and so do the parameters and
    FLOPs; the hash never does.
    """
    from farm.datasets import DataError, fit_config

    try:
        config = fit_config(get_profile(profile), dataset)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    if input_path is not None and (matrix or ops):
        raise click.UsageError("give either --matrix and --ops, or --input, not both")
    if input_path is None:
        if not (matrix and ops):
            raise click.UsageError("give --matrix and --ops, or --input FILE")
        try:
            cell = Cell.from_any(matrix, _parse_ops(ops))
        except (InvalidCellError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        click.echo(json.dumps(describe_cell(cell, config, count=count)))
        return

    name = getattr(input_path, "name", "input")
    records = _records(input_path, name)
    show_progress = sys.stderr.isatty()
    if show_progress:
        from tqdm import tqdm

        records = tqdm(records, unit=" cells", file=sys.stderr)
    out = sys.stdout
    try:
        for _, cell in records:
            out.write(json.dumps(describe_cell(cell, config, count=count)) + "\n")
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
