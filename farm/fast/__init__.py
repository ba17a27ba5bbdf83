"""The fast training path: the faithful trainer's math, arranged for a GPU.

- :mod:`farm.fast.fused`   R repeats of one cell as ONE network (grouped convs, per-repeat BN and head)
- :mod:`farm.fast.graph`   the whole training step on static buffers, replayed as a CUDA graph
- :mod:`farm.fast.trainer` ``train_fast`` (farm.train.train's contract) and ``train_repeats_fused``
- :mod:`farm.fast.packing` how many jobs share one GPU, from a cell's FLOPs

Imports only torch/numpy/stdlib and farm's domain modules (no click, tqdm, Ray or SQL), so the GPU
bench runs from a bare checkout.
"""
