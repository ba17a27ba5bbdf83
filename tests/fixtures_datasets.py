"""Data-set fixtures: a private per-user config for the whole session, synthetic sets per format.

`nasfarm data synthetic`, `data check --data-dir` and downloads record where a data set lives in
``$XDG_CONFIG_HOME/nasfarm/config.json``. The tests must neither read the developer's (or CI's:
.ci/run writes one before the suite) nor write it, so XDG_CONFIG_HOME points at a fresh directory
for the session, in this process and every subprocess it starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_nasfarm_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    previous = os.environ.get("XDG_CONFIG_HOME")
    home = tmp_path_factory.mktemp("xdg-config")
    os.environ["XDG_CONFIG_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = previous


@pytest.fixture(scope="session")
def synthetic_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every registered data set's synthetic stand-in (256 images per 10,000), written once."""
    from farm.datasets import REGISTRY, write_synthetic

    root = tmp_path_factory.mktemp("synthetic-sets")
    return {name: write_synthetic(name, root / name, images=256, seed=0) for name in REGISTRY}
