"""bench/gpu.py's output: the printed table, the markdown table for docs/gpu.md, the file name."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import torch


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits, through nested lists and dicts (for the printed table)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def render_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'cell':<10} {'mode':<20} {'ms/step':>8} {'img/s':>8} {'108ep min':>9} {'4ep s':>7} "
              f"{'TFLOP/s':>8} {'%peak':>6} {'GiB':>6}  note")
    lines = [header, "-" * len(header)]
    for row in rows:
        if "skipped" in row or "error" in row:
            lines.append(f"{row['cell']:<10} {row['mode']:<20} {row.get('skipped') or row.get('error')}")
            continue
        if row["cell"] == "check":
            details = {k: _rounded(v) for k, v in row.items() if k not in ("cell", "mode", "seconds", "what")}
            lines.append(f"{'check':<10} {row['mode']:<20} {json.dumps(details)}")
            continue
        note = ""
        if "speedup_vs_tpu_108ep" in row:
            note = f"{row['speedup_vs_tpu_108ep']:.1f}x TPU v2 ({row['tpu_108ep_s']:.0f} s)"
        if "speedup_vs_N1" in row:
            note = f"{row['speedup_vs_N1']:.2f}x N=1 throughput"
        if "compile_s" in row:
            note = f"compile {row['compile_s']:.0f} s; pays off at 4 ep: {row.get('pays_off_at_4ep', '?')}"
        ms = row.get("ms_per_repeat_step", row.get("ms_per_step"))
        lines.append(
            f"{row['cell']:<10} {row['mode']:<20} {_fmt(ms, '8.2f')} {_fmt(row.get('images_per_s'), '8.0f')} "
            f"{_fmt(row['run_108ep_s'] / 60 if 'run_108ep_s' in row else None, '9.2f')} "
            f"{_fmt(row.get('run_4ep_s'), '7.1f')} {_fmt(row.get('tflops'), '8.1f')} "
            f"{_fmt(row['fraction_of_bf16_peak'] * 100 if 'fraction_of_bf16_peak' in row else None, '6.1f')} "
            f"{_fmt(row.get('peak_gib'), '6.2f')}  {note}"
        )
    return "\n".join(lines)


def _check_detail(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{key} {value:.3g}"
    if isinstance(value, dict) and "graph_vs_eager_rel" in value:  # graph == eager, one numerics
        return (f"{key}: graph vs eager {value['graph_vs_eager_rel'][-1]:.3g}, eager vs eager "
                f"{value['eager_vs_eager_rel'][-1]:.3g}, weights moved {value['weight_move_rel']:.3g} "
                f"(worst {value['graph_worst_parameter']})")
    return f"{key} {value}"


def render_markdown(result: dict[str, Any]) -> str:
    """The results as the markdown table docs/gpu.md and the README carry (no GPU needed)."""
    lines = [
        f"Measured on {result['card']}, torch {result['torch']} (CUDA {result['cuda']}), "
        f"{result['date_utc'][:10]}; `bench/gpu.py`, random images, batch {result['config']['batch_size']}.",
        "",
        "| cell | mode | ms/step (per repeat) | images/s | 108 epochs | 4 epochs | TFLOP/s | % of bf16 peak "
        "| peak GiB | vs TPU v2 (108 ep) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        if "skipped" in row or "error" in row:
            lines.append(f"| {row['cell']} | {row['mode']} | {row.get('skipped') or row.get('error')} "
                         "| | | | | | | |")
            continue
        if row["cell"] == "check":
            details = ", ".join(_check_detail(k, v) for k, v in row.items()
                                if k not in ("cell", "mode", "seconds", "what"))
            lines.append(f"| check | {row['mode']} | {details} | | | | | | | |")
            continue
        if row["cell"] == "mix":
            lines.append(f"| mix of 4 | {row['mode']} | | {row['images_per_s']:.0f} | | | | | "
                         f"{_fmt(row.get('peak_gib'), '.1f')} | {row['speedup_vs_N1']:.2f}x N=1 |")
            continue
        if "compile_s" in row:
            lines.append(f"| {row['cell']} | {row['mode']} (compile {row['compile_s']:.0f} s) | "
                         f"{row['ms_per_step']:.2f} | {row['images_per_s']:.0f} | | | | | | "
                         f"pays off at 4 ep: {row.get('pays_off_at_4ep', '?')} |")
            continue
        versus = ""
        if "tpu_108ep_s" in row:
            versus = f"{row['speedup_vs_tpu_108ep']:.1f}x ({row['tpu_108ep_s']:.0f} s)"
        lines.append(
            f"| {row['cell']} | {row['mode']} | {row['ms_per_repeat_step']:.2f} | "
            f"{row['images_per_s']:.0f} | "
            f"{row['run_108ep_s'] / 60:.1f} min | {row['run_4ep_s']:.0f} s | {row['tflops']:.1f} | "
            f"{row['fraction_of_bf16_peak'] * 100:.1f} | {_fmt(row.get('peak_gib'), '.1f')} | {versus} |"
        )
    return "\n".join(lines)


def card_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def output_path(out: Path, card: str, quick: bool) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", card).strip("-") or "unknown"
    # timezone.utc, not 3.11's dt.UTC: the device machine's Python version is not ours to choose.
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")  # noqa: UP017
    stem = f"gpu-{slug}-{date}" + ("-quick" if quick else "")
    path = out / f"{stem}.json"
    n = 2
    while path.exists():
        path = out / f"{stem}-{n}.json"
        n += 1
    return path

