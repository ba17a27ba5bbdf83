"""Training fixtures: failpoints armed for one test (``farm.failpoints`` reads its variable once)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def armed_failpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``arm(spec)`` sets NASFARM_FAILPOINTS to ``spec`` for this process; disarmed afterwards."""
    from farm import failpoints

    def arm(spec: str) -> None:
        monkeypatch.setenv(failpoints.ENV, spec)
        failpoints.reload()

    yield arm
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.reload()
