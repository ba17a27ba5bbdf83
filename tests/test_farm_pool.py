"""Pool sizing: how many one-job workers a cluster's nodes hold, for each worker shape."""

from __future__ import annotations

import pytest

from scheduler.pool import PoolConfigError, WorkerShape, choose_shape, node_slots, pool_target

DGX = {"CPU": 64.0, "GPU": 8.0}
LAPTOP = {"CPU": 2.0}


def test_cpu_cluster_gets_cpu_slots_even_when_jobs_ask_for_gpus():
    shape = choose_shape(cluster_gpus=0, gpus_per_job=1, cpus_per_job=None)
    assert shape == WorkerShape(gpus=0.0, cpus=1.0)
    assert pool_target([LAPTOP], shape) == 2


def test_cpus_per_job_divides_cpu_slots():
    shape = choose_shape(0, 1, cpus_per_job=2)
    assert node_slots({"CPU": 7.0}, shape) == 3


def test_one_worker_per_gpu_and_fractions_pack_jobs_on_a_card():
    assert pool_target([DGX], choose_shape(8, 1, None)) == 8
    assert pool_target([DGX], choose_shape(8, 0.5, None)) == 16
    # Thirds do not lose a slot to floating-point rounding (3 x 1/3 GPU per card).
    assert node_slots({"CPU": 8.0, "GPU": 1.0}, choose_shape(1, 1 / 3, None)) == 3


def test_cpus_bound_gpu_slots_too():
    # 0.25 GPU per job would give 32 slots on 8 GPUs, but 4 CPUs per job allow only 16.
    assert node_slots(DGX, choose_shape(8, 0.25, cpus_per_job=4)) == 16


def test_gpus_per_job_zero_trains_on_cpus_of_a_gpu_cluster():
    shape = choose_shape(cluster_gpus=8, gpus_per_job=0, cpus_per_job=8)
    assert not shape.uses_gpu
    assert pool_target([DGX], shape) == 8


def test_slots_are_per_node_fragments_do_not_add_up():
    # Two nodes with half a GPU each cannot host one job that needs a whole GPU.
    halves = [{"CPU": 4.0, "GPU": 0.5}, {"CPU": 4.0, "GPU": 0.5}]
    assert pool_target(halves, choose_shape(1, 1, None)) == 0
    # CPU-only nodes of a GPU cluster host no GPU workers.
    assert pool_target([DGX, LAPTOP], choose_shape(8, 1, None)) == 8


def test_max_workers_caps_the_pool_and_nodes_leaving_shrink_it():
    shape = choose_shape(16, 1, None)
    assert pool_target([DGX, DGX], shape) == 16
    assert pool_target([DGX, DGX], shape, max_workers=5) == 5
    assert pool_target([DGX], shape) == 8


@pytest.mark.parametrize("gpus,cpus", [(1.5, None), (-1, None), (1, 0), (1, -2)])
def test_shapes_ray_cannot_schedule_are_refused(gpus, cpus):
    with pytest.raises(PoolConfigError):
        choose_shape(8, gpus, cpus)


def test_whole_multiples_of_gpus_are_allowed():
    assert node_slots(DGX, choose_shape(8, 2, None)) == 4
