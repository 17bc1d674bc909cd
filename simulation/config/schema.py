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
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from marketplace.contribution import REFERENCE_MAX_PERMUTATIONS, REFERENCE_MIN_PERMUTATIONS
from simulation.config.catalog import DATASETS, HUB_DATASETS, facts

SCHEMA_VERSION = 2

MIGRATE_FROM_1 = (
    "this is a version-1 file; version 2 gives every money field in tokens, and the one "
    "that was not, rewards.params.slash_amount (stake_slash), was in base units "
    "(1 token = 1,000,000): divide it by 1,000,000 (2000000 -> 2) and set schema_version: 2; "
    "nothing else changes"
)
"""How to migrate a version-1 scenario file (what ``fedmarket validate`` says)."""

STRUCTURE_ONLY: dict[str, Any] = {"semantic": False}
"""Validation context that skips :meth:`Scenario.semantic_problems`: the loader
validates the structure first, then reports the semantic problems together with
the problems of building each named component."""


def client_account(index: int) -> str:
    """The market account of client ``index`` (``client-003``): the name a scenario
    uses for a client wherever it names accounts."""
    return f"client-{index:03d}"


MAX_SERVER_ROWS = 1_000_000
"""The most rows a fixed-size server split may hold (``dataset.test_rows``,
``dataset.validation_rows``): a server's held-out set, not a second dataset."""
MAX_SERVER_VALUES = 100_000_000
"""The most values (rows × ``synthetic.dim``) one fixed-size server split may hold,
0.8 GB in float64, so a size the machine cannot draw is a scenario error, not an
out-of-memory kill."""

DEFAULT_ROUND_TIMEOUT_S = 1800.0
"""Generous: a round that trains for half an hour on one machine is not a test-size run."""


