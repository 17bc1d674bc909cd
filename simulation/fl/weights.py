"""Model weights as named numpy arrays: flattening, hashing, serialising.

One implementation for the world (contribution scoring, the ledger's update
hashes, the registered artifact) and the strategies (robust aggregation on
flat update vectors).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["Weights", "arrays_sha256", "flatten", "safetensors_bytes", "unflatten"]

Weights = dict[str, np.ndarray]


def flatten(weights: Mapping[str, np.ndarray], keys: Iterable[str] | None = None) -> np.ndarray:
    """Concatenate the arrays named ``keys`` (default: all, in order) into one float64 vector."""
    order = list(weights) if keys is None else list(keys)
    parts = [np.asarray(weights[k], dtype=np.float64).ravel() for k in order]
    return np.concatenate(parts) if parts else np.zeros(0)


def unflatten(vec: np.ndarray, like: Mapping[str, np.ndarray]) -> Weights:
    """Split ``vec`` back into arrays shaped and typed like ``like`` (integer arrays,
    such as batch-norm counters, are rounded rather than truncated)."""
    out: Weights = {}
    pos = 0
    for k, ref in like.items():
        ref_arr = np.asarray(ref)
        n = int(ref_arr.size)
        part = vec[pos : pos + n].reshape(ref_arr.shape)
        pos += n
        if np.issubdtype(ref_arr.dtype, np.integer):
            part = np.rint(part)
        out[k] = part.astype(ref_arr.dtype, copy=False)
    return out


def arrays_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """A hash of named arrays that covers names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        h.update(f"{name}|{arr.dtype.str}|{list(arr.shape)}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def safetensors_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """The model as a safetensors file (the registered artifact)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in weights.items()})
