"""Building each sampled client's ``ClientTask`` for a round."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from marketplace import Market
from simulation.config.schema import Scenario
from simulation.fl.aggregation import proximal_mu
from simulation.fl.federated import FederatedData
from simulation.fl.node_signing import PrivacyClaim, SignRequest
from simulation.fl.training import ClientTask, DataSpec, DPSpec
from simulation.rng import SeedTree
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import Federation
from simulation.world.population import Population

__all__ = ["NodeSigning", "TaskBuilder", "client_size", "trained_rows"]


def client_size(population: Population, data: FederatedData, client: int) -> int:
    """How many rows ``client`` trains on (a Sybil identity's share of its owner's)."""
    indices = population.data_indices(client, data.partitions)
    return len(indices) if indices is not None else len(data.partitions[client])


def trained_rows(
    population: Population,
    data: FederatedData,
    client: int,
    round_: int | None = None,
    now: float = 0.0,
) -> int:
    """How many rows ``client``'s task trains on in ``round_`` (its behaviour's
    ``data_fraction`` applied; ``None``: under its group's own behaviour)."""
    return population.train_rows(client, client_size(population, data, client), round_, now)


@dataclass
class NodeSigning:
    """The :class:`SignRequest` of each task when nodes sign their own contributions
    (``--engine deployment``): what the ledger will record as the account's nonce,
    time and, in a DP run, ε, known before the node trains because nothing moves
    the clock or the account's nonce between dispatch and recording."""

    market: Market
    privacy: ClientPrivacy | None

    def request(
        self, client: int, account: str, epochs: int, round_: int, now: float
    ) -> SignRequest:
        claims: tuple[PrivacyClaim, ...] = ()
        if self.privacy is not None:
            p = self.privacy
            planned = p.planned_step(client, epochs, round_, now)
            claims = (
                PrivacyClaim(
                    epsilon=p.would_spend(account, planned),
                    privacy=p.mechanism(client, planned[1], planned[2]),
                ),
                PrivacyClaim(epsilon=p.spent(account), privacy=p.mechanism(client, 0.0, 0)),
            )
        return SignRequest(
            ledger=self.market.ledger_id,
            key_id=self.market.key_id,
            nonce=self.market.state.next_nonce(account),
            time=now,
            claims=claims,
        )


@dataclass
class TaskBuilder:
    """One ``ClientTask`` per client: its behaviour, epochs, rows, DP noise and seed."""

    scenario: Scenario
    data_spec: DataSpec
    data: FederatedData
    population: Population
    privacy: ClientPrivacy | None
    grad_sample_mode: str
    tree: SeedTree
    device: str = "cpu"
    """Where clients train (``resolve_device``'s choice, the same for the whole run)."""
    signing: NodeSigning | None = None
    """Set when each node signs its own contribution (``--engine deployment``)."""

    def build(
        self, round_: int, clients: Iterable[int], fed: Federation, now: float
    ) -> list[ClientTask]:
        sc = self.scenario
        faults = {f.client: f.kind for f in sc.faults if f.rounds is None or round_ in f.rounds}
        tasks = []
        for c in clients:
            dp = None
            if self.privacy is not None:
                dp = DPSpec(
                    noise_multiplier=self.privacy.noise_for(c),
                    max_grad_norm=self.privacy.dp.max_grad_norm,
                    grad_sample_mode=self.grad_sample_mode,  # type: ignore[arg-type]
                    publish_train_metrics=self.privacy.dp.publish_train_metrics,
                )
            epochs = self.population.epochs(c, round_, now, sc.training.epochs)
            indices = self.population.data_indices(c, self.data.partitions)
            tasks.append(
                ClientTask(
                    round=round_,
                    client_index=c,
                    account=fed.account(c),
                    data=self.data_spec,
                    model=sc.model,
                    training=sc.training.model_copy(update={"epochs": epochs}),
                    dp=dp,
                    seed=self.tree.integer("train", c, round_),
                    behaviour=self.population.behaviour_config(c, round_, now),
                    fault=faults.get(c),
                    data_indices=_rows(indices),
                    device=self.device,
                    proximal_mu=proximal_mu(sc.aggregation.strategy, sc.aggregation.params),
                    sign=None
                    if self.signing is None
                    else self.signing.request(c, fed.account(c), epochs, round_, now),
                )
            )
        return tasks


def _rows(indices: np.ndarray | None) -> tuple[int, ...] | None:
    return tuple(int(i) for i in indices) if indices is not None else None
