"""The worker's parts without Ray: the lease keeper thread against a real PostgreSQL queue, and
how training errors are classified for retry."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fixtures_farm import Farm


@pytest.fixture
def queue_and_job(farm_db_url, tmp_path):
    from db.queue import JobQueue

    harness = Farm(db_url=farm_db_url, storage=tmp_path, data_dir=tmp_path, ray_address="")
    harness.create_campaign("lease", 1)
    queue = JobQueue(harness.engine, backoff_base=0)
    (job,) = queue.claim(1, "test-owner", lease_ttl_s=1.0)
    assert queue.start_attempt(job.job_id, job.lease_token, node="here", resumed_from_epoch=0.0)
    yield harness, queue, job
    harness.close()


def test_heartbeats_keep_the_lease_and_stopping_them_lets_it_expire(queue_and_job):
    from workers.heartbeat import LeaseKeeper

    harness, queue, job = queue_and_job
    keeper = LeaseKeeper(queue, job.job_id, job.lease_token, interval_s=0.2, lease_ttl_s=1.0,
                         on_lost=lambda: None).start()
    time.sleep(1.5)
    assert queue.reap() == 0  # a TTL of 1 s, beaten every 0.2 s: still ours
    assert keeper.close() is True
    assert keeper.beats >= 4
    time.sleep(1.3)
    assert queue.reap() == 1  # silent for longer than the TTL: reaped
    assert harness.jobs()[0]["status"] == "pending"


def test_events_are_streamed_in_order_with_progress(queue_and_job):
    from workers.heartbeat import LeaseKeeper

    harness, queue, job = queue_and_job
    keeper = LeaseKeeper(queue, job.job_id, job.lease_token, interval_s=0.1, on_lost=lambda: None).start()
    for epoch in (1, 2, 3):
        keeper.post({"kind": "epoch", "epoch": float(epoch), "step": 16 * epoch, "loss": 2.0 / epoch,
                     "training_time": 0.5 * epoch})
    time.sleep(0.3)
    assert keeper.close() is True
    rows = harness.query("SELECT epoch, step FROM job_metrics WHERE job_id = :j ORDER BY id", j=job.job_id)
    assert [(r["epoch"], r["step"]) for r in rows] == [(1.0, 16), (2.0, 32), (3.0, 48)]
    assert harness.jobs()[0]["progress_step"] == 48


def test_a_lost_lease_stops_the_work_and_writes_nothing_more(queue_and_job):
    from workers.heartbeat import LeaseKeeper

    harness, queue, job = queue_and_job
    stopped = threading.Event()
    keeper = LeaseKeeper(queue, job.job_id, job.lease_token, interval_s=0.1, on_lost=stopped.set).start()
    assert queue.cancel(job_ids=[job.job_id]) == 1  # someone takes the job away
    assert stopped.wait(5), "the keeper did not notice the lost lease"
    keeper.post({"kind": "epoch", "epoch": 1.0, "step": 16, "loss": 1.0, "training_time": 1.0})
    assert keeper.close() is False
    assert harness.query("SELECT * FROM job_metrics") == []
    assert queue.complete(job.job_id, job.lease_token, {"metrics": {}}) is False


def test_error_classification():
    from farm.spec import Cell, InvalidCellError
    from farm.train_errors import (
        BadInputError,
        CheckpointError,
        NonFiniteLossError,
        OutOfMemoryError,
        TrainingError,
    )
    from workers.faults import describe_error, is_retryable

    assert is_retryable(NonFiniteLossError("nan")) and is_retryable(OutOfMemoryError("oom"))
    assert not is_retryable(BadInputError("bad")) and not is_retryable(CheckpointError("corrupt"))
    # A bare TrainingError names no cause (the poison hook raises one): retried within max_attempts.
    assert is_retryable(TrainingError("poison cell"))
    # A bug or a bad cell fails at once, traceback included.
    assert not is_retryable(AttributeError("x"))
    with pytest.raises(InvalidCellError) as bad_cell:
        Cell.from_any([[0, 0], [0, 0]], ["input", "output"])
    assert not is_retryable(bad_cell.value)
    text = describe_error(bad_cell.value)
    assert text.startswith("InvalidCellError: no path from input to output")
    assert "from_any" in text  # the innermost frames: where the error is