class StrictModel(BaseModel):
    """Base of every user-facing model: unknown keys are errors, values are immutable,
    and numbers are finite (an ``.inf`` emission would only fail mid-run)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hashed_when_set: ClassVar[frozenset[str]] = frozenset()
    """Fields added after scenario hashes were first published (ledger geneses name them).
    :meth:`Scenario.sha256` covers such a field only once it differs from its default,
    so adding a field with a behaviour-preserving default renames no earlier experiment."""


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
    """A bundled or generated dataset, and how much of it the server keeps.

    The server's test and validation splits come in one of two forms:

    * **fractions** (``test_fraction``, ``validation_fraction``; the default): that
      share of all rows is held out, stratified by natural id (else label), and the
      clients share the rest, so the splits grow with the population;
    * **fixed sizes** (``test_rows``, ``validation_rows``, both together): the
      server's own held-out set, ``test_rows`` and ``validation_rows`` rows drawn
      from the data's law apart from every client's rows, as a cross-device
      server evaluates on data no device holds. Its size is the same at every
      population size and the clients keep all their rows. Only a generated law
      can give fresh rows: Synthetic-IID's one shared model and input law
      (``synthetic.iid: true``). Each split is drawn from its own child of the
      run's seed tree (``data/server-test``, ``data/server-validation``), so one
      size does not move the other split's rows.

    Each row count drops its own fraction's default; a fraction given beside a
    row count is a scenario error naming it. Hub datasets have their own rules
    (:class:`HubDatasetConfig`).
    """

    hashed_when_set: ClassVar[frozenset[str]] = frozenset({"test_rows", "validation_rows"})

    name: Literal["digits", "breast_cancer", "synthetic"] = "digits"
    test_fraction: float | None = Field(
        0.2, gt=0.0, lt=0.9, description="server-side test split, a share of all rows"
    )
    validation_fraction: float | None = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description="server-side validation split, a share of all rows (the registry's "
        "validation results, contribution scoring)",
    )
    test_rows: int | None = Field(
        None,
        ge=1,
        le=MAX_SERVER_ROWS,
        description="a fixed-size server test set drawn from the data's law apart from the "
        "clients' rows (Synthetic-IID only; replaces test_fraction)",
    )
    validation_rows: int | None = Field(
        None,
        ge=1,
        le=MAX_SERVER_ROWS,
        description="the fixed-size server validation set beside test_rows (replaces "
        "validation_fraction)",
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @field_validator("name", mode="before")
    @classmethod
    def _known_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in DATASETS:
            facts(value)  # raises, listing every dataset name
        return value

    @model_validator(mode="before")
    @classmethod
    def _rows_replace_fractions(cls, data: Any) -> Any:
        # A row count takes the place of its fraction: the fraction's default goes, a
        # fraction written beside it stays and is refused below.
        if isinstance(data, dict):
            data = dict(data)
            for rows, fraction in (
                ("test_rows", "test_fraction"),
                ("validation_rows", "validation_fraction"),
            ):
                if data.get(rows) is not None and fraction not in data:
                    data[fraction] = None
        return data

    @model_validator(mode="after")
    def _one_form(self) -> DatasetConfig:
        for rows, fraction in (
            ("test_rows", "test_fraction"),
            ("validation_rows", "validation_fraction"),
        ):
            given, share = getattr(self, rows), getattr(self, fraction)
            if given is not None and share is not None:
                raise ValueError(
                    f"{fraction}: {rows} ({given}) replaces {fraction}; give one of them"
                )
            if given is None and share is None:
                raise ValueError(f"{fraction}: give {fraction} or {rows}")
        if (self.test_rows is None) != (self.validation_rows is None):
            given, missing = (
                ("test_rows", "validation_rows")
                if self.validation_rows is None
                else ("validation_rows", "test_rows")
            )
            raise ValueError(
                f"{missing}: the server's held-out set is either fixed-size or fractions; "
                f"{given} is given, so give {missing} too"
            )
        if (self.test_fraction or 0.0) + (self.validation_fraction or 0.0) >= 0.9:
            raise ValueError("validation_fraction: test and validation leave < 10% for training")
        for rows in ("test_rows", "validation_rows"):
            values = (getattr(self, rows) or 0) * self.synthetic.dim
            if values > MAX_SERVER_VALUES:
                raise ValueError(
                    f"{rows}: {values:,} values ({rows} × synthetic.dim) is over the "
                    f"{MAX_SERVER_VALUES:,} a server held-out split may hold"
                )
        if self.test_rows is not None and (self.name != "synthetic" or not self.synthetic.iid):
            what = (
                "Synthetic(α, β) draws one law per client"
                if self.name == "synthetic"
                else f"{self.name} is a fixed set of rows"
            )
            raise ValueError(
                "test_rows: a fixed-size server held-out set is drawn from the data's law "
                f"apart from the clients' rows, which only Synthetic-IID has ({what}); "
                "use test_fraction and validation_fraction"
            )
        return self


class HubDatasetConfig(StrictModel):
    """A benchmark dataset from the Hugging Face Hub, loaded through Flower Datasets.

    The data must already be on disk: in the local Hugging Face cache
    (``fedmarket data fetch NAME`` puts it there) or at ``path``. Nothing is
    downloaded during validation or a run.

    mnist, fashion_mnist and cifar10 test on their official test split;
    femnist and shakespeare have none, so ``test_fraction`` of each writer's
    (speaking role's) samples is held out, as LEAF does (for shakespeare the
    *last* samples of each role, since consecutive samples overlap in text).
    ``validation_fraction`` of the training split (of each writer/role for
    femnist/shakespeare) is the server's validation split.
    """

    name: Literal["mnist", "fashion_mnist", "cifar10", "femnist", "shakespeare"]
    path: str | dict[str, str] | None = Field(
        None,
        description="load from here instead of the HF cache: a directory (a copy of the Hub "
        "repo, or Parquet files named train*/test*), one Parquet file (the train split), or "
        "{train: FILE, test: FILE}",
    )
    test_fraction: float | None = Field(
        None,
        gt=0.0,
        lt=0.9,
        description="femnist, shakespeare: share of each writer's/role's samples the server "
        "tests on (LEAF: 0.1); leave unset for datasets with an official test split",
    )
    validation_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description="server-side validation share of the training split (the registry's "
        "validation results, contribution scoring, FLTrust's root set)",
    )

    @model_validator(mode="after")
    def _test_split(self) -> HubDatasetConfig:
        official = facts(self.name).official_test
        if official and self.test_fraction is not None:
            raise ValueError(
                f"test_fraction: {self.name} tests on its official test split; leave "
                "test_fraction unset (--set dataset.test_fraction=null)"
            )
        if not official and self.test_fraction is None:
            raise ValueError(
                f"test_fraction: {self.name} has no official test split; give the share of "
                "each writer's samples the server tests on (LEAF uses 0.1)"
            )
        if (self.test_fraction or 0.0) + self.validation_fraction >= 0.9:
            raise ValueError("validation_fraction: test and validation leave < 10% for training")
        if isinstance(self.path, dict) and (not self.path or set(self.path) - {"train", "test"}):
            raise ValueError("path: a mapping names Parquet files for the splits train and test")
        return self


def _dataset_tag(value: Any) -> str:
    name = value.get("name", "digits") if isinstance(value, dict) else getattr(value, "name", "")
    return "hub" if name in HUB_DATASETS else "bundled"


Dataset = Annotated[
    Annotated[DatasetConfig, Tag("bundled")] | Annotated[HubDatasetConfig, Tag("hub")],
    Discriminator(_dataset_tag),
]
"""Either kind of dataset section, told apart by ``name`` (``digits`` when absent)."""


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
    """One client per natural id: a synthetic group, a FEMNIST writer, a Shakespeare
    speaking role (Flower's ``NaturalIdPartitioner``). When the data holds more ids
    than ``clients.count``, the clients are that many ids drawn with the seed (LEAF
    samples users the same way); fewer ids than clients is an error."""

    kind: Literal["natural"] = "natural"


class ShardPartition(StrictModel):
    """Sort by label, cut into shards, deal ``shards_per_client`` to each client:
    McMahan et al. 2017's pathological non-IID split (MNIST: 200 shards of 300, 2 per
    client). Flower's ``ShardPartitioner``; give the shard count, the size, or both."""

    kind: Literal["shard"] = "shard"
    shards_per_client: int | None = Field(2, ge=1)
    shard_size: int | None = Field(None, ge=1, description="default: as large as fits")
    keep_incomplete_shard: bool = False

    @model_validator(mode="after")
    def _one_given(self) -> ShardPartition:
        if self.shards_per_client is None and self.shard_size is None:
            raise ValueError("give shards_per_client, shard_size or both")
        return self


