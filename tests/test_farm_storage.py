"""Checkpoint locations: one per job (not per attempt), on a local path or any fsspec URI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import fsspec

from workers.storage import (
    checkpoint_exists,
    checkpoint_location,
    prepare_location,
    remove_checkpoint,
    resolve_storage,
)


@dataclass(frozen=True)
class Job:
    campaign: str
    cell_hash: str
    epochs: int
    repeat: int
    attempt: int = 1
    lease_token: str = "t1"


JOB = Job("nb101-full", "28cfc7874f6d200472e1a9dcd8650aa0", 108, 2)


def test_location_is_keyed_by_the_job_not_the_attempt():
    root = "/shared/ckpt"
    again = replace(JOB, attempt=3, lease_token="t9")
    assert checkpoint_location(root, JOB) == checkpoint_location(root, again)
    for other in (replace(JOB, repeat=0), replace(JOB, epochs=36), replace(JOB, campaign="other"),
                  replace(JOB, cell_hash="043721b9c7fe8c5fad811d47d83132ec")):
        assert checkpoint_location(root, other) != checkpoint_location(root, JOB)


def test_campaign_names_stay_one_path_component():
    location = checkpoint_location("/r", replace(JOB, campaign="../../etc x"))
    assert location.startswith("/r/")
    assert location.count("/") == 3  # /r/<campaign>/<file>
    assert ".." not in location.split("/")


def test_relative_roots_become_absolute_and_uris_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage("ckpts") == str(tmp_path / "ckpts")
    assert resolve_storage("s3://bucket/prefix/") == "s3://bucket/prefix"


def test_local_round_trip(tmp_path):
    location = checkpoint_location(resolve_storage(str(tmp_path / "deep" / "root")), JOB)
    prepare_location(location)
    assert not checkpoint_exists(location)
    with open(location, "wb") as handle:
        handle.write(b"state")
    assert checkpoint_exists(location)
    assert remove_checkpoint(location) is True
    assert not checkpoint_exists(location)
    assert remove_checkpoint(location) is False


def test_fsspec_uri_round_trip():
    root = f"memory://nasfarm-test-{uuid.uuid4().hex}"
    location = checkpoint_location(root, JOB)
    prepare_location(location)
    with fsspec.open(location, "wb") as handle:
        handle.write(b"state")
    assert checkpoint_exists(location)
    assert remove_checkpoint(location) is True
    assert not checkpoint_exists(location)
