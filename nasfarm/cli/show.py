"""``nasfarm space show``: draw a cell as NAS-Bench-101's paper does (farm.draw), to PNG or SVG."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from nasfarm.cli.errors import BadInput

_HASH = re.compile(r"[0-9a-f]{32}")


@click.command("show")
@click.argument("cell_hash", metavar="[HASH]", required=False)
@click.option("--matrix", help='Adjacency matrix instead of a hash: JSON ("[[0,1],[0,0]]") or "0100".')
@click.option("--ops", help="Op names with --matrix, input and output included: comma-separated or JSON.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The drawing: .png or .svg (folders created if missing).")
@click.option("--title", default=None,
              help="Title above the cell (default: hash, vertices, edges, parameters).")
def show_cmd(cell_hash: str | None, matrix: str | None, ops: str | None, out_path: str,
             title: str | None) -> None:
    """Draw a cell: input at the top, output at the bottom, each vertex labelled with its op.

    HASH is looked up among the 423,624 cells of the space (enumerating them takes ~10-20 s);
    --matrix/--ops draws the cell they make, pruned as the benchmark stores it."""
    out = Path(out_path)
    if out.suffix.lower() not in (".png", ".svg"):
        raise BadInput(f"--out {out_path}: the drawing is written as .png or .svg")
    if (cell_hash is None) == (matrix is None and ops is None):
        raise BadInput("give a cell HASH or --matrix and --ops, not both")
    if cell_hash is None and (matrix is None or ops is None):
        raise BadInput("--matrix and --ops go together")
    cell = _cell_of_hash(cell_hash) if cell_hash is not None else _cell_of_matrix(matrix, ops)

    from farm.cost import trainable_parameters
    from farm.draw import save_cell

    if title is None:
        title = (f"{cell.hash}\n{cell.num_vertices} vertices, {cell.num_edges} edges, "
                 f"{trainable_parameters(cell):,} parameters")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_cell(cell.matrix, cell.ops, out, title=title or None)
    except OSError as exc:
        raise BadInput(f"cannot write {out_path}: {exc.strerror or exc}") from None
    click.echo(f"{cell.hash}: {out}")


def _cell_of_matrix(matrix: str, ops: str):
    from farm.spec import Cell, InvalidCellError
    from nasfarm.cli.space import _ops_text

    try:
        return Cell.from_any(matrix, _ops_text(ops))
    except InvalidCellError as exc:
        raise BadInput(f"invalid cell: {exc}") from None


def _cell_of_hash(cell_hash: str):
    from farm.spec import cell_from_labels

    wanted = cell_hash.strip().lower()
    if not _HASH.fullmatch(wanted):
        raise BadInput(f"{cell_hash!r} is not a cell hash (32 hexadecimal digits)")
    for cell in _enumerated(progress=sys.stderr.isatty()):
        if cell.hash == wanted:
            return cell_from_labels(cell.matrix, cell.labels)
    raise BadInput(f"{wanted} is not the hash of any of the 423,624 cells of NAS-Bench-101's space")


_SPACE: list = []


def _enumerated(progress: bool) -> list:
    """The enumerated space, kept for the process (tests invoke the command more than once)."""
    if not _SPACE:
        from farm.space import enumerate_cells

        click.echo("looking the hash up in the enumerated space (~10-20 s)...", err=True)
        _SPACE.extend(enumerate_cells(progress=progress))
    return _SPACE