class SizePartition(StrictModel):
    """Explicit client sizes (Flower's ``SizePartitioner``), one per client, in rows of
    the training split; their sum may not exceed it."""

    kind: Literal["size"] = "size"
    sizes: tuple[int, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _non_negative(self) -> SizePartition:
        if min(self.sizes) < 0:
            raise ValueError("sizes: every size must be >= 0")
        return self


class LinearPartition(StrictModel):
    """Client k gets a share ∝ k + 1 of the training split (``LinearPartitioner``)."""

    kind: Literal["linear"] = "linear"


class SquarePartition(StrictModel):
    """Client k gets a share ∝ (k + 1)² (``SquarePartitioner``)."""

    kind: Literal["square"] = "square"


class ExponentialPartition(StrictModel):
    """Client k gets a share ∝ e^(k + 1) (``ExponentialPartitioner``): with many clients
    the first ones get nothing, which is an error."""

    kind: Literal["exponential"] = "exponential"


class InnerDirichletPartition(StrictModel):
    """Given client sizes, each client's label mix drawn from Dir(α) (Flower's
    ``InnerDirichletPartitioner``). ``sizes`` unset: equal sizes that sum to the
    training split; set: one per client, summing to the training split."""

    kind: Literal["inner_dirichlet"] = "inner_dirichlet"
    alpha: float = Field(0.5, gt=0.0)
    sizes: tuple[int, ...] | None = Field(None, min_length=1)


class GroupedNaturalPartition(StrictModel):
    """Groups of ``group_size`` natural ids form one client (cross-silo FEMNIST or
    Shakespeare; Flower's ``GroupedNaturalIdPartitioner``). More groups than clients:
    a seeded sample of groups, as for ``natural``."""

    kind: Literal["grouped_natural"] = "grouped_natural"
    group_size: int = Field(ge=1)
    mode: Literal["allow-smaller", "allow-bigger", "drop-reminder", "strict"] = "allow-smaller"
    sort_ids: bool = False


class ContinuousPartition(StrictModel):
    """Clients by a numeric column, blended with noise: ``strictness`` 0 is IID, 1 sorts
    strictly by the column (Flower's ``ContinuousPartitioner``). ``by`` is ``label`` or
    a numeric column of the dataset (femnist: ``hsf_id``)."""

    kind: Literal["continuous"] = "continuous"
    by: str = "label"
    strictness: float = Field(ge=0.0, le=1.0)


class DistributionPartition(StrictModel):
    """A power-law label distribution (Flower's ``DistributionPartitioner``, after Li et
    al. 2020): each client holds ``labels_per_client`` adjacent labels, in amounts drawn
    from LogNormal(``mu``, ``sigma``) with the seed, after ``preassigned_per_label``
    samples of each. The client count must be a multiple of the number of labels."""

    kind: Literal["distribution"] = "distribution"
    labels_per_client: int = Field(2, ge=1)
    preassigned_per_label: int = Field(5, ge=0)
    mu: float = 0.0
    sigma: float = Field(2.0, ge=0.0)
    rescale: bool = True


Partition = Annotated[
    IidPartition
    | DirichletPartition
    | PathologicalPartition
    | NaturalPartition
    | ShardPartition
    | SizePartition
    | LinearPartition
    | SquarePartition
    | ExponentialPartition
    | InnerDirichletPartition
    | GroupedNaturalPartition
    | ContinuousPartition
    | DistributionPartition,
    Field(discriminator="kind"),
]

NATURAL_KINDS = ("natural", "grouped_natural")
"""Partition kinds that need natural client ids in the data."""


# -------------------------------------------------------------------------- model


IMAGE_MODELS = ("cnn", "lenet5", "fedavg_cnn", "resnet8", "resnet20")
TEXT_MODELS = ("char_lstm",)
_MIN_SIDE = {"lenet5": 28, "fedavg_cnn": 28}


class ModelConfig(StrictModel):
    """A model from the registry; the size fields each model reads are documented there.

    The standard models of the papers: ``lenet5`` (LeCun et al. 1998, for MNIST and
    FEMNIST), ``fedavg_cnn`` (McMahan et al. 2017's 2-conv CNN), ``resnet8`` and
    ``resnet20`` (He et al. 2016's CIFAR ResNets, GroupNorm instead of BatchNorm for
    DP-SGD) and ``char_lstm`` (McMahan et al. 2017 / LEAF's Shakespeare LSTM).
    """

    hashed_when_set: ClassVar[frozenset[str]] = frozenset(
        {"embedding_dim", "lstm_hidden", "lstm_layers"}
    )

    name: Literal[
        "logreg", "mlp", "cnn", "lenet5", "fedavg_cnn", "resnet8", "resnet20", "char_lstm"
    ] = "mlp"
    hidden: tuple[int, ...] = Field((64,), description="mlp: hidden layer widths")
    channels: tuple[int, ...] = Field((16, 32), description="cnn: conv channels per block")
    embedding_dim: int = Field(8, ge=1, le=4096, description="char_lstm: character embedding")
    lstm_hidden: int = Field(256, ge=1, le=8192, description="char_lstm: LSTM width")
    lstm_layers: int = Field(2, ge=1, le=8, description="char_lstm: stacked LSTM layers")

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

    count: int = Field(10, ge=1, le=1_000_000)
    fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction sampled per round")
    min_per_round: int = Field(1, ge=1)

    def per_round(self, present: int | None = None) -> int:
        """Clients a round samples from ``present`` eligible ones (default: everyone):
        ``max(min_per_round, round(fraction · present))``, at most ``present``."""
        n = self.count if present is None else present
        return min(n, max(self.min_per_round, round(self.fraction * n)))


class TrainingConfig(StrictModel):
    """Local training on each client.

    ``device``: ``auto`` trains on CUDA when torch sees a GPU and the clients have a
    GPU share (``resources.client_gpus`` > 0), else on the CPU; the manifest records
    the device used and why. ``cuda`` without CUDA is an error, never a fallback.
    """

    hashed_when_set: ClassVar[frozenset[str]] = frozenset({"device", "local_steps"})

    epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=100_000)
    local_steps: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="optimiser steps per round, each on a fresh minibatch of batch_size rows "
        "drawn without replacement from the client's shard by its own seeded stream (the whole "
        "shard when it is smaller), in place of epochs: distributed SGD's one minibatch per "
        "worker and iteration (Baruch et al. 2019) at 1; None trains whole epochs; not with "
        "DP-SGD (its accountant assumes Poisson-sampled epochs) nor with a behaviour or effort "
        "knob that changes the local epochs",
    )
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainingConfig:
        # local_steps replaces epochs: an epoch count given beside it would be ignored.
        # (By value, not by model_fields_set: a dumped and re-validated config, as the
        # Flower apps and study workers receive it, has every field set.)
        if self.local_steps is not None and self.epochs != 1:
            raise ValueError(
                f"training.epochs ({self.epochs}) cannot be honoured with training.local_steps "
                f"({self.local_steps}), which replaces epochs: drop one of them"
            )
        return self


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
    accountant: Literal["rdp", "pld"] = Field(
        "rdp",
        description="accountant of the recorded ε and the budget check: rdp (Opacus' RDP, "
        "re-derived by dp-accounting) or pld (dp-accounting's PLD, tighter); see docs/privacy.md",
    )
    publish_train_metrics: bool = Field(
        False,
        description="send and publish clients' unnoised train loss/accuracy on their private "
        "batches; they are then outside the DP guarantee (listed in the manifest)",
    )

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPSGDPrivacy:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier or target_epsilon")
        return self


