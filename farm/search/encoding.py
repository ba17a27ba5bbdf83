"""The search encodings of a cell, and the two validity rules in use.

A candidate is a raw 7x7 strictly upper-triangular matrix (21 edge bits) and 5 interior ops.

- The official notebook's random search and regularized evolution (``random_spec``,
  ``mutate_spec``) redraw until ``nasbench.is_valid``: the *pruned* graph is in the space (<= 9
  edges), so 74% of uniformly random encodings are accepted.
- The benchmark authors' experiment scripts (NASCifar10A in automl/nas_benchmarks), which the
  vector-searching methods here follow (the script variant of evolution, REINFORCE, BOHB, SMAC),
  treat a *raw* matrix with more than 9 edges, or a graph whose input and output are
  disconnected, as invalid: error 1, no training time charged, nothing queried (28% of random
  encodings are valid). :func:`objective` is that rule.

Vectors: 21 bits (upper triangle, row-major) followed by 5 op indices into AVAILABLE_OPS.
"""

from __future__ import annotations

import random

import numpy as np

from farm.api import ModelSpec
from farm.search.settings import INVALID_ERROR, MAX_RAW_EDGES
from farm.spec import AVAILABLE_OPS, INPUT, OUTPUT

NUM_VERTICES = 7
OP_SPOTS = NUM_VERTICES - 2
EDGE_SPOTS = NUM_VERTICES * (NUM_VERTICES - 1) // 2
NUM_OPS = len(AVAILABLE_OPS)
DIMENSIONS = EDGE_SPOTS + OP_SPOTS
# Number of choices of each dimension: 2 per edge bit, 3 per op.
CARDINALITIES = np.array([2] * EDGE_SPOTS + [NUM_OPS] * OP_SPOTS)
_ROWS, _COLS = np.triu_indices(NUM_VERTICES, 1)


def spec_from_vector(vector: np.ndarray | list[int]) -> ModelSpec:
    values = np.asarray(vector, dtype=np.int64)
    matrix = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
    matrix[_ROWS, _COLS] = values[:EDGE_SPOTS]
    ops = [INPUT] + [AVAILABLE_OPS[int(x)] for x in values[EDGE_SPOTS:]] + [OUTPUT]
    return ModelSpec(matrix, ops)


def random_vector(rng: np.random.Generator) -> np.ndarray:
    """Every decision uniform, as ConfigSpace's sample_configuration over NASCifar10A's space."""
    return rng.integers(0, CARDINALITIES)


def reference_valid(vector: np.ndarray, is_valid) -> bool:
    """NASCifar10A.objective_function's rule: at most 9 edges in the raw matrix, and a graph the
    API accepts (input connected to output; the pruned graph can only have fewer edges)."""
    if int(np.sum(vector[:EDGE_SPOTS])) > MAX_RAW_EDGES.value:
        return False
    return bool(is_valid(spec_from_vector(vector)))


def objective(env, vector: np.ndarray, epochs: int | None = None) -> float:
    """Validation error of an encoding as the experiment scripts' benchmark returns it: an invalid
    one scores error 1 without a query, so it costs no training time; a valid one is queried
    (one sampled repeat, its training time charged)."""
    if not reference_valid(vector, env.is_valid):
        return INVALID_ERROR.value
    space = getattr(env, "space", None)
    if space is not None and not space.accepts_vector(vector):
        # A valid cell the (partial) table lacks: never queried; treated as the scripts treat an
        # invalid one, which makes REINFORCE's "sample until the reward exceeds 0.001" redraw it.
        return INVALID_ERROR.value
    return 1.0 - env.query(spec_from_vector(vector), epochs=epochs)["validation_accuracy"]


def mutate_one_parameter(vector: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """run_regularized_evolution.py's mutate_arch: one of the 26 parameters, chosen uniformly,
    changed to one of its other values, chosen uniformly (no redraw on invalid children)."""
    child = vector.copy()
    dim = int(rng.integers(DIMENSIONS))
    others = [value for value in range(int(CARDINALITIES[dim])) if value != vector[dim]]
    child[dim] = others[int(rng.integers(len(others)))]
    return child


def random_spec(rng: random.Random, is_valid) -> ModelSpec:
    """The notebook's random_spec: fair coin per edge, uniform ops, redraw until valid."""
    while True:
        matrix = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
        bits = rng.getrandbits(EDGE_SPOTS)
        matrix[_ROWS, _COLS] = [(bits >> k) & 1 for k in range(EDGE_SPOTS)]
        ops = [INPUT] + [rng.choice(AVAILABLE_OPS) for _ in range(OP_SPOTS)] + [OUTPUT]
        spec = ModelSpec(matrix, ops)
        if is_valid(spec):
            return spec


def mutate_spec(spec: ModelSpec, rng: random.Random, is_valid, mutation_rate: float = 1.0) -> ModelSpec:
    """The notebook's mutation over the *original* matrix: flip each edge with probability
    rate/7, change each interior op with probability rate/5 (to one of the other two ops);
    redraw until the child is valid."""
    while True:
        matrix = np.array(spec.original_matrix, dtype=np.int64)
        ops = list(spec.original_ops)
        edge_probability = mutation_rate / NUM_VERTICES
        for src in range(NUM_VERTICES - 1):
            for dst in range(src + 1, NUM_VERTICES):
                if rng.random() < edge_probability:
                    matrix[src, dst] = 1 - matrix[src, dst]
        op_probability = mutation_rate / OP_SPOTS
        for index in range(1, NUM_VERTICES - 1):
            if rng.random() < op_probability:
                ops[index] = rng.choice([op for op in AVAILABLE_OPS if op != ops[index]])
        child = ModelSpec(matrix, ops)
        if is_valid(child):
            return child


def neighbours(vector: np.ndarray) -> np.ndarray:
    """All one-exchange neighbours: one edge flipped, or one op changed (21 + 10 vectors)."""
    out = []
    for d in range(DIMENSIONS):
        for value in range(int(CARDINALITIES[d])):
            if value != vector[d]:
                child = vector.copy()
                child[d] = value
                out.append(child)
    return np.array(out)


def one_hot(vectors: np.ndarray) -> np.ndarray:
    """Edge bits as they are, ops one-hot: 21 + 15 binary features for tree models."""
    vectors = np.atleast_2d(vectors)
    ops = vectors[:, EDGE_SPOTS:]
    hot = (ops[:, :, None] == np.arange(NUM_OPS)[None, None, :]).reshape(len(vectors), -1)
    return np.concatenate([vectors[:, :EDGE_SPOTS], hot], axis=1).astype(np.float32)
