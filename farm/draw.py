"""Cells drawn as NAS-Bench-101's paper draws them (its figure 1): a DAG with the input at the top and
the output at the bottom, one box per vertex labelled with its op, arrows for the edges.

networkx lays the graph out (vertices in rows by their longest distance from the input,
``topological_generations`` + ``multipartite_layout``); matplotlib draws it. An edge that skips rows
is drawn as an arc so that it does not run through the boxes between its ends. Pure domain code:
no database, usable from the CLI (``nasfarm space show``) and the campaign report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.path import Path as _Path  # noqa: E402

# Box colours per op (the paper colours the op types; these are colour-blind-safe Okabe-Ito tones).
OP_COLOURS = {
    "input": "#d9d9d9",
    "output": "#d9d9d9",
    "conv3x3-bn-relu": "#e69f00",
    "conv1x1-bn-relu": "#56b4e9",
    "maxpool3x3": "#009e73",
}


def _colour(op: str) -> str:
    """The op's box colour; short labels (conv3x3, as in the paper's figure) match too."""
    return OP_COLOURS.get(op) or OP_COLOURS.get(f"{op}-bn-relu") or "white"


def cell_layout(matrix: Any) -> dict[int, tuple[float, float]]:
    """Vertex -> (x, y). Row = longest path from the input (input at y = 0, rows going down, the
    output alone on the last row); within a row, vertices ordered by the mean x of their
    predecessors (fewer crossings), 1.6 units apart."""
    adjacency = np.asarray(matrix, dtype=int)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(adjacency)))
    graph.add_edges_from((int(u), int(v)) for u, v in zip(*np.nonzero(adjacency), strict=True))
    row = dict.fromkeys(graph, 0)
    for vertex in nx.topological_sort(graph):  # longest path, so every edge points down
        for successor in graph.successors(vertex):
            row[successor] = max(row[successor], row[vertex] + 1)
    last = len(adjacency) - 1
    if any(row[v] == row[last] for v in graph if v != last):
        row[last] += 1
    # Order each row by its vertices' predecessors' mean position, row by row from the top.
    rank: dict[int, float] = {}
    ordered: list[int] = []
    for r in sorted(set(row.values())):
        members = [v for v in graph if row[v] == r]
        members.sort(key=lambda v: (np.mean([rank[u] for u in graph.predecessors(v)])
                                    if any(True for _ in graph.predecessors(v)) else 0.0, v))
        for i, v in enumerate(members):
            rank[v] = i - (len(members) - 1) / 2
        ordered.extend(members)
    layered = nx.DiGraph()
    layered.add_nodes_from((v, {"row": row[v]}) for v in ordered)
    positions = nx.multipartite_layout(layered, subset_key="row", align="horizontal")
    gaps = [abs(positions[a][0] - positions[b][0]) for a in graph for b in graph
            if a < b and row[a] == row[b]]
    stretch = 1.6 / min(gaps) if gaps and min(gaps) > 0 else 1.0
    return {int(v): (float(positions[v][0]) * stretch, -float(row[v])) for v in graph}


def draw_cell(ax: Any, matrix: Any, ops: Sequence[str], *, title: str | None = None,
              fontsize: float = 9.0) -> None:
    """Draw one cell on ``ax`` (axes turned off). Lay the figure out before calling: box widths are
    measured in the axes' current data units to route the edges around them."""
    adjacency = np.asarray(matrix, dtype=int)
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1] or adjacency.shape[0] != len(ops):
        raise ValueError(f"a {adjacency.shape} matrix and {len(ops)} ops do not make a cell")
    positions = cell_layout(adjacency)
    ax.set_axis_off()
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    # Room for the boxes (~0.6 units either side of a centre at the default size) and for lanes.
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 0.4, max(ys) + 0.4)
    while True:  # boxes are sized in points: shrink the font until a row's boxes do not touch
        labels = {}
        for vertex, (x, y) in positions.items():
            labels[vertex] = ax.text(
                x, y, ops[vertex], ha="center", va="center", fontsize=fontsize, zorder=3,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": _colour(ops[vertex]),
                      "edgecolor": "black", "linewidth": 0.8},
            )
        extents = _box_extents(ax, labels)
        if fontsize <= 5.0 or not _touching(positions, extents):
            break
        for label in labels.values():
            label.remove()
        fontsize -= 0.5
    lanes = {"left": min(e[0] for e in extents.values()), "right": max(e[1] for e in extents.values())}
    style = {"arrowstyle": "-|>", "mutation_scale": 11, "linewidth": 1.0, "color": "#333333",
             "zorder": 2, "shrinkA": 0, "shrinkB": 1}
    for u, v in zip(*np.nonzero(adjacency), strict=True):
        ax.add_patch(FancyArrowPatch(path=_route(int(u), int(v), positions, extents, lanes), **style))
    if title:
        ax.set_title(title, fontsize=fontsize + 1)