Privacy = Annotated[NoPrivacy | DPSGDPrivacy, Field(discriminator="mode")]


class AggregationConfig(StrictModel):
    """Server-side aggregation: a Flower strategy by name."""

    hashed_when_set: ClassVar[frozenset[str]] = frozenset({"server_momentum"})

    strategy: str = "fedavg"
    max_update_norm: float = Field(
        1e4, gt=0.0, description="updates farther than this (L2) from the global model are rejected"
    )
    client_dp: dict[str, float | int | str] | None = Field(
        None,
        description="user-level DP-FedAvg (McMahan et al. 2018): {mode: dp-fedavg,"
        " noise_multiplier σ, clipping_norm C, delta}; replaces the server step of fedavg or"
        " fedprox with the unweighted mean over the m sampled clients plus N(0, (σC/m)²)",
    )
    flag_below: float = Field(
        0.05, ge=0.0, le=1.0, description="a robust aggregator's weight below this flags a client"
    )
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    server_momentum: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="β of a heavy-ball server step after the strategy (FedAvgM's, server lr 1):"
        " v = β·v + (w_agg − w_global), w = w_global + v; 0: none",
    )


class RewardsConfig(StrictModel):
    """Token emission and the incentive mechanism that splits it."""

    hashed_when_set: ClassVar[frozenset[str]] = frozenset({"revenue_share"})

    mechanism: str = "data_size"
    emission_per_round: float = Field(100.0, ge=0.0, description="tokens minted per round")
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    revenue_share: Literal["equal", "data_size", "score", "reputation"] | None = Field(
        None,
        description="the rule whose weights set a version's contributor shares, which split "
        "its licence revenue; null: the rewards mechanism's own rule (required for royalties)",
    )


class LicenseTermsConfig(StrictModel):
    """One license type of every model version's price list."""

    price: float = Field(ge=0.0, description="tokens")
    duration_s: float | None = Field(None, gt=0.0, description="validity on the simulated clock")
    max_uses: int | None = Field(None, ge=1)


class MarketBehaviourConfig(StrictModel):
    """A market process on the simpy clock (buyers, voters, cabals, ...)."""

    behaviour: str
    params: dict[str, Any] = Field(default_factory=dict)


class RatingRuleConfig(StrictModel):
    """A rating rule with parameters (a bare name in ``market.rating_rule`` takes none)."""

    name: str
    params: dict[str, float] = Field(default_factory=dict)


