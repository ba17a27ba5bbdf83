"""Ending a multiprocessing pool without signals when its work is done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool


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
