"""Sample-level DP bookkeeping on the server: each client's noise, budget and ε.

The server calibrates every client's σ (given, or so that training every round
ends at the target ε with that client's own sample rate and step count) and
composes the steps each reply reports twice: into the *identity's* accountant
(what the ledger records, and all a mechanism may see) and into its *data
owner's* (ε is about data: a whitewasher's fresh identities and the Sybil
identities that split or copy one owner's rows all spend that owner's ε). The
owner's accountant is the one the budget is enforced on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from marketplace.canonical import JSON
from marketplace.privacy_audit import PLD_DISCRETIZATION, RDP_ORDERS_NAME
from simulation.config.schema import DPSGDPrivacy, TrainingConfig
from simulation.fl.privacy import PrivacyLedger, Step, calibrate_noise, poisson_schedule
from simulation.world.identities import IdentityBook

__all__ = ["ClientPrivacy", "RowsOf", "identity_epsilon", "owner_epsilon"]


class RowsOf(Protocol):
    """How many rows a client slot's task trains on in round ``round_`` (its behaviour's
    ``data_fraction`` applied), or under its group's own behaviour when ``round_`` is
    ``None`` (what the noise is calibrated for)."""

    def __call__(self, client: int, round_: int | None = None, now: float = 0.0) -> int: ...


def _self(account: str) -> str:
    return account


class ClientPrivacy:
    """σ per client, the per-identity and per-owner accountants, and the budget."""

    def __init__(
        self,
        dp: DPSGDPrivacy,
        training: TrainingConfig,
        rounds: int,
        size_of: RowsOf,
        owner_of: Callable[[str], str] = _self,
        epochs_of: Callable[[int], int] | None = None,
    ) -> None:
        self.dp = dp
        self.training = training
        self.rounds = rounds
        self.size_of = size_of
        self.owner_of = owner_of
        """identity → data owner (ground truth; never on the ledger)."""
        self.epochs_of = epochs_of or (lambda _client: training.epochs)
        """A client slot's local epochs under its group's behaviour (for calibration)."""
        self.ledger = PrivacyLedger(dp.delta, dp.accountant)
        """Per identity: the ε the ledger records."""
        self.owners = PrivacyLedger(dp.delta, dp.accountant)
        """Per data owner: the ε the budget applies to and the run reports."""

    @property
    def budget(self) -> float | None:
        """The ε a data owner may not exceed (``budget``, else ``target_epsilon``)."""
        return self.dp.budget if self.dp.budget is not None else self.dp.target_epsilon

    def noise_for(self, client: int) -> float:
        """σ for ``client``: given, or calibrated so that its task's (q, steps) every round
        of the run end at the target ε."""
        if self.dp.noise_multiplier is not None:
            return self.dp.noise_multiplier
        assert self.dp.target_epsilon is not None
        q, steps = poisson_schedule(self.size_of(client), self.training.batch_size)
        total = steps * self.epochs_of(client) * self.rounds
        return calibrate_noise(self.dp.target_epsilon, self.dp.delta, q, total)

    def planned_step(
        self, client: int, epochs: int, round_: int | None = None, now: float = 0.0
    ) -> Step:
        """The (σ, q, steps) of ``client``'s task in ``round_`` with ``epochs`` epochs:
        the sample rate and step count Opacus will use on the rows it trains on."""
        q, steps = poisson_schedule(self.size_of(client, round_, now), self.training.batch_size)
        return (self.noise_for(client), q, steps * epochs)

    def mechanism(self, client: int, sample_rate: float, steps: int) -> dict[str, JSON]:
        """The privacy record a contribution entry carries for ``client``'s round of
        ``steps`` at ``sample_rate`` (what the audit re-derives ε from)."""
        record: dict[str, JSON] = {
            "mechanism": "poisson_gaussian",
            "noise_multiplier": self.noise_for(client),
            "sample_rate": sample_rate,
            "steps": steps,
            "delta": self.dp.delta,
            "accountant": self.dp.accountant,
        }
        if self.dp.accountant == "pld":
            record["pld_discretization"] = PLD_DISCRETIZATION
        else:
            record["rdp_orders"] = RDP_ORDERS_NAME
        return record

    def spent(self, account: str) -> float:
        """Cumulative ε of the identity ``account`` (its own steps only)."""
        return self.ledger.spent(account)

    def would_spend(self, account: str, step: Step) -> float:
        """The identity's cumulative ε after one more round of ``step``."""
        return self.ledger.would_spend(account, step)

    def owner_spent(self, account: str) -> float:
        """Cumulative ε of the data owner behind ``account`` (every identity's steps)."""
        return self.owners.spent(self.owner_of(account))

    def owner_would_spend(self, account: str, steps: tuple[Step, ...]) -> float:
        """The owner's cumulative ε after ``steps`` more (one per identity that trains)."""
        owner = self.owner_of(account)
        history = (*self.owners.histories.get(owner, ()), *steps)
        return PrivacyLedger(self.dp.delta, self.dp.accountant, {owner: history}).spent(owner)

    def record(self, account: str, step: Step) -> float:
        """Compose a round's steps into the identity's and its owner's accountants;
        return the identity's new cumulative ε."""
        self.owners.record(self.owner_of(account), step)
        return self.ledger.record(account, step)


def owner_epsilon(privacy: ClientPrivacy | None, identities: IdentityBook) -> dict[str, float]:
    """Every data owner's cumulative ε, by owner (empty without DP): what the run reports
    as ``epsilon_max``/``epsilon_mean`` and in the manifest."""
    if privacy is None:
        return {}
    return {o: privacy.owners.spent(o) for o in sorted(set(identities.owners().values()))}


def identity_epsilon(privacy: ClientPrivacy | None, identities: IdentityBook) -> dict[str, float]:
    """Every identity's own cumulative ε (what the ledger records), by identity."""
    if privacy is None:
        return {}
    return {i.account: privacy.spent(i.account) for i in identities.all()}