class MarketParamsConfig(StrictModel):
    """The ledger's own rules, fixed at genesis and signed in its first entry
    (``marketplace.state.Params``), so the ledger states the rules it ran under.
    Money is in tokens, like every money field; the ledger stores base units.
    The defaults are the ledger's."""

    unstake_delay: float = Field(
        3600.0, ge=0.0, description="simulated seconds from unstake to the earliest withdraw"
    )
    min_stake: float = Field(
        0.0, ge=0.0, description="tokens a contributor must have staked to record a contribution"
    )
    platform_fee_bps: int = Field(
        500, ge=0, le=10_000, description="platform fee on licence revenue, basis points"
    )
    vote_min_stake: float = Field(0.0, ge=0.0, description="tokens a voter must have staked")
    vote_min_reputation: float = Field(0.0, ge=0.0, description="reputation a voter must have")
    vote_earn_min_stake: float = Field(
        0.0, ge=0.0, description="tokens a voter must have staked for its votes to earn reputation"
    )
    max_supply: float | None = Field(
        None, gt=0.0, description="cap on minted minus burned tokens; null: uncapped"
    )
    emission_per_round: float | None = Field(
        None, ge=0.0, description="the ledger's cap on one round's reward emission, tokens"
    )
    halving_rounds: int | None = Field(
        None, ge=1, description="emission halves every this many rounds; null: flat"
    )
    reputation_half_life: float = Field(
        86400.0, gt=0.0, description="simulated seconds for a reputation gain to decay by half"
    )


class MarketConfig(StrictModel):
    """Participation economics on the ledger, and the market's own processes."""

    hashed_when_set: ClassVar[frozenset[str]] = frozenset({"params", "compute_cost_per_example"})

    behaviours: tuple[MarketBehaviourConfig, ...] = ()
    prices: dict[str, LicenseTermsConfig] | None = Field(
        None,
        description="fixed price list of every version; unset: each version is priced at "
        "demand_price_share of the buyers' willingness to pay for its measured accuracy "
        "(simulation.config.prices.DemandPricing)",
    )
    demand_price_share: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="share of the buyers' willingness to pay the default prices ask",
    )
    allow_no_sales: bool = Field(
        False,
        description="accept a price list no buyer can ever afford (otherwise a scenario error)",
    )
    buyer_budget: float = Field(100.0, ge=0.0, description="tokens each new buyer brings")
    rating_rule: str | RatingRuleConfig = Field(
        "mean",
        description="how votes aggregate into a version's rating: a rule's name, or "
        "{name, params} (e.g. {name: yuma, params: {kappa: 0.6}})",
    )

    initial_grant: float = Field(10.0, ge=0.0, description="tokens granted to each new client")
    stake: float = Field(5.0, ge=0.0, description="tokens a client stakes to join")
    compute_cost_per_round: float = Field(
        0.0, ge=0.0, description="a participant's cost (tokens) of training one round"
    )
    compute_cost_per_example: float = Field(
        0.0,
        ge=0.0,
        description="a participant's cost (tokens) per example trained (rows × local epochs)",
    )
    price_per_epsilon: float = Field(
        0.0, ge=0.0, description="a participant's cost (tokens) per unit of ε spent"
    )
    block: Literal["round"] = "round"
    params: MarketParamsConfig = Field(
        default_factory=MarketParamsConfig,
        description="the ledger's rules, signed into its genesis entry",
    )

    @property
    def rating_rule_name(self) -> str:
        """The rating rule's registry name."""
        return self.rating_rule if isinstance(self.rating_rule, str) else self.rating_rule.name

    @property
    def rating_rule_params(self) -> dict[str, float]:
        """The rating rule's parameters (``{}`` for a bare name)."""
        return {} if isinstance(self.rating_rule, str) else dict(self.rating_rule.params)


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
    """Flower Simulation Engine resources (Ray backend).

    ``client_gpus`` is Flower's per-client GPU share (``client_resources.num_gpus``):
    0.25 runs four clients per GPU at a time.
    """

    hashed_when_set: ClassVar[frozenset[str]] = frozenset({"client_gpus", "round_timeout_s"})

    backend: Literal["ray"] = "ray"
    num_cpus: int | None = Field(None, ge=1, description="CPUs given to Ray (default: all)")
    client_cpus: float = Field(1.0, gt=0.0)
    client_gpus: float = Field(0.0, ge=0.0, le=64.0, description="GPU share per client")
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

    There is no rounding: ``fraction`` times ``clients.count`` must be a whole
    number of clients (0.3 of 10 is 3; 0.54 of 10 is an error that suggests
    ``count: 5`` or ``count: 6``), so the fractions a study reports are the
    fractions that ran.
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
        """Number of members among ``num_clients`` clients (a fraction is exact once
        :meth:`Scenario.semantic_problems` accepted it)."""
        if self.clients is not None:
            return len(self.clients)
        if self.count is not None:
            return self.count
        assert self.fraction is not None
        return max(1, round(self.fraction * num_clients))

    @property
    def is_attacker(self) -> bool:
        """Ground truth: does this group attack? A Sybil group does (one owner farming
        rewards and votes through several identities), whatever its training behaviour."""
        if self.attacker is not None:
            return self.attacker
        return self.behaviour != "honest" or self.sybil is not None


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


