"""Where each data set lives: said once, remembered in a small per-user config file.

Precedence, first that applies:

1. ``--data-dir DIR`` (the command's flag);
2. the path of a ``folder:PATH`` data set (it names its place);
3. ``NASFARM_DATA_DIR`` (one root for whichever data set a command uses: CIFAR-10, CIFAR-100 and
   SVHN each have their own file names under it, as torchvision lays them out);
4. the config file, ``$XDG_CONFIG_HOME/nasfarm/config.json`` (default ``~/.config/nasfarm/``):
   ``{"data_dirs": {"cifar10": "/data/cifar", ...}}``, written by ``nasfarm data check --data-dir``,
   ``nasfarm data synthetic`` and every successful download;
5. the cache default, ``$XDG_CACHE_HOME/nasfarm/<name>`` (default ``~/.cache/nasfarm/<name>``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_DATA_DIR = "NASFARM_DATA_DIR"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "nasfarm" / "config.json"


def read_config() -> dict[str, Any]:
    """The config file's content ({} when absent; an unreadable file is ignored, not fatal)."""
    try:
        content = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def remembered(name: str) -> Path | None:
    dirs = read_config().get("data_dirs")
    value = dirs.get(name) if isinstance(dirs, dict) else None
    return Path(value) if isinstance(value, str) and value else None


def remember(name: str, root: str | Path) -> Path | None:
    """Record ``root`` as where data set ``name`` lives; returns the config file (None when it
    cannot be written: remembering is a convenience, never a reason to fail a command)."""
    path = config_path()
    content = read_config()
    dirs = content.get("data_dirs") if isinstance(content.get("data_dirs"), dict) else {}
    dirs[name] = str(Path(root).expanduser().resolve())
    content["data_dirs"] = dict(sorted(dirs.items()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(content, indent=1) + "\n")
        tmp.replace(path)
    except OSError:
        return None
    return path


def cache_dir(name: str) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "nasfarm" / name


def locate(name: str, flag: str | Path | None = None, *, own_root: Path | None = None) -> tuple[Path, str]:
    """(root, where the choice came from) for data set ``name``, by the precedence above."""
    if flag:
        return Path(flag).expanduser(), "--data-dir"
    if own_root is not None:
        return own_root, "its folder: path"
    explicit = os.environ.get(ENV_DATA_DIR)
    if explicit:
        return Path(explicit).expanduser(), ENV_DATA_DIR
    stored = remembered(name)
    if stored is not None:
        return stored, str(config_path())
    return cache_dir(name), "the cache default"
