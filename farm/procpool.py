"""Multiprocessing pools that start and end cleanly under any caller."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool


@contextmanager
def without_the_callers_main() -> Iterator[None]:
    """Start spawn/forkserver workers inside this: they will not import the caller's ``__main__``.

    Such a child (and the forkserver itself) re-imports its parent's ``__main__`` -- from
    ``__main__.__file__``, or by name after ``python -m`` -- so that functions defined there can be
    unpickled. That runs the caller's top-level code again in every worker: a script without an
    ``if __name__ == "__main__":`` guard enumerates (or trains...) once more per worker, and code
    piped to ``python3 -`` (``__file__ == '<stdin>'``) makes every child die at start while the
    pool replaces it for ever, a hang. Our pools run only functions of importable modules, so
    hiding ``__main__``'s origin while the workers start loses nothing.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    spec = getattr(main, "__spec__", None)
    has_file = hasattr(main, "__file__")
    path = getattr(main, "__file__", None)
    main.__spec__ = None  # multiprocessing reads it unconditionally: None, not absent
    if has_file:
        del main.__file__
    try:
        yield
    finally:
        main.__spec__ = spec
        if has_file:
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