MAX_REFERENCE_PERMUTATIONS = 100_000
"""Upper bound of ``contribution.reference_max_permutations``: 50× the default, about
a million utility evaluations per round at 12 clients, beyond any budget a run has."""


class ContributionConfig(StrictModel):
    """Server-side contribution evaluation on the validation split, each round.

    ``evaluator`` scores the round's accepted updates (fed to score-based
    mechanisms and to reputation); ``reference`` is the ground-truth measure
    the attack metrics compare rewards against: the Shapley value under the
    configured aggregator's own coalition models, exact up to
    ``exact_max_clients`` accepted updates, Monte Carlo permutation sampling
    with standard errors above (never an estimator under test; see
    docs/contribution.md).
    """

    hashed_when_set: ClassVar[frozenset[str]] = frozenset(
        {"on_imprecise", "reference_max_permutations"}
    )

    evaluator: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    reference: bool = False
    exact_max_clients: int = Field(12, ge=1, le=16)
    on_imprecise: Literal["error", "record"] = Field(
        "error",
        description="when the Monte Carlo reference (above exact_max_clients) stops at its "
        "permutation cap (reference_max_permutations) with a standard error above its "
        "target: error (stop the run, naming the round) or record (keep it; rounds.parquet "
        "reference_se_ratio > 1, manifest reference.imprecise_rounds)",
    )
    reference_max_permutations: int = Field(
        REFERENCE_MAX_PERMUTATIONS,
        ge=REFERENCE_MIN_PERMUTATIONS,
        le=MAX_REFERENCE_PERMUTATIONS,
        description="the most permutations the Monte Carlo reference draws in a round before "
        "it stops short of its standard-error target (5 % of the mean per-client gain); "
        "each costs up to one utility evaluation per client; at least "
        f"{REFERENCE_MIN_PERMUTATIONS} (the fewest it estimates a standard error from), at "
        f"most {MAX_REFERENCE_PERMUTATIONS:,}",
    )

    @model_validator(mode="after")
    def _cap_needs_the_reference(self) -> ContributionConfig:
        # A cap on a reference that never runs would do nothing yet rename the scenario.
        # By value: a dumped and re-validated config has every field set.
        if not self.reference and self.reference_max_permutations != REFERENCE_MAX_PERMUTATIONS:
            raise ValueError(
                "contribution.reference_max_permutations caps the Monte Carlo reference, "
                "which runs only with contribution.reference: true"
            )
        return self


DEFAULT_LICENSE = "apache-2.0"
"""Licence of an exported model card when the scenario names none (``output.license``)."""
VERSIONS_DIR = "versions"
"""Where ``output.keep_versions`` keeps each version's weights (``vNNNN.safetensors``)."""


class OutputConfig(StrictModel):
    """What a run writes."""

    save_model: bool = True
    csv: bool = True
    baseline: bool = Field(
        False, description="also run the no-attack baseline (same seed) for accuracy drop"
    )
    keep_versions: bool = Field(
        False,
        description="also write every version's weights to versions/vNNNN.safetensors "
        "(so `fedmarket export-hf --version vNNNN` works for any version)",
    )
    license: str = Field(
        DEFAULT_LICENSE,
        pattern=r"^[a-z0-9][a-z0-9.+-]*$",
        max_length=64,
        description="licence id of exported models (a Hugging Face Hub licence identifier, "
        f"e.g. mit, cc-by-4.0, other); default {DEFAULT_LICENSE}",
    )


class Scenario(StrictModel):
    """A whole experiment: the root of a scenario file."""

    schema_version: Literal[2] = SCHEMA_VERSION
    name: str = Field("scenario", min_length=1, max_length=200)
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    dataset: Dataset = Field(default_factory=DatasetConfig)
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
    def _cross_field(self, info: ValidationInfo) -> Scenario:
        if info.context is not None and info.context.get("semantic") is False:
            return self
        problems = self.semantic_problems()
        if problems:
            raise ValidationError.from_exception_data(
                "Scenario",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("semantic", "{reason}", {"reason": reason}),
                        loc=(field,),
                        input=None,
                    )
                    for field, reason in problems
                ],
            )
        return self

    @field_validator("schema_version", mode="before")
    @classmethod
    def _migrate(cls, value: Any) -> Any:
        if value == 1 and not isinstance(value, bool):
            raise PydanticCustomError("schema_version", MIGRATE_FROM_1)
        return value

    def semantic_problems(self) -> list[tuple[str, str]]:
        """Every cross-field problem as ``(dotted field, reason)``, all of them at once:
        combinations the sections allow alone but not together, and every client,
        group and round the scenario names that does not exist."""
        return [
            *_combination_problems(self),
            *_fault_problems(self),
            *_population_problems(self),
            *_timeline_problems(self),
        ]

    def resolved(self) -> dict[str, Any]:
        """The fully resolved scenario as plain JSON-able data."""
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Hash of the resolved scenario's canonical JSON: names the experiment on the ledger.

        Fields a section lists in ``hashed_when_set`` count only once they differ
        from their default (see :class:`StrictModel`).
        """
        blob = json.dumps(_hash_view(self, self.resolved()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _hash_view(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (``model`` dumped) without the late fields that hold their default."""
    late = getattr(model, "hashed_when_set", frozenset())
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if name in late and value == info.get_default(call_default_factory=True):
            del data[name]
        elif isinstance(value, BaseModel):
            _hash_view(value, data[name])
        elif isinstance(value, tuple):
            for item, dumped in zip(value, data[name], strict=True):
                if isinstance(item, BaseModel):
                    _hash_view(item, dumped)
    return data


