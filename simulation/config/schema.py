"""The scenario schema: every section a scenario file may hold, as typed models.

A scenario names a population, a learning task, an incentive design and (in
later schema sections) an attack timeline. Everything a user writes is a
pydantic model with ``extra="forbid"``, so a typo is an error that names the
field instead of a silently ignored key. Errors are collected, never raised
one at a time: a user fixing a file sees every problem at once, as
``FILE: field.path -> reason``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

DEFAULT_ROUND_TIMEOUT_S = 1800.0
"""Generous: a round that trains for half an hour on one machine is not a test-size run."""

_LATER_FIELDS: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("resources", "round_timeout_s"), DEFAULT_ROUND_TIMEOUT_S),
)
"""Fields added after version 1's hashes were published, with their defaults."""


class StrictModel(BaseModel):
    """Base of every user-facing model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data


class SyntheticConfig(StrictModel):
    """FedProx ``Synthetic(α, β)`` (Li et al. 2020): α controls how much local models
    differ across clients, β how much local input distributions differ."""

    alpha: float = Field(1.0, ge=0.0, description="model heterogeneity α")
    beta: float = Field(1.0, ge=0.0, description="data heterogeneity β")
    dim: int = Field(60, ge=2, le=10_000, description="input dimension")
    num_classes: int = Field(10, ge=2, le=1000)
    samples_per_client: int = Field(200, ge=10, le=1_000_000, description="mean; lognormal")
    iid: bool = Field(False, description="Synthetic-IID: one shared model and input law")


class DatasetConfig(StrictModel):
    """Which bundled or generated dataset, and how much of it the server keeps."""

    name: Literal["digits", "breast_cancer", "synthetic"] = "digits"
    test_fraction: float = Field(0.2, gt=0.0, lt=0.9, description="server-side test split")
    validation_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="server-side validation split (contribution scoring)"
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)


class IidPartition(StrictModel):
    """Uniformly random, equal-size client shards."""

    kind: Literal["iid"] = "iid"


class DirichletPartition(StrictModel):
    """Label skew: each class is split across clients by Dir(α); small α = more skew."""

    kind: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(0.5, gt=0.0)
    min_partition_size: int = Field(5, ge=0)


class PathologicalPartition(StrictModel):
    """Each client sees only ``classes_per_client`` classes (McMahan et al. 2017)."""

    kind: Literal["pathological"] = "pathological"
    classes_per_client: int = Field(2, ge=1)


class NaturalPartition(StrictModel):
    """One shard per generated client (the synthetic dataset's own split)."""

    kind: Literal["natural"] = "natural"


Partition = Annotated[
    IidPartition | DirichletPartition | PathologicalPartition | NaturalPartition,
    Field(discriminator="kind"),
]


# -------------------------------------------------------------------------- model


class ModelConfig(StrictModel):
    """A model from the registry; the size fields each model reads are documented there."""

    name: Literal["logreg", "mlp", "cnn"] = "mlp"
    hidden: tuple[int, ...] = Field((64,), description="mlp: hidden layer widths")
    channels: tuple[int, ...] = Field((16, 32), description="cnn: conv channels per block")

    @model_validator(mode="after")
    def _sizes_positive(self) -> ModelConfig:
        if any(h < 1 for h in self.hidden):
            raise ValueError("hidden: every width must be >= 1")
        if any(c < 1 for c in self.channels):
            raise ValueError("channels: every width must be >= 1")
        return self


# ---------------------------------------------------------------------- population


class ClientsConfig(StrictModel):
    """How many clients exist and how many train each round."""

    count: int = Field(10, ge=1, le=10_000)
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction sampled per round")
    min_per_round: int = Field(1, ge=1)


class TrainingConfig(StrictModel):
    """Local training on each client."""

    epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=100_000)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)


class NoPrivacy(StrictModel):
    """The non-private baseline."""

    mode: Literal["none"] = "none"


