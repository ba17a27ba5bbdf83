"""`nasfarm demo` offline: without CIFAR-10 it says how to place it (CI runs the full demo on a
synthetic CIFAR-format set, see .ci/run)."""

from __future__ import annotations

from click.testing import CliRunner

from nasfarm.cli import main


def test_demo_offline_without_data_says_how_to_place_it(tmp_path):
    db_file = tmp_path / "demo.db"
    result = CliRunner().invoke(main, [
        "demo", "--offline", "--data-dir", str(tmp_path / "nothing"), "--db", f"sqlite:///{db_file}",
    ])
    assert result.exit_code == 2, result.output
    assert "cifar-10-batches-py/data_batch_1" in result.output
    assert "nasfarm data synthetic" in result.output
    assert "Traceback" not in result.output
    assert not db_file.exists()  # nothing was created before the data check failed


def test_demo_rejects_broken_data(tmp_path):
    batches = tmp_path / "cifar" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"):
        (batches / name).write_bytes(b"not a pickle")
    result = CliRunner().invoke(main, [
        "demo", "--offline", "--data-dir", str(tmp_path / "cifar"), "--db", f"sqlite:///{tmp_path / 'd.db'}",
    ])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "data_batch_1" in result.output
