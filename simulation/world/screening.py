"""Server-side checks on client updates: a bad update is rejected and recorded,
never crashed on and never aggregated."""

from __future__ import annotations

import numpy as np

from simulation.fl.protocol import reason


def check_update(
    global_weights: dict[str, np.ndarray],
    update: dict[str, np.ndarray],
    max_norm: float,
) -> str | None:
    """Why ``update`` must be rejected (a ``simulation.fl.protocol`` reason), or
    ``None`` when it is well-formed.

    Checks, in order: the same tensor names, shapes and dtypes as the global
    model; only finite values; an L2 distance to the global model of at most
    ``max_norm`` (an absurd norm is a broken or hostile client).
    """
    if set(update) != set(global_weights):
        missing = sorted(set(global_weights) - set(update))
        extra = sorted(set(update) - set(global_weights))
        return reason("wrong_tensors", f"missing {missing}, unexpected {extra}")
    sq = 0.0
    for name, ref in global_weights.items():
        arr = update[name]
        if arr.shape != ref.shape:
            return reason("wrong_shape", f"{name}: {list(arr.shape)} != {list(ref.shape)}")
        if arr.dtype != ref.dtype:
            return reason("wrong_dtype", f"{name}: {arr.dtype} != {ref.dtype}")
        if not np.all(np.isfinite(arr)):
            return reason("non_finite", name)
        diff = arr.astype(np.float64) - ref.astype(np.float64)
        sq += float(np.dot(diff.ravel(), diff.ravel()))
    norm = sq**0.5
    if not np.isfinite(norm) or norm > max_norm:
        return reason("norm_exceeded", f"{norm:.4g} > {max_norm:.4g}")
    return None
