"""Checks and small helpers on model weights given as ``list[np.ndarray]``.

Flower ships a model as an ordered list of arrays (a torch ``state_dict`` flattened in key
order). Buffers such as BatchNorm's ``num_batches_tracked`` are integer arrays: attacks that
perturb parameters leave them alone, because negating or adding Gaussian noise to a counter is
not an attack anyone studies, it is a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Weights = list[np.ndarray]


def is_float(array: np.ndarray) -> bool:
    """Whether an array holds trainable (floating-point) values an attack may perturb."""
    return bool(np.issubdtype(array.dtype, np.floating))


def check_pair(global_weights: Sequence[np.ndarray], local_weights: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` unless both models have the same number of arrays and shapes."""
    if len(global_weights) != len(local_weights):
        raise ValueError(
            f"model mismatch: global has {len(global_weights)} arrays, "
            f"local has {len(local_weights)}"
        )
    for i, (g, w) in enumerate(zip(global_weights, local_weights, strict=True)):
        if g.shape != w.shape:
            raise ValueError(f"model mismatch at array {i}: global {g.shape}, local {w.shape}")


def copy_weights(weights: Sequence[np.ndarray]) -> Weights:
    """A deep copy, so a caller mutating the result never aliases server state."""
    return [np.array(a, copy=True) for a in weights]


def gaussian_like(array: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``N(0, std²)`` noise of ``array``'s shape, drawn in float64 and cast to its dtype."""
    return (rng.standard_normal(array.shape) * std).astype(array.dtype, copy=False)
