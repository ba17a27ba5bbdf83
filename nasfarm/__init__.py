"""nasfarm: the application layer.

The ``nasfarm`` command (:mod:`nasfarm.cli`) and what composes the layers below it (a campaign
built from the enumerated space and its costs, :mod:`nasfarm.campaigns`). Layers, top to bottom:
``nasfarm`` -> ``scheduler`` -> ``workers`` -> ``db`` -> ``farm``; none imports a layer above it
(tests/test_layers.py checks every import).
"""