def _box_extents(ax: Any, labels: dict[int, Any]) -> dict[int, tuple[float, float, float, float]]:
    """Each box's (left, right, bottom, top) in data units, as currently laid out (boxes are sized
    in points, so this depends on the axes' size in inches, not on the dpi)."""
    renderer = ax.figure.canvas.get_renderer()
    to_data = ax.transData.inverted()
    out = {}
    for vertex, label in labels.items():
        label.update_bbox_position_size(renderer)  # otherwise placed only when first drawn
        box = label.get_bbox_patch().get_window_extent(renderer)
        (left, bottom), (right, top) = to_data.transform([[box.x0, box.y0], [box.x1, box.y1]])
        out[vertex] = (float(left), float(right), float(bottom), float(top))
    return out


def _touching(positions: dict, extents: dict, gap: float = 0.1) -> bool:
    """Do two boxes of one row come closer than ``gap`` data units?"""
    rows: dict[float, list[tuple[float, float]]] = {}
    for vertex, (_, y) in positions.items():
        rows.setdefault(y, []).append(extents[vertex][:2])
    for boxes in rows.values():
        boxes.sort()
        pairs = zip(boxes, boxes[1:], strict=False)
        if any(left - previous_right < gap for (_, previous_right), (left, _) in pairs):
            return True
    return False


def _box_exit(centre: tuple[float, float], extent: tuple[float, float, float, float],
              direction: tuple[float, float]) -> tuple[float, float]:
    """Where a ray from the box's centre leaves the box."""
    (x, y), (dx, dy) = centre, direction
    half_width, half_height = (extent[1] - extent[0]) / 2, (extent[3] - extent[2]) / 2
    t = min(half_width / abs(dx) if dx else np.inf, half_height / abs(dy) if dy else np.inf)
    return x + t * dx, y + t * dy


def _route(u: int, v: int, positions: dict, extents: dict, lanes: dict[str, float]) -> _Path:
    """The first of these that passes no other box: a straight line; a curve bowing left or right
    by 0.35, 0.6 or 0.9 units; a lane outside every box on the side the edge leans to (then the
    other side). Paths are in data units, so the check is exact whatever the aspect ratio."""
    (x0, y0), (x1, y1) = positions[u], positions[v]
    others = [extents[w] for w in positions if w not in (u, v)]
    length = float(np.hypot(x1 - x0, y1 - y0))
    normal = np.array([y0 - y1, x1 - x0]) / length  # to the right of a downward edge... or left
    middle = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    # Bows (positive offset: to the right of a downward edge) alternate sides: the side fewer
    # earlier edges bowed to comes first, so that two bows rarely cross.
    first = -1.0 if lanes.get("bows_right", 0) > lanes.get("bows_left", 0) else 1.0
    for offset in (0.0, 0.35 * first, -0.35 * first, 0.6 * first, -0.6 * first, 0.9 * first, -0.9 * first):
        control = middle + offset * normal
        start = _box_exit((x0, y0), extents[u], (control[0] - x0, control[1] - y0))
        end = _box_exit((x1, y1), extents[v], (control[0] - x1, control[1] - y1))
        if offset == 0.0:
            path = _Path([start, end], [_Path.MOVETO, _Path.LINETO])
        else:
            # The quadratic Bezier through ``control`` at its middle: control point 2c - (a + b) / 2.
            bend = 2 * control - (np.array(start) + np.array(end)) / 2
            path = _Path([start, tuple(bend), end], [_Path.MOVETO, _Path.CURVE3, _Path.CURVE3])
        if _clear(path, others):
            if offset:
                key = "bows_right" if offset > 0 else "bows_left"
                lanes[key] = lanes.get(key, 0) + 1
            return path
    sides = ["left", "right"] if x0 + x1 < 0 else ["right", "left"]
    for side in sides:
        sign = 1.0 if side == "right" else -1.0
        lane = lanes[side] + sign * 0.18
        start = (extents[u][1] if side == "right" else extents[u][0], y0)
        end = (extents[v][1] if side == "right" else extents[v][0], y1)
        path = _lane_path(start, lane, end)
        if _clear(path, others) or side == sides[-1]:
            lanes[side] = lane
            return path
    raise AssertionError("unreachable")


