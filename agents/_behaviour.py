"""The ``TrainingBehaviour`` ABC and the ``RoundContext`` it is handed.

A training behaviour is what a client does to its data and its update in one round. The
server chooses a behaviour per client per round (ground truth the mechanisms never see) and
sends its name and parameters in a Flower ConfigRecord; the ClientApp rebuilds it with
``behaviour_from_config`` and runs the template below. Behaviours are pure numpy: they never
see torch, Flower or the ledger (docs/ARCHITECTURE.md, "Contract: training behaviours").

The ClientApp's template, in order:

1. ``if behaviour.drops_out(ctx)``: reply with no update this round;
2. ``x, y = behaviour.prepare_data(x, y, ctx)``;
3. ``if behaviour.trains``: train for ``behaviour.local_epochs(base_epochs)`` epochs from the
   global weights (``behaviour.heterogeneity.compute_speed`` scales simulated time only),
   else the local weights are the global ones;
4. ``reply = behaviour.transform_update(global_weights, local_weights, ctx)``.
"""

from __future__ import annotations

import logging
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agents._params import BaseParams
from agents._weights import Weights, check_pair, copy_weights

__all__ = ["Heterogeneity", "RoundContext", "TrainingBehaviour"]

logger = logging.getLogger("fedmarket.agents")


@dataclass(frozen=True, slots=True)
class RoundContext:
    """What a behaviour knows about the round it acts in.

    Attributes:
        round: the Flower server round, counted from 1.
        client: the client's account id (``client-003``), never a Flower node id.
        num_classes: number of labels of the task, for label-space attacks.
        rng: the only source of randomness a behaviour may use; the simulation derives it
            from its seed tree (e.g. ``tree.numpy("client-003", round=4)``) so runs replay.
        num_examples: the client's own training rows this round (what FedAvg weighs its
            update by), when known.
    """

    round: int
    client: str
    num_classes: int
    rng: np.random.Generator
    num_examples: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 1:
            raise ValueError(f"RoundContext.round must be an int >= 1, got {self.round!r}")
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 1
        ):
            raise ValueError(
                f"RoundContext.num_classes must be an int >= 1, got {self.num_classes!r}"
            )
        if not isinstance(self.rng, np.random.Generator):
            raise ValueError(
                f"RoundContext.rng must be a numpy Generator, got {type(self.rng).__name__}"
            )


@dataclass(frozen=True, slots=True)
class Heterogeneity:
    """System heterogeneity knobs a behaviour exposes and the simulation reads.

    Statistical heterogeneity (label skew) belongs to the partitioner, not here.

    Attributes:
        data_fraction: fraction of the local data used each round (applied by ``prepare_data``).
        local_epoch_multiplier: multiplies the scenario's local epochs (stragglers do fewer).
        compute_speed: relative speed; simulated training time is ``base / compute_speed``.
        dropout_prob: probability of not replying in a round (Li et al. 2020, FedProx's
            "stragglers"; Bonawitz et al. 2019, "Towards federated learning at scale").
    """

    data_fraction: float = 1.0
    local_epoch_multiplier: float = 1.0
    compute_speed: float = 1.0
    dropout_prob: float = 0.0


class TrainingBehaviour(ABC):
    """What one client does with its data and its update in one round.

    Subclasses set ``name`` (the registry key) and ``Params`` (a pydantic model with
    ``extra="forbid"``) and override the hooks they change; the defaults are those of an
    honest client, so an attack is exactly the hooks it overrides.
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseParams]]

    def __init__(self, params: BaseParams | None = None) -> None:
        if not hasattr(type(self), "Params"):
            raise TypeError(f"{type(self).__name__} must set the class attribute Params")
        if params is None:
            params = self.Params()
        if not isinstance(params, self.Params):
            raise ValueError(
                f"{type(self).__name__} expects {self.Params.__name__}, got {type(params).__name__}"
            )
        self.params: BaseParams = params

    # -- hooks ---------------------------------------------------------------------------

    def prepare_data(
        self, x: np.ndarray, y: np.ndarray, ctx: RoundContext
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the data to train on; the inputs are never mutated. Default: unchanged."""
        _check_xy(x, y)
        return x, y

    def train_rows(self, num_examples: int) -> int:
        """How many rows :meth:`prepare_data` keeps of ``num_examples`` (what the server's
        privacy accountant predicts a round's sample rate from). Default: all of them."""
        return num_examples

    @property
    def trains(self) -> bool:
        """Whether the client runs local training at all (``False`` for free-riders)."""
        return True

    def transform_update(
        self,
        global_weights: Sequence[np.ndarray],
        local_weights: Sequence[np.ndarray],
        ctx: RoundContext,
    ) -> Weights:
        """Return the weights to submit. Default: the locally trained weights (a copy)."""
        check_pair(global_weights, local_weights)
        return copy_weights(local_weights)

    # -- heterogeneity -------------------------------------------------------------------

    @property
    def heterogeneity(self) -> Heterogeneity:
        """System heterogeneity knobs; neutral unless the behaviour says otherwise."""
        return Heterogeneity()

    def local_epochs(self, base_epochs: int) -> int:
        """The local epochs to run: ``max(1, round(base × multiplier))``."""
        if base_epochs < 1:
            raise ValueError(f"base_epochs must be >= 1, got {base_epochs}")
        return max(1, round(base_epochs * self.heterogeneity.local_epoch_multiplier))

    def drops_out(self, ctx: RoundContext) -> bool:
        """Whether the client misses this round; draws from ``ctx.rng`` only if it can drop."""
        p = self.heterogeneity.dropout_prob
        if p <= 0.0:
            return False
        dropped = bool(ctx.rng.random() < p)
        if dropped:
            logger.debug("client %s drops out of round %d", ctx.client, ctx.round)
        return dropped

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


def _check_xy(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of integer labels, got shape {y.shape}")
