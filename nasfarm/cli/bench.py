"""`nasfarm export`, `nasfarm import-nb101`, `nasfarm compare`: the benchmark table in and out of
the database, and a campaign side by side with another (e.g. the published NAS-Bench-101)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import numpy as np

from nasfarm.cli.dataopts import tfrecord_target
from nasfarm.cli.db import db_errors, db_option, open_engine
from nasfarm.cli.errors import BadInput


@click.command("export")
@click.option("--campaign", required=True, help="The campaign whose finished jobs to export.")
@click.option("--format", "fmt", type=click.Choice(["tfrecord", "jsonl", "parquet"]), default=None,
              help="Default: from the file extension.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="Output file.")
@click.option("--allow-synthetic", is_flag=True,
              help="Write tfrecord (NAS-Bench-101's format) even for a campaign trained on synthetic data.")
@db_option
def export_cmd(
    campaign: str, fmt: str | None, out_path: str, allow_synthetic: bool, db_url: str | None
) -> None:
    """Write a campaign's results as NAS-Bench-101 records.

    tfrecord is the published layout (the original NAS-Bench-101 API can load it); jsonl and
    parquet are flat rows with NAS-Bench-101's metric names, for pandas. The tfrecord format has no
    data-set field: a campaign trained on another data set than CIFAR-10 gets the data set's name in
    the file name and a sidecar JSON (data set, fingerprint); one trained on synthetic data is
    refused unless --allow-synthetic.
    """
    from db.campaigns import get_campaign
    from db.nb101_io import campaign_records
    from farm.records import RecordError, detect_format, write_file

    if fmt is None:
        try:
            fmt = detect_format(out_path)
        except RecordError as exc:
            raise BadInput(f"{exc}, or pass --format") from None
    with db_errors():
        engine = open_engine(db_url)
        settings = get_campaign(engine, campaign)  # an unknown campaign stops here: no file begun
        try:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"cannot create the folder for {out_path}: {exc.strerror}") from None
        sidecar = None
        if fmt == "tfrecord":
            out_path, sidecar = tfrecord_target(settings, out_path, allow_synthetic=allow_synthetic)
        try:
            count = write_file(out_path, campaign_records(engine, campaign), fmt=fmt)
        except RecordError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write {out_path}: {exc.strerror or exc}") from None
    if sidecar is not None:
        Path(sidecar).write_text(json.dumps({
            "campaign": campaign, "format": fmt, "records": count, "dataset": settings.get("dataset"),
            "data_fingerprint": settings.get("data_fingerprint"),
            "note": "NAS-Bench-101's tfrecord format has no data-set field: this file says which data set "
                    "the records were trained on",
        }, indent=1, sort_keys=True) + "\n")
    click.echo(f"exported {count} records of campaign {campaign!r} to {out_path} ({fmt})"
               + (f"; data set in {sidecar}" if sidecar else ""))


@click.command("import-nb101")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--campaign", default="published", show_default=True, help="Campaign to load into.")
@click.option("--no-crc-check", is_flag=True, help="Skip the TFRecord CRC checks (faster).")
@db_option
def import_cmd(source: str, campaign: str, no_crc_check: bool, db_url: str | None) -> None:
    """Load a NAS-Bench-101 table (nasbench_*.tfrecord, or a nasfarm export) as a campaign of
    done jobs."""
    import sys

    from farm.config import NB101
    from farm.records import RecordError, iter_file
    from farm.tfrecord import TFRecordError
    from nasfarm.campaigns import import_records

    def read():
        return iter_file(source, check_crc=not no_crc_check)

    with db_errors():
        engine = open_engine(db_url)
        try:
            info = import_records(engine, read, campaign, profile={**NB101.to_dict(), "name": "nb101"},
                                  progress=sys.stderr.isatty())
        except (RecordError, TFRecordError) as exc:
            raise BadInput(str(exc)) from None
        except ValueError as exc:
            raise BadInput(f"{source}: {exc}") from None
    click.echo(f"campaign {campaign!r}: {info['results_added']} results added "
               f"({info['cells_added']} new cells, budgets {info['epochs']}, {info['repeats']} repeats)")


def _table(engine, campaign: str):
    from db.nb101_io import campaign_records
    from farm.api import BenchmarkTable

    return BenchmarkTable.from_records(campaign_records(engine, campaign))


def compare_tables(ours, theirs) -> tuple[dict, list[dict]]:
    """Per-cell differences (ours - theirs) of mean accuracy and training time over the cells and
    budgets both have; Spearman rank correlation of mean validation accuracy; parameter agreement."""
    from scipy.stats import spearmanr

    common = [h for h in ours.hashes if h in theirs.index]
    mine = np.array([ours.index[h] for h in common], dtype=np.int64)
    other = np.array([theirs.index[h] for h in common], dtype=np.int64)
    params_equal = ours.trainable_parameters[mine] == theirs.trainable_parameters[other]
    summary: dict = {
        "cells_ours": len(ours), "cells_theirs": len(theirs), "cells_common": len(common),
        "parameter_agreement": float(params_equal.mean()) if common else None,
        "parameter_mismatches": [common[i] for i in np.flatnonzero(~params_equal)[:20]],
        "budgets": {},
    }
    rows: list[dict] = []
    for epochs in sorted(set(ours.epochs) & set(theirs.epochs)):
        values = {}
        for key in ("final_validation_accuracy", "final_test_accuracy", "final_training_time"):
            values[key] = (ours.mean(epochs, key)[mine], theirs.mean(epochs, key)[other])
        a, b = values["final_validation_accuracy"]
        both = ~np.isnan(a) & ~np.isnan(b)
        stats: dict = {"cells": int(both.sum())}
        for key, (mine_values, their_values) in values.items():
            diff = (mine_values - their_values)[both]
            stats[key] = {"mean_difference": float(diff.mean()) if diff.size else None,
                          "mean_abs_difference": float(np.abs(diff).mean()) if diff.size else None}
        ours_valid, theirs_valid = values["final_validation_accuracy"]
        rho = float(spearmanr(ours_valid[both], theirs_valid[both])[0]) if both.sum() > 2 else float("nan")
        stats["spearman_validation"] = None if np.isnan(rho) else rho  # constant input: undefined
        summary["budgets"][epochs] = stats
        for i in np.flatnonzero(both):
            rows.append({"module_hash": common[i], "epochs": epochs,
                         **{f"{k}_ours": float(v[0][i]) for k, v in values.items()},
                         **{f"{k}_theirs": float(v[1][i]) for k, v in values.items()},
                         "parameters_ours": int(ours.trainable_parameters[mine[i]]),
                         "parameters_theirs": int(theirs.trainable_parameters[other[i]])})
    return summary, rows


def _plots(rows: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, label in (("final_validation_accuracy", "mean validation accuracy"),
                       ("final_training_time", "mean training time (s)")):
        fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
        for epochs in sorted({r["epochs"] for r in rows}):
            pick = [r for r in rows if r["epochs"] == epochs]
            ax.scatter([r[f"{key}_theirs"] for r in pick], [r[f"{key}_ours"] for r in pick], s=6,
                       alpha=0.5, label=f"{epochs} epochs")
        limits = [min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])]
        ax.plot(limits, limits, color="grey", linewidth=0.8)
        ax.set_xlabel(f"theirs: {label}")
        ax.set_ylabel(f"ours: {label}")
        ax.legend()
        fig.tight_layout()
        name = f"{key}.png"
        fig.savefig(out / name)
        plt.close(fig)
        written.append(name)
    return written


@click.command("compare")
@click.option("--campaign", required=True, help="Our campaign.")
@click.option("--against", default="published", show_default=True, help="The campaign to compare with.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for cells.csv, summary.json and plots (default: compare-OURS-vs-THEIRS).")
@db_option
def compare_cmd(campaign: str, against: str, out_dir: str | None, db_url: str | None) -> None:
    """Per-cell differences, Spearman of mean validation accuracy, parameter agreement (must be
    100%: exit code 1 otherwise), and plots."""
    from db.campaigns import get_campaign
    from db.errors import UnknownCampaign

    with db_errors():
        engine = open_engine(db_url)
        get_campaign(engine, campaign)
        try:
            get_campaign(engine, against)
        except UnknownCampaign:
            raise BadInput(
                f"no campaign {against!r} to compare with: load the published table first, e.g. "
                f"nasfarm import-nb101 nasbench_only108.tfrecord --campaign {against}") from None
        ours, theirs = _table(engine, campaign), _table(engine, against)
    summary, rows = compare_tables(ours, theirs)
    out = Path(out_dir or f"compare-{campaign}-vs-{against}")
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        with open(out / "cells.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        summary["plots"] = _plots(rows, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    click.echo(f"{summary['cells_common']} cells in common ({summary['cells_ours']} ours, "
               f"{summary['cells_theirs']} theirs)")
    for epochs, stats in summary["budgets"].items():
        v = stats["final_validation_accuracy"]
        t = stats["final_training_time"]
        spearman = stats["spearman_validation"]
        click.echo(f"{epochs:>4} epochs: {stats['cells']} cells, validation diff {v['mean_difference']:+.4f} "
                   f"(|.| {v['mean_abs_difference']:.4f}), time diff {t['mean_difference']:+.1f} s, "
                   f"Spearman {'n/a' if spearman is None else f'{spearman:.4f}'}")
    agreement = summary["parameter_agreement"]
    click.echo(f"parameter agreement: {'n/a' if agreement is None else f'{100 * agreement:.2f}%'}; "
               f"wrote {out}")
    if not summary["cells_common"]:
        raise click.ClickException("the campaigns have no finished cell in common")
    if agreement < 1.0:
        raise click.ClickException(
            f"parameter counts differ for {len(summary['parameter_mismatches'])}+ cells, e.g. "
            f"{summary['parameter_mismatches'][:3]}"
        )