def _clear(path: _Path, boxes: list[tuple[float, float, float, float]], margin: float = 0.04) -> bool:
    """No point of the path (sampled finely) inside any of the boxes, widened by ``margin``."""
    points = np.concatenate([segment for segment in _sampled(path)])
    for left, right, bottom, top in boxes:
        inside = ((points[:, 0] > left - margin) & (points[:, 0] < right + margin)
                  & (points[:, 1] > bottom - margin) & (points[:, 1] < top + margin))
        if inside.any():
            return False
    return True


def _sampled(path: _Path, steps: int = 60):
    """Points along each straight or quadratic piece of the path."""
    t = np.linspace(0, 1, steps)[:, None]
    previous = None
    vertices, codes = path.vertices, path.codes
    i = 0
    while i < len(vertices):
        if codes[i] == _Path.MOVETO:
            previous = vertices[i]
            i += 1
        elif codes[i] == _Path.LINETO:
            yield previous + t * (vertices[i] - previous)
            previous = vertices[i]
            i += 1
        else:  # CURVE3: control point, end point
            control, end = vertices[i], vertices[i + 1]
            yield (1 - t) ** 2 * previous + 2 * (1 - t) * t * control + t**2 * end
            previous = end
            i += 2


def _lane_path(start: tuple[float, float], lane: float, end: tuple[float, float]) -> _Path:
    """Sideways out of ``start``, down the vertical line x = lane, sideways into ``end``; rounded
    corners (quadratic Beziers through the corner points)."""
    (x0, y0), (x1, y1) = start, end
    r = min(0.12, abs(lane - x0) / 2, abs(lane - x1) / 2, abs(y0 - y1) / 2)
    toward = 1.0 if lane > x0 else -1.0
    back = 1.0 if lane > x1 else -1.0
    vertices = [(x0, y0), (lane - toward * r, y0), (lane, y0), (lane, y0 - r),
                (lane, y1 + r), (lane, y1), (lane - back * r, y1), (x1, y1)]
    codes = [_Path.MOVETO, _Path.LINETO, _Path.CURVE3, _Path.CURVE3,
             _Path.LINETO, _Path.CURVE3, _Path.CURVE3, _Path.LINETO]
    return _Path(vertices, codes)


def save_cell(matrix: Any, ops: Sequence[str], path: str | Path, *, title: str | None = None) -> Path:
    """One cell to a PNG or SVG (chosen by the suffix), sized to its rows and widest row."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise ValueError(f"{out.name}: the drawing is written as .png or .svg")
    positions = cell_layout(matrix)
    xs = [p[0] for p in positions.values()]
    rows = 1 - min(p[1] for p in positions.values())
    width = 1.25 * (max(xs) - min(xs) + 3.0)
    height = 0.8 * rows + (0.8 if title else 0.4)
    # SVG text stays text (searchable, editable), not glyph outlines.
    with plt.rc_context({"svg.fonttype": "none"}):
        fig = plt.figure(figsize=(width, height))
        top = 1 - (0.5 if title else 0.1) / height
        ax = fig.add_axes((0.01, 0.05 / height, 0.98, top - 0.05 / height))
        draw_cell(ax, matrix, ops, title=title)
        fig.savefig(out, dpi=150 if suffix == ".png" else None)
        plt.close(fig)
    return out
