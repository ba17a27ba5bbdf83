"""Whose fault: job or node; errors stored so that they group; the breaker; node health."""

from __future__ import annotations

import errno

import pytest

from scheduler.breaker import CircuitBreaker
from scheduler.health import HealthBook
from workers.faults import FaultKind, classify, describe_error, error_signature, node_key_of


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 -- we want the traceback attached
        return caught


@pytest.mark.parametrize("exc, kind", [
    (OSError(errno.ENOSPC, "No space left on device"), FaultKind.ENVIRONMENT),
    (PermissionError(errno.EACCES, "Permission denied"), FaultKind.ENVIRONMENT),
    (OSError(errno.EROFS, "Read-only file system"), FaultKind.ENVIRONMENT),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), FaultKind.ENVIRONMENT),
    (ModuleNotFoundError("No module named 'torchvision'"), FaultKind.ENVIRONMENT),
    (MemoryError(), FaultKind.ENVIRONMENT),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), FaultKind.ENVIRONMENT),
    (RuntimeError("Found no NVIDIA driver on your system"), FaultKind.ENVIRONMENT),
    (ValueError("something no rule knows"), FaultKind.UNKNOWN),
    (KeyError("x"), FaultKind.UNKNOWN),
])
def test_classify_builtin_errors(exc, kind):
    assert classify(exc) is kind


def test_classify_training_and_data_errors():
    from farm.data import DataError
    from farm.spec import Cell, InvalidCellError
    from farm.train_errors import BadInputError, NonFiniteLossError, OutOfMemoryError, TrainingError

    assert classify(NonFiniteLossError("non-finite training loss before step 7")) is FaultKind.JOB
    assert classify(OutOfMemoryError("out of memory on cuda:0: tried to allocate")) is FaultKind.JOB
    assert classify(OutOfMemoryError("out of memory on cpu: can't allocate memory")) is FaultKind.ENVIRONMENT
    assert classify(BadInputError("profile 'nb101' needs 40000 train images")) is FaultKind.JOB
    assert classify(BadInputError("device 'cuda' requested but CUDA is not available here")) \
        is FaultKind.ENVIRONMENT
    assert classify(TrainingError("training failed")) is FaultKind.JOB
    assert classify(DataError("CIFAR-10 not found in /data")) is FaultKind.ENVIRONMENT
    with pytest.raises(InvalidCellError) as bad:
        Cell.from_any([[0, 0], [0, 0]], ["input", "output"])
    assert classify(bad.value) is FaultKind.JOB


def test_a_wrapped_os_error_is_still_the_nodes_fault():
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError as inner:
            raise RuntimeError("could not write the checkpoint") from inner
    except RuntimeError as outer:
        assert classify(outer) is FaultKind.ENVIRONMENT


def test_stored_error_keeps_the_innermost_frames_and_the_exception_line():
    def recurse(n):
        if n == 0:
            raise ValueError("deep " + "x" * 50)
        recurse(n - 1)

    try:
        recurse(200)
    except ValueError as exc:
        text = describe_error(exc)
    assert text.startswith("ValueError: deep xxx")
    assert "outer frame(s) left out" in text
    assert text.rstrip().endswith("raise ValueError(\"deep \" + \"x\" * 50)")  # where it was raised
    assert len(text) <= 4000
    huge = describe_error(_raised(RuntimeError("m" * 10_000)))
    assert len(huge) <= 4000 and huge.startswith("RuntimeError: mmm") and "\n...\n" in huge


def test_signature_normalises_numbers_hashes_and_paths():
    a = error_signature(RuntimeError("non-finite training loss before step 123 (epoch 4.50) at "
                                     "/ckpt/a/043721b9c7fe8c5fad811d47d83132ec.ckpt"))
    b = error_signature(RuntimeError("non-finite training loss before step 9 (epoch 0.25) at "
                                     "/other/0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d.ckpt"))
    assert a == b == "RuntimeError: non-finite training loss before step <n> (epoch <n>) at <path>"
    assert error_signature("KeyError: 'x'\nTraceback ...") == "KeyError: 'x'"
    assert error_signature(ValueError("a")) != error_signature(TypeError("a"))
    assert len(error_signature("E: " + "word " * 200)) <= 200


def test_node_key_of_a_worker_label():
    assert node_key_of("host-1/0123456789ab/pid42/gpu0,1") == "host-1/0123456789ab"
    assert node_key_of("host-1/0123456789ab/pid7") == node_key_of("host-1/0123456789ab/pid42")


def test_breaker_trips_on_one_signature_dominating_the_window():
    breaker = CircuitBreaker(window=20, threshold=0.8)
    tripped = [breaker.record("BadInputError: profile needs <n> images") for _ in range(16)]
    assert tripped[:15] == [None] * 15 and tripped[15] is not None
    assert tripped[15].failures == 16 and "16 of the last 20" in tripped[15].describe()


def test_breaker_ignores_mixed_failures_and_successes():
    breaker = CircuitBreaker(window=20, threshold=0.8)
    for i in range(200):  # a healthy campaign with poison cells: 1 in 4 fails, with varied errors
        assert breaker.record(f"E{i % 3}" if i % 4 == 0 else None) is None
    for i in range(200):  # half fail the same way: bad, but not "most"
        assert breaker.record("E" if i % 2 else None) is None


def test_breaker_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        CircuitBreaker(window=0)
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=1.5)


def test_health_drains_a_node_after_max_faults_in_the_window():
    now = [0.0]
    book = HealthBook(max_faults=3, window_s=60.0, clock=lambda: now[0])
    assert not book.environment_fault("n1", "host-1", "DataError")
    now[0] = 100.0  # the first fault fell out of the window
    assert not book.environment_fault("n1", "host-1", "DataError")
    assert not book.environment_fault("n1", "host-1", "DataError")
    assert book.node("n1").state == "unhealthy" and not book.is_drained("n1")
    assert book.environment_fault("n1", "host-1", "DataError")  # third within 60 s
    assert book.is_drained("n1") and [h.node_id for h in book.drained()] == ["n1"]
    assert not book.is_drained("n2") and book.node("n2").state == "healthy"


def test_a_job_that_failed_with_an_unknown_error_waits_for_another_node():
    from scheduler.placement import IdleWorker, assign, no_share

    idle = [IdleWorker("w-on-a", ("worker", 1), "node-a"), IdleWorker("w-on-b", ("worker", 2), "node-b")]
    units = [["failed-on-a"], ["fresh"]]
    avoid = {"failed-on-a": {"node-a"}}
    plan = assign(units, no_share, idle, {}, avoid=lambda unit: avoid.get(unit[0], set()))
    assert dict(plan) == {0: "w-on-b", 1: "w-on-a"}
    only_a = assign(units, no_share, idle[:1], {}, avoid=lambda unit: avoid.get(unit[0], set()))
    assert only_a == [(1, "w-on-a")]  # it waits (reserving nothing); the next job takes node a
