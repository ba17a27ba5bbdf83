"""Multiprocessing pools that start and end cleanly under any caller."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import process
from multiprocessing.pool import Pool


@contextmanager
def main_without_a_missing_file() -> Iterator[None]:
    """Start spawn/forkserver workers inside this: they will not try to re-run a ``__main__``
    whose file does not exist.

    Such a child re-imports its parent's ``__main__`` from ``__main__.__file__`` so that functions
    defined there can be unpickled. Code piped to ``python3 -`` has ``__file__ == '<stdin>'``: every
    child then dies at start (FileNotFoundError) and the pool starts another one for ever, a hang.
    Our pools only run functions of importable modules, so hiding the name while the workers start
    loses nothing. (``python3 -c`` has no ``__file__``, and a real script's file exists.)
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    base = process.ORIGINAL_DIR or os.getcwd()
    if main is None or path is None or spec is not None or os.path.isfile(os.path.join(base, path)):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@contextmanager
def pool_that_closes(pool: Pool) -> Iterator[Pool]:
    """Use ``pool``; then close it (workers exit on their sentinel) and join it.

    ``with Pool(...)`` terminates on exit, i.e. sends SIGTERM to every worker. A forked worker
    inherits its parent's Python signal handlers, and under a Ray driver (or anything else that
    handles SIGTERM in Python) it ignores that signal, so the join after terminate() hangs for
    ever. Only an error (or an abandoned generator) takes the terminate path here.
    """
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
