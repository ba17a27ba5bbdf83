"""``nasfarm space enumerate`` and ``nasfarm space hash``.

Only numpy and the farm's space modules are imported: both commands start in well under a second.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click

from farm.space import (
    DEFAULT_MAX_EDGES,
    DEFAULT_MAX_VERTICES,
    SUPPORTED_MAX_VERTICES,
    EnumeratedCell,
    counts_by_vertices,
    enumerate_cells,
    iter_original_json,
    sorted_hashes_sha256,
)
from farm.spec import AVAILABLE_OPS, INPUT, OUTPUT, Cell, InvalidCellError
from nasfarm.cli.errors import BadInput


def _ops_text(text: str) -> object:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"--ops is not valid JSON: {exc}") from None
    return text


@click.command("hash")
@click.option(
    "--matrix",
    required=True,
    help='Adjacency matrix: JSON ("[[0,1],[0,0]]") or the dataset\'s 0/1 string ("0100").',
)
@click.option(
    "--ops",
    required=True,
    help="Op names, input and output included: comma-separated or a JSON list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the pruned cell as JSON, hash included.")
def hash_cmd(matrix: str, ops: str, as_json: bool) -> None:
    """Print the NAS-Bench-101 hash of a cell (after pruning, as the original does)."""
    try:
        cell = Cell.from_any(matrix, _ops_text(ops))
    except InvalidCellError as exc:
        raise BadInput(f"invalid cell: {exc}") from None
    click.echo(json.dumps(cell.to_dict()) if as_json else cell.hash)


def _jsonl_lines(cells: list[EnumeratedCell]) -> Iterator[str]:
    """One ``json.dumps``-identical line per cell; the shared matrix/labels texts are cached."""
    texts: dict[int, str] = {}
    names = (*AVAILABLE_OPS, OUTPUT, INPUT)  # index -1 -> input, -2 -> output
    for cell in cells:
        matrix = texts.get(id(cell.matrix))
        if matrix is None:
            matrix = texts[id(cell.matrix)] = json.dumps(cell.matrix)
        ops = texts.get(id(cell.labels))
        if ops is None:
            ops = texts[id(cell.labels)] = json.dumps([names[x] for x in cell.labels])
        edges = sum(map(sum, cell.matrix))
        yield (
            f'{{"hash": "{cell.hash}", "matrix": {matrix}, "ops": {ops}, '
            f'"vertices": {len(cell.labels)}, "edges": {edges}}}\n'
        )


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file written atomically (temp file + rename: no half-written output)."""
    if path is None or path == "-":
        yield sys.stdout
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise BadInput(f"--out: directory {directory} does not exist")
    # A plain open (not mkstemp) so that the file gets the usual umask permissions.
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temp, "x", encoding="ascii", newline="\n") as stream:
            yield stream
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


@click.command("enumerate")
@click.option(
    "--max-vertices",
    type=click.IntRange(1, SUPPORTED_MAX_VERTICES),
    default=DEFAULT_MAX_VERTICES,
    show_default=True,
    help="Largest cell, counting input and output.",
)
@click.option(
    "--max-edges",
    type=click.IntRange(0),
    default=DEFAULT_MAX_EDGES,
    show_default=True,
    help="Most edges of a (pruned) cell.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here instead of stdout (the counts then go to stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "original"]),
    default="jsonl",
    show_default=True,
    help='jsonl: one {"hash", "matrix", "ops", "vertices", "edges"} per line. '
    "original: the original enumerator's JSON file, byte for byte.",
)
@click.option("--workers", type=click.IntRange(1), default=None, help="Hashing processes [all CPUs].")
def enumerate_cmd(max_vertices: int, max_edges: int, out: str | None, fmt: str, workers: int | None) -> None:
    """Enumerate every unique cell, with the original's canonical representative, in its order."""
    started = time.perf_counter()
    cells = enumerate_cells(max_vertices, max_edges, progress=sys.stderr.isatty(), workers=workers)
    try:
        with _output(out) as stream:
            pieces = _jsonl_lines(cells) if fmt == "jsonl" else iter_original_json(cells)
            stream.writelines(pieces)
            stream.flush()
    except BrokenPipeError:  # e.g. `nasfarm space enumerate | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    elapsed = time.perf_counter() - started
    # Keep stdout clean for the data when the data goes there.
    report = sys.stdout if out not in (None, "-") else sys.stderr
    cumulative = 0
    click.echo(f"{'vertices':>8} {'cells':>9} {'cumulative':>11}", file=report)
    for vertices, count in counts_by_vertices(cells).items():
        cumulative += count
        click.echo(f"{vertices:>8} {count:>9,} {cumulative:>11,}", file=report)
    click.echo(f"total {len(cells):,} cells in {elapsed:.1f} s", file=report)
    click.echo(f"sha256 of sorted hashes: {sorted_hashes_sha256(cells)}", file=report)