class DPSGDPrivacy(StrictModel):
    """Sample-level DP-SGD with Opacus (Poisson sampling, RDP accounting).

    Give either ``noise_multiplier`` or ``target_epsilon`` (the noise is then
    calibrated so a client that trains every round ends at that ε).
    """

    mode: Literal["dp_sgd"] = "dp_sgd"
    noise_multiplier: float | None = Field(None, gt=0.0)
    target_epsilon: float | None = Field(None, gt=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    budget: float | None = Field(
        None, gt=0.0, description="per-client ε budget; a client stops before exceeding it"
    )
    grad_sample_mode: Literal["auto", "ghost", "hooks"] = "auto"

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPSGDPrivacy:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier or target_epsilon")
        return self


Privacy = Annotated[NoPrivacy | DPSGDPrivacy, Field(discriminator="mode")]


class AggregationConfig(StrictModel):
    """Server-side aggregation: a Flower strategy by name."""

    strategy: str = "fedavg"
    max_update_norm: float = Field(
        1e4, gt=0.0, description="updates farther than this (L2) from the global model are rejected"
    )
    client_dp: dict[str, float | int | str] | None = Field(
        None,
        description="client-level DP with Flower's wrappers: {mode: server-fixed|server-adaptive,"
        " noise_multiplier, clipping_norm | initial_clipping_norm, ...}",
    )
    flag_below: float = Field(
        0.05, ge=0.0, le=1.0, description="a robust aggregator's weight below this flags a client"
    )
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class RewardsConfig(StrictModel):
    """Token emission and the incentive mechanism that splits it."""

    mechanism: str = "data_size"
    emission_per_round: float = Field(100.0, ge=0.0, description="tokens minted per round")
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class LicenseTermsConfig(StrictModel):
    """One license type of every model version's price list."""

    price: float = Field(ge=0.0, description="tokens")
    duration_s: float | None = Field(None, gt=0.0, description="validity on the simulated clock")
    max_uses: int | None = Field(None, ge=1)


def _default_prices() -> dict[str, LicenseTermsConfig]:
    return {
        "perpetual": LicenseTermsConfig(price=20.0),
        "subscription": LicenseTermsConfig(price=5.0, duration_s=86_400.0),
        "per_use": LicenseTermsConfig(price=2.0, max_uses=20),
    }


class MarketBehaviourConfig(StrictModel):
    """A market process on the simpy clock (buyers, voters, cabals, ...)."""

    behaviour: str
    params: dict[str, Any] = Field(default_factory=dict)


class MarketConfig(StrictModel):
    """Participation economics on the ledger, and the market's own processes."""

    behaviours: tuple[MarketBehaviourConfig, ...] = ()
    prices: dict[str, LicenseTermsConfig] = Field(default_factory=_default_prices)
    buyer_budget: float = Field(100.0, ge=0.0, description="tokens each new buyer brings")
    rating_rule: str = Field("mean", description="how votes aggregate into a version's rating")

    initial_grant: float = Field(10.0, ge=0.0, description="tokens granted to each new client")
    stake: float = Field(5.0, ge=0.0, description="tokens a client stakes to join")
    compute_cost_per_round: float = Field(
        0.0, ge=0.0, description="a participant's cost (tokens) of training one round"
    )
    price_per_epsilon: float = Field(
        0.0, ge=0.0, description="a participant's cost (tokens) per unit of ε spent"
    )
    block: Literal["round"] = "round"


class TimingConfig(StrictModel):
    """The simulated clock's compute-and-network model of a round."""

    client_gflops: float = Field(1.0, gt=0.0, description="median client speed")
    heterogeneity: float = Field(0.5, ge=0.0, description="lognormal σ of client speed")
    bandwidth_mbps: float = Field(20.0, gt=0.0)
    latency_s: float = Field(0.05, ge=0.0)
    dp_overhead: float = Field(2.0, ge=1.0, description="compute factor of per-sample clipping")
    deadline_s: float | None = Field(
        None, gt=0.0, description="round deadline; slower clients are stragglers, discarded"
    )
    server_seconds: float = Field(0.1, ge=0.0, description="aggregation time per round")
    round_interval_s: float = Field(
        0.0, ge=0.0, description="rounds start at most this often (e.g. 3600: hourly rounds)"
    )


class ResourcesConfig(StrictModel):
    """Flower Simulation Engine resources (Ray backend)."""

    backend: Literal["ray"] = "ray"
    num_cpus: int | None = Field(None, ge=1, description="CPUs given to Ray (default: all)")
    client_cpus: float = Field(1.0, gt=0.0)
    round_timeout_s: float = Field(
        DEFAULT_ROUND_TIMEOUT_S,
        gt=0.0,
        le=7 * 86_400.0,
        description="wall-clock seconds the server waits for a round's replies on the Flower"
        " engine; a client that has not answered by then is rejected (timeout)",
    )


class FaultConfig(StrictModel):
    """A corrupted client: its update is broken on purpose (tests the server's checks)."""

    client: int = Field(ge=0, description="client index")
    kind: Literal["nan", "wrong_shape", "wrong_dtype", "huge_norm", "crash"]
    rounds: tuple[int, ...] | None = Field(None, description="rounds affected (default: all)")


class GroupConfig(StrictModel):
    """A group of clients that share a training behaviour (the rest are honest).

    Members are drawn from the clients by the seed (a permutation; groups take
    consecutive slices in the order they are declared), so ``count`` or
    ``fraction`` is all a scenario says. ``attacker`` is ground truth for the
    attack metrics; it defaults to "the behaviour is not honest".
    """

    group: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    count: int | None = Field(None, ge=1)
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    clients: tuple[int, ...] | None = Field(None, description="explicit client indices")
    behaviour: str = "honest"
    params: dict[str, Any] = Field(default_factory=dict)
    attacker: bool | None = None
    sybil: Literal["split", "duplicate"] | None = Field(
        None, description="members are identities of one owner that split or copy its data"
    )

    @model_validator(mode="after")
    def _one_size(self) -> GroupConfig:
        given = [x is not None for x in (self.count, self.fraction, self.clients)]
        if sum(given) != 1:
            raise ValueError("give exactly one of count, fraction or clients")
        if self.clients is not None and (
            not self.clients or len(set(self.clients)) != len(self.clients) or min(self.clients) < 0
        ):
            raise ValueError("clients: distinct, non-negative client indices")
        return self

    def size(self, num_clients: int) -> int:
        """Number of members among ``num_clients`` clients."""
        if self.clients is not None:
            return len(self.clients)
        if self.count is not None:
            return self.count
        assert self.fraction is not None
        return max(1, round(self.fraction * num_clients))

    @property
    def is_attacker(self) -> bool:
        """Ground truth: does this group attack?"""
        return self.attacker if self.attacker is not None else self.behaviour != "honest"


class _Window(StrictModel):
    """When an event is in force: by round numbers or by simulated seconds."""

    start_round: int | None = Field(None, ge=1)
    stop_round: int | None = Field(None, ge=1, description="inclusive")
    start_time: float | None = Field(None, ge=0.0)
    stop_time: float | None = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> _Window:
        if (
            self.start_round is not None
            and self.stop_round is not None
            and self.stop_round < self.start_round
        ):
            raise ValueError("stop_round: before start_round")
        if (
            self.start_time is not None
            and self.stop_time is not None
            and self.stop_time < self.start_time
        ):
            raise ValueError("stop_time: before start_time")
        return self

    def active(self, round_: int, now: float) -> bool:
        """Is the window open at ``round_`` (starting at simulated time ``now``)?"""
        if self.start_round is not None and round_ < self.start_round:
            return False
        if self.stop_round is not None and round_ > self.stop_round:
            return False
        if self.start_time is not None and now < self.start_time:
            return False
        return not (self.stop_time is not None and now > self.stop_time)


class AttackEvent(_Window):
    """The group's behaviour is in force only inside this window (honest outside).

    A group with no ``attack`` event behaves as declared from the first round.
    """

    kind: Literal["attack"] = "attack"
    group: str


class CoalitionEvent(_Window):
    """A server-side coalition attack by a group's members (they share updates):
    ``alie``, ``update_copying``, ``stale_replay``, ``sybil_duplicate``."""

    kind: Literal["coalition"] = "coalition"
    group: str
    attack: str
    params: dict[str, Any] = Field(default_factory=dict)


class JoinEvent(StrictModel):
    """The group's clients are absent until this round (or simulated time)."""

    kind: Literal["join"] = "join"
    group: str
    round: int | None = Field(None, ge=1)
    time: float | None = Field(None, ge=0.0)


class LeaveEvent(StrictModel):
    """The group's clients leave from this round (or simulated time) on."""

    kind: Literal["leave"] = "leave"
    group: str
    round: int | None = Field(None, ge=1)
    time: float | None = Field(None, ge=0.0)


class DropoutEvent(_Window):
    """Sampled clients (of a group, or everyone) fail to answer with this probability."""

    kind: Literal["dropout"] = "dropout"
    group: str | None = None
    probability: float = Field(ge=0.0, le=1.0)


TimelineEvent = Annotated[
    AttackEvent | CoalitionEvent | JoinEvent | LeaveEvent | DropoutEvent,
    Field(discriminator="kind"),
]


class ContributionConfig(StrictModel):
    """Server-side contribution evaluation on the validation split, each round.

    ``evaluator`` scores the round's accepted updates (fed to score-based
    mechanisms and to reputation); ``reference`` is the ground-truth measure
    the attack metrics compare rewards against (exact Shapley for small
    rounds, falling back to ``gtg_shapley`` above ``exact_max_clients``).
    """

    evaluator: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    reference: bool = False
    exact_max_clients: int = Field(10, ge=1, le=16)


class OutputConfig(StrictModel):
    """What a run writes."""

    save_model: bool = True
    csv: bool = True
    baseline: bool = Field(
        False, description="also run the no-attack baseline (same seed) for accuracy drop"
    )


class Scenario(StrictModel):
    """A whole experiment: the root of a scenario file."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field("scenario", min_length=1, max_length=200)
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    partition: Partition = Field(default_factory=IidPartition)
    model: ModelConfig = Field(default_factory=ModelConfig)
    clients: ClientsConfig = Field(default_factory=ClientsConfig)
    rounds: int = Field(5, ge=1, le=100_000)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    privacy: Privacy = Field(default_factory=NoPrivacy)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    market: MarketConfig = Field(default_factory=MarketConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    faults: tuple[FaultConfig, ...] = ()
    population: tuple[GroupConfig, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()
    contribution: ContributionConfig = Field(default_factory=ContributionConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _cross_field(self) -> Scenario:
        if self.model.name == "cnn" and self.dataset.name != "digits":
            raise ValueError("model.name: cnn needs an image dataset (digits)")
        if self.partition.kind == "natural" and self.dataset.name != "synthetic":
            raise ValueError("partition.kind: natural is only defined for synthetic")
        if self.clients.min_per_round > self.clients.count:
            raise ValueError("clients.min_per_round: larger than clients.count")
        for fault in self.faults:
            if fault.client >= self.clients.count:
                raise ValueError(f"faults: client {fault.client} does not exist")
        names = [g.group for g in self.population]
        if len(set(names)) != len(names):
            raise ValueError("population: group names must be unique")
        members = sum(g.size(self.clients.count) for g in self.population)
        explicit = [i for g in self.population for i in (g.clients or ())]
        if len(set(explicit)) != len(explicit) or any(i >= self.clients.count for i in explicit):
            raise ValueError("population: explicit clients overlap or do not exist")
        if members > self.clients.count:
            raise ValueError(
                f"population: groups hold {members} clients but clients.count is "
                f"{self.clients.count}"
            )
        for i, event in enumerate(self.timeline):
            group = getattr(event, "group", None)
            if group is not None and group not in names:
                raise ValueError(f"timeline.{i}.group: no population group {group!r}")
        return self

    def resolved(self) -> dict[str, Any]:
        """The fully resolved scenario as plain JSON-able data.

        Fields added after schema version 1 was pinned are left out while they
        hold their default, so a scenario that does not use them keeps the hash
        (and so the ledger head) it had before they existed.
        """
        data = self.model_dump(mode="json")
        for path, default in _LATER_FIELDS:
            *parents, leaf = path
            node = data
            for key in parents:
                node = node[key]
            if node.get(leaf) == default:
                del node[leaf]
        return data

    def sha256(self) -> str:
        """Hash of the resolved scenario's canonical JSON: names the experiment on the ledger."""
        blob = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
