"""nasfarm's domain layer: the NAS-Bench-101 search space, network, data, training, API and search.

Nothing in this package imports SQL or Ray, except :mod:`farm.cli`, the command line.
"""

__version__ = "0.1.0"
