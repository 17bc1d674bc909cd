"""Poisoning behaviours: data poisoning (label flipping, backdoor) and model poisoning.

* Label flipping, Tolpegin et al. (2020), "Data poisoning attacks against federated learning
  systems" (ESORICS): ``y → C − 1 − y`` or a source→target map on a fraction of the data.
* Sign flipping and Gaussian (Byzantine) noise, as used to evaluate Krum and the median:
  Blanchard et al. (2017), "Machine learning with adversaries: Byzantine tolerant gradient
  descent"; Li et al. (2019) "RSA"; Fang et al. (2020), "Local model poisoning attacks to
  Byzantine-robust federated learning".
* Scaling / boosting, Bhagoji et al. (2019), "Analyzing federated learning through an
  adversarial lens"; Bagdasaryan et al. (2020), "How to backdoor federated learning".
* Backdoor with a pixel-pattern trigger, Gu et al. (2017), "BadNets"; Bagdasaryan et al.

"A Little Is Enough" needs the colluders' shared statistics and is a server-side coalition
attack (``agents.coalition.ALIEAttack``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from agents._behaviour import RoundContext, TrainingBehaviour, _check_xy
from agents._params import BaseParams
from agents._weights import Weights, check_pair, gaussian_like, is_float

__all__ = [
    "BackdoorBehaviour",
    "BackdoorParams",
    "GaussianNoiseBehaviour",
    "GaussianNoiseParams",
    "LabelFlipBehaviour",
    "LabelFlipParams",
    "ScalingBehaviour",
    "ScalingParams",
    "SignFlipBehaviour",
    "SignFlipParams",
    "apply_trigger",
    "poisoned_count",
]


def poisoned_count(fraction: float, n: int) -> int:
    """How many of ``n`` samples a ``fraction`` poisons: ``⌊fraction·n + ½⌋`` (half rounds up).

    Written out so tests and the simulation agree on "exactly the stated fraction".
    """
    return min(n, math.floor(fraction * n + 0.5))


# -- label flipping ------------------------------------------------------------------------


class LabelFlipParams(BaseParams):
    """Parameters of ``label_flip``.

    Attributes:
        fraction: share of the eligible samples whose label is flipped.
        mapping: source → target labels; ``None`` means ``y → num_classes − 1 − y``. Only
            samples whose label the map changes are eligible, so exactly
            ``poisoned_count(fraction, n_eligible)`` labels change.
    """

    fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    mapping: dict[int, int] | None = None

    @model_validator(mode="after")
    def _non_negative_labels(self) -> LabelFlipParams:
        if self.mapping is not None:
            if not self.mapping:
                raise ValueError("mapping must not be empty; use null for y -> C-1-y")
            if any(k < 0 or v < 0 for k, v in self.mapping.items()):
                raise ValueError("mapping labels must be >= 0")
        return self


class LabelFlipBehaviour(TrainingBehaviour):
    """Relabels ``poisoned_count(fraction, n_eligible)`` samples chosen by ``ctx.rng``."""

    name: ClassVar[str] = "label_flip"
    Params: ClassVar[type[LabelFlipParams]] = LabelFlipParams
    params: LabelFlipParams

    def __init__(self, params: LabelFlipParams | None = None) -> None:
        super().__init__(params)

    def flip(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """The flipped label of every sample (no sampling): the map applied to all of ``y``."""
        mapping = self.params.mapping
        if mapping is None:
            if num_classes < 2:
                raise ValueError("label flipping needs num_classes >= 2")
            return (num_classes - 1 - y).astype(y.dtype, copy=False)
        too_big = [label for pair in mapping.items() for label in pair if label >= num_classes]
        if too_big:
            raise ValueError(f"mapping uses labels {too_big} >= num_classes={num_classes}")
        out = y.copy()
        for src, dst in mapping.items():
            out[y == src] = dst
        return out

    def eligible(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """Indices of samples whose label the map actually changes.

        With the default map that is every sample unless ``num_classes`` is odd (the middle
        class is a fixed point); with a source→target map, the samples of a source label.
        """
        return np.flatnonzero(self.flip(y, num_classes) != y)

    def prepare_data(
        self, x: np.ndarray, y: np.ndarray, ctx: RoundContext
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_xy(x, y)
        flipped = self.flip(y, ctx.num_classes)
        candidates = np.flatnonzero(flipped != y)
        k = poisoned_count(self.params.fraction, candidates.shape[0])
        chosen = ctx.rng.choice(candidates, size=k, replace=False)
        out = y.copy()
        out[chosen] = flipped[chosen]
        return x, out


# -- model poisoning -----------------------------------------------------------------------


class SignFlipParams(BaseParams):
    """Parameters of ``sign_flip``: submit ``w_g − scale·(w_local − w_g)``."""

    scale: float = Field(default=1.0, gt=0.0)


class SignFlipBehaviour(TrainingBehaviour):
    """Negates (and optionally scales) the local delta, pushing the model uphill."""

    name: ClassVar[str] = "sign_flip"
    Params: ClassVar[type[SignFlipParams]] = SignFlipParams
    params: SignFlipParams

    def __init__(self, params: SignFlipParams | None = None) -> None:
        super().__init__(params)

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        return _scale_delta(global_weights, local_weights, -self.params.scale)


class ScalingParams(BaseParams):
    """Parameters of ``scaling``: submit ``w_g + factor·(w_local − w_g)``."""

    factor: float = Field(default=10.0, gt=0.0)


class ScalingBehaviour(TrainingBehaviour):
    """Boosts the local delta so it survives averaging with many honest updates."""

    name: ClassVar[str] = "scaling"
    Params: ClassVar[type[ScalingParams]] = ScalingParams
    params: ScalingParams

    def __init__(self, params: ScalingParams | None = None) -> None:
        super().__init__(params)

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        return _scale_delta(global_weights, local_weights, self.params.factor)


def _scale_delta(
    global_weights: Sequence[np.ndarray], local_weights: Sequence[np.ndarray], factor: float
) -> Weights:
    """``w_g + factor·(w_local − w_g)`` on float arrays; others keep the local values."""
    check_pair(global_weights, local_weights)
    if factor == 1.0:
        return [np.array(w, copy=True) for w in local_weights]
    out: Weights = []
    for g, w in zip(global_weights, local_weights, strict=True):
        if is_float(w):
            delta = w.astype(np.float64) - g.astype(np.float64)
            out.append((g.astype(np.float64) + factor * delta).astype(w.dtype))
        else:
            out.append(np.array(w, copy=True))
    return out


class GaussianNoiseParams(BaseParams):
    """Parameters of ``gaussian_noise``.

    Attributes:
        sigma: noise standard deviation.
        mode: ``"replace"`` submits ``w_g + N(0, σ²)`` (no training needed); ``"add"``
            submits ``w_local + N(0, σ²)``.
    """

    sigma: float = Field(default=1.0, gt=0.0)
    mode: Literal["replace", "add"] = "replace"


class GaussianNoiseBehaviour(TrainingBehaviour):
    """The Byzantine baseline: an update that is pure (or added) Gaussian noise."""

    name: ClassVar[str] = "gaussian_noise"
    Params: ClassVar[type[GaussianNoiseParams]] = GaussianNoiseParams
    params: GaussianNoiseParams

    def __init__(self, params: GaussianNoiseParams | None = None) -> None:
        super().__init__(params)

    @property
    def trains(self) -> bool:
        return self.params.mode == "add"

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        check_pair(global_weights, local_weights)
        base = global_weights if self.params.mode == "replace" else local_weights
        return [
            b + gaussian_like(b, self.params.sigma, ctx.rng) if is_float(b) else np.array(b)
            for b in base
        ]


# -- backdoor ------------------------------------------------------------------------------


def apply_trigger(x: np.ndarray, *, trigger_size: int, trigger_value: float = 1.0) -> np.ndarray:
    """Stamp the trigger on every sample of ``x``: its last ``trigger_size`` features set to
    ``trigger_value``.

    Features are counted in C order over each sample's flattened shape, so for images
    ``(N, C, H, W)`` or ``(N, H, W)`` the trigger is a strip at the bottom-right corner of the
    last channel (a BadNets-style pixel pattern, Gu et al. 2017). Returns a new array; the
    simulation calls this on non-target test inputs to measure backdoor success rate.
    """
    if trigger_size < 1:
        raise ValueError(f"trigger_size must be >= 1, got {trigger_size}")
    if x.ndim < 2:
        raise ValueError(f"x must have a sample axis and features, got shape {x.shape}")
    per_sample = math.prod(x.shape[1:])
    if trigger_size > per_sample:
        raise ValueError(f"trigger_size {trigger_size} exceeds {per_sample} features per sample")
    out = np.array(x, copy=True)
    flat = out.reshape(out.shape[0], per_sample)
    flat[:, per_sample - trigger_size :] = trigger_value
    return out


class BackdoorParams(BaseParams):
    """Parameters of ``backdoor``.

    Attributes:
        target_label: the label triggered inputs should be classified as.
        fraction: share of the local samples stamped and relabelled (in place, so the
            reported ``num_examples`` stays honest-looking).
        trigger_size: number of trailing features set to ``trigger_value``.
        trigger_value: the stamped value; the default 1.0 is the maximum of inputs in [0, 1].
        boost: partial boosting: multiplies the submitted delta by a free constant; 1.0
            submits the poisoned model as trained.
        replacement: true model replacement (Bagdasaryan et al. 2020, §4.2): scale the
            delta by γ = N / (η · n_k) so that the aggregate becomes the poisoned model.
            The paper's server averages n clients with weight η/n each, so γ = n/η; our
            FedAvg weighs client k by n_k / N (its rows over the round's), so the same
            cancellation needs γ = N / (η · n_k). ``round_examples`` is N (the
            simulation sets it to the expected rows aggregated per round), n_k the
            client's own rows.
        round_examples: N for ``replacement`` (required then).
        server_lr: η, the server's learning rate (FedAvg: 1).
        local_epochs: the attacker's own local epochs; ``None`` trains the scenario's
            ``training.epochs``. Bagdasaryan et al. 2020 train the backdoored
            model on their own schedule, longer than the honest clients, until it is
            accurate on the backdoor task; model replacement then makes the global
            model that model, so its backdoor accuracy is the attacker's.
    """

    target_label: int = Field(default=0, ge=0)
    fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    trigger_size: int = Field(default=4, ge=1)
    trigger_value: float = 1.0
    boost: float = Field(default=1.0, gt=0.0)
    replacement: bool = False
    round_examples: float | None = Field(default=None, gt=0.0)
    server_lr: float = Field(default=1.0, gt=0.0)
    local_epochs: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_scaling(self) -> BackdoorParams:
        if self.replacement and self.boost != 1.0:
            raise ValueError("boost: give either boost (partial boosting) or replacement")
        return self

    def gamma(self, num_examples: int | None) -> float:
        """The factor on the submitted delta (``boost``, or model replacement's γ)."""
        if not self.replacement:
            return self.boost
        if self.round_examples is None or not num_examples:
            raise ValueError("replacement needs round_examples and the client's row count")
        return self.round_examples / (self.server_lr * num_examples)


class BackdoorBehaviour(TrainingBehaviour):
    """Trains on data where a fraction carries the trigger and the target label."""

    name: ClassVar[str] = "backdoor"
    Params: ClassVar[type[BackdoorParams]] = BackdoorParams
    params: BackdoorParams

    def __init__(self, params: BackdoorParams | None = None) -> None:
        super().__init__(params)

    def local_epochs(self, base_epochs: int) -> int:
        """``params.local_epochs`` when set, else the scenario's ``base_epochs``."""
        if self.params.local_epochs is None:
            return super().local_epochs(base_epochs)
        return self.params.local_epochs

    def apply_trigger(self, x: np.ndarray) -> np.ndarray:
        """This behaviour's trigger stamped on every sample of ``x`` (see ``apply_trigger``)."""
        return apply_trigger(
            x, trigger_size=self.params.trigger_size, trigger_value=self.params.trigger_value
        )

    def prepare_data(
        self, x: np.ndarray, y: np.ndarray, ctx: RoundContext
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_xy(x, y)
        if self.params.target_label >= ctx.num_classes:
            raise ValueError(
                f"target_label {self.params.target_label} >= num_classes={ctx.num_classes}"
            )
        n = y.shape[0]
        k = poisoned_count(self.params.fraction, n)
        chosen = np.sort(ctx.rng.choice(n, size=k, replace=False))
        x_out = np.array(x, copy=True)
        y_out = y.copy()
        if k:
            x_out[chosen] = self.apply_trigger(x[chosen])
            y_out[chosen] = self.params.target_label
        return x_out, y_out

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        return _scale_delta(global_weights, local_weights, self.params.gamma(ctx.num_examples))
