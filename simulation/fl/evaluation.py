"""Validation results of a model version, as the registry records them.

Every number is a deterministic function of the weights and the data, so the
ledger that records them is byte-reproducible. Inference latency is therefore
*modelled* (forward FLOPs over a reference server speed), not timed.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_fscore_support
from torch import nn

from simulation.fl.models import parameter_count, state_aliases
from simulation.fl.training import evaluate, predict

REFERENCE_SERVER_GFLOPS = 10.0


def validation_results(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, ...],
    num_classes: int,
    flops_per_example: float,
) -> dict[str, float]:
    """Accuracy, loss, macro precision/recall/F1, bias score (the largest gap in
    per-class recall), modelled latency, parameter count and size in bytes."""
    loss, acc = evaluate(model, x, y, input_shape)
    pred = predict(model, x, input_shape).argmax(axis=1)
    labels = list(range(num_classes))
    p, r, f, _ = precision_recall_fscore_support(
        y, pred, labels=labels, average="macro", zero_division=0
    )
    _, per_class_recall, _, support = precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0
    )
    present = np.asarray(support) > 0
    recalls = np.asarray(per_class_recall)[present]
    bias = float(recalls.max() - recalls.min()) if recalls.size else 0.0
    params = parameter_count(model)
    aliases = state_aliases(model)
    tensors = [t for k, t in model.state_dict().items() if k not in aliases]
    return {
        "accuracy": float(acc),
        "loss": float(loss),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "bias": bias,
        "latency_ms": float(flops_per_example / (REFERENCE_SERVER_GFLOPS * 1e9) * 1e3),
        "parameters": float(params),
        "size_bytes": float(sum(t.numel() * t.element_size() for t in tensors)),
    }