def _check_model_fits_data(model: ModelConfig, dataset: str) -> None:
    """Image models need images (big enough), the character LSTM needs text."""
    data = facts(dataset)
    if model.name in IMAGE_MODELS:
        if data.kind != "image":
            images = ", ".join(sorted(n for n, f in DATASETS.items() if f.kind == "image"))
            raise ValueError(f"model.name: {model.name} needs an image dataset ({images})")
        side = _MIN_SIDE.get(model.name, 0)
        if data.image_side < side:
            raise ValueError(
                f"model.name: {model.name} needs images of at least {side}×{side} "
                f"({dataset} has {data.image_side}×{data.image_side})"
            )
    if model.name in TEXT_MODELS and data.kind != "text":
        raise ValueError(f"model.name: {model.name} needs a text dataset (shakespeare)")
    if data.kind == "text" and model.name not in TEXT_MODELS:
        raise ValueError(
            f"model.name: {dataset} is next-character prediction; use " + " or ".join(TEXT_MODELS)
        )


def _check_partition_fits(partition: Any, dataset: str, clients: int) -> None:
    """Natural partitions need natural ids; explicit sizes need one per client."""
    data = facts(dataset)
    if partition.kind in NATURAL_KINDS and data.natural_id is None:
        natural = ", ".join(sorted(n for n, f in DATASETS.items() if f.natural_id))
        raise ValueError(f"partition.kind: {partition.kind} needs natural client ids ({natural})")
    if partition.kind == "continuous" and partition.by not in data.numeric_columns:
        raise ValueError(
            f"partition.by: {dataset} has no numeric column {partition.by!r} "
            f"(valid: {', '.join(data.numeric_columns)})"
        )
    sizes = getattr(partition, "sizes", None)
    if sizes is not None and len(sizes) != clients:
        raise ValueError(
            f"partition.sizes: {len(sizes)} sizes for {clients} clients (clients.count)"
        )


def _check_device(training: TrainingConfig, resources: ResourcesConfig) -> None:
    """A GPU share only for clients that may train on CUDA, and CUDA only with one."""
    if training.device == "cpu" and resources.client_gpus > 0:
        raise ValueError("resources.client_gpus: a GPU share for clients that train on cpu")
    if training.device == "cuda" and resources.client_gpus == 0:
        raise ValueError(
            "training.device: cuda needs a GPU share per client (resources.client_gpus, "
            "e.g. 0.25 for four clients per GPU)"
        )


# ------------------------------------------------------------- semantic checks


def _clients_text(n: int) -> str:
    return f"clients.count is {n}: clients 0..{n - 1}"


def _round_problem(field: str, value: int | None, rounds: int) -> list[tuple[str, str]]:
    if value is not None and value > rounds:
        return [(field, f"round {value} is after the last round (rounds: {rounds})")]
    return []


def _combination_problems(sc: Scenario) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    checks = (
        lambda: _check_model_fits_data(sc.model, sc.dataset.name),
        lambda: _check_partition_fits(sc.partition, sc.dataset.name, sc.clients.count),
        lambda: _check_device(sc.training, sc.resources),
    )
    for check in checks:
        try:
            check()
        except ValueError as exc:  # "field: reason"
            field, _, reason = str(exc).partition(": ")
            out.append((field, reason))
    out += _emission_problems(sc)
    out += _revenue_problems(sc)
    out += _score_problems(sc)
    if sc.clients.min_per_round > sc.clients.count:
        out.append(
            (
                "clients.min_per_round",
                f"{sc.clients.min_per_round} is larger than clients.count ({sc.clients.count})",
            )
        )
    return out


def _emission_problems(sc: Scenario) -> list[tuple[str, str]]:
    """The rewards' emission must fit the ledger's rules, or every reward would be refused."""
    p, emission = sc.market.params, sc.rewards.emission_per_round
    out: list[tuple[str, str]] = []
    if p.emission_per_round is not None and emission > p.emission_per_round:
        out.append(
            (
                "rewards.emission_per_round",
                f"{emission:g} tokens a round exceeds the ledger's cap "
                f"market.params.emission_per_round ({p.emission_per_round:g} tokens)",
            )
        )
    if p.max_supply is not None:
        grants = sc.clients.count * sc.market.initial_grant
        minted = grants + sum(emission_schedule(emission, p.halving_rounds, sc.rounds))
        if minted > p.max_supply:
            out.append(
                (
                    "market.params.max_supply",
                    f"{p.max_supply:g} tokens is less than the run mints: {grants:g} in "
                    f"initial grants and {minted - grants:g} in emission over {sc.rounds} rounds",
                )
            )
    return out


