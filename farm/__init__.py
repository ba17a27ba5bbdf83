"""nasfarm's domain layer: the NAS-Bench-101 search space, network, data, training, API and search.

The bottom layer: nothing here imports SQL, Ray, the job table, the scheduler or the command line
(tests/test_layers.py fails on such an import).
"""

__version__ = "0.1.0"