def _revenue_problems(sc: Scenario) -> list[tuple[str, str]]:
    """Licence revenue needs a share rule, and royalties' fee is the ledger's."""
    rewards, fee = sc.rewards, sc.market.params.platform_fee_bps
    if rewards.mechanism != "royalties":
        return []
    out: list[tuple[str, str]] = []
    if rewards.revenue_share is None:
        out.append(
            (
                "rewards.revenue_share",
                "royalties pay licence revenue by a version's contributor shares; name the "
                "rule that sets them (equal, data_size, score or reputation)",
            )
        )
    own = rewards.params.get("platform_fee_bps", fee)
    if own != fee:
        out.append(
            (
                "rewards.params.platform_fee_bps",
                f"{own} differs from the ledger's fee market.params.platform_fee_bps ({fee}); "
                "set the fee there, where the genesis entry states it",
            )
        )
    if rewards.params.get("treasury", "treasury") != "treasury":
        out.append(("rewards.params.treasury", "the ledger's fee account is 'treasury'"))
    return out


def _score_problems(sc: Scenario) -> list[tuple[str, str]]:
    """A rule that pays by contribution scores needs an evaluator that produces them;
    without one every accepted contribution is unscored and the run would fail at its
    first settlement (or pay nobody)."""
    if sc.contribution.evaluator is not None:
        return []
    rewards = sc.rewards
    uses = [
        (field, "score")
        for field, value in (
            ("rewards.mechanism", rewards.mechanism),
            ("rewards.params.base", rewards.params.get("base")),
            ("rewards.revenue_share", rewards.revenue_share),
        )
        if value == "score"
    ]
    return [
        (
            field,
            f"{name} pays by contribution scores, but contribution.evaluator is not set: "
            "name one (loo, exact_shapley, tmc_shapley, gtg_shapley, cosine, cgsv)",
        )
        for field, name in uses
    ]


def emission_schedule(per_round: float, halving_rounds: int | None, rounds: int) -> list[float]:
    """Tokens emitted in rounds 1..``rounds``: ``per_round``, halved every
    ``halving_rounds`` rounds (the ledger's schedule, ``Params.emission``)."""
    return [
        per_round / 2 ** (r // halving_rounds if halving_rounds else 0)
        for r in range(1, rounds + 1)
    ]


def _fault_problems(sc: Scenario) -> list[tuple[str, str]]:
    n, out = sc.clients.count, []
    for i, fault in enumerate(sc.faults):
        if fault.client >= n:
            out.append(
                (f"faults.{i}.client", f"client {fault.client} does not exist ({_clients_text(n)})")
            )
        for r in fault.rounds or ():
            if not 1 <= r <= sc.rounds:
                out.append((f"faults.{i}.rounds", f"round {r} is outside the run (1..{sc.rounds})"))
    return out


def _fraction_problem(i: int, fraction: float, n: int) -> list[tuple[str, str]]:
    exact = fraction * n
    if abs(exact - round(exact)) <= 1e-9 * max(1.0, exact):
        return []
    low, high = int(exact), int(exact) + 1
    options = f"count: {low} or count: {high}" if low >= 1 else f"count: {high}"
    return [
        (
            f"population.{i}.fraction",
            f"{fraction:g} of {n} clients is {exact:g} clients, not a whole number; give {options}",
        )
    ]


def _population_problems(sc: Scenario) -> list[tuple[str, str]]:
    n, out = sc.clients.count, []
    names: dict[str, int] = {}
    owner: dict[int, str] = {}
    members = 0
    for i, g in enumerate(sc.population):
        if g.group in names:
            out.append((f"population.{i}.group", f"duplicate group name {g.group!r}"))
        names.setdefault(g.group, i)
        if g.fraction is not None:
            out += _fraction_problem(i, g.fraction, n)
        for c in g.clients or ():
            if c >= n:
                out.append(
                    (f"population.{i}.clients", f"client {c} does not exist ({_clients_text(n)})")
                )
            elif c in owner:
                out.append((f"population.{i}.clients", f"client {c} is also in group {owner[c]!r}"))
            owner.setdefault(c, g.group)
        members += g.size(n)
    if members > n:
        out.append(("population", f"groups hold {members} clients but clients.count is {n}"))
    return out


def _timeline_problems(sc: Scenario) -> list[tuple[str, str]]:
    groups = [g.group for g in sc.population]
    valid = f"groups: {', '.join(groups)}" if groups else "the scenario has no population groups"
    out: list[tuple[str, str]] = []
    for i, event in enumerate(sc.timeline):
        group = getattr(event, "group", None)
        if group is not None and group not in groups:
            out.append((f"timeline.{i}.group", f"no population group {group!r} ({valid})"))
        if isinstance(event, _Window):
            out += _round_problem(f"timeline.{i}.start_round", event.start_round, sc.rounds)
            out += _round_problem(f"timeline.{i}.stop_round", event.stop_round, sc.rounds)
        else:
            out += _round_problem(f"timeline.{i}.round", event.round, sc.rounds)
    return out
