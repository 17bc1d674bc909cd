"""The state a round's stages share: the federation across rounds, the metric rows,
and one :class:`RoundContext` per round that each stage reads and extends."""

from __future__ import annotations

from dataclasses import dataclass, field

from marketplace.contribution import ContributionResult
from simulation.world.identities import IdentityBook
from simulation.world.records import MetricRow, Reply, RoundRecord, Weights

__all__ = ["Federation", "Recorder", "RoundContext", "Screened"]


@dataclass
class Federation:
    """What carries over from round to round: the global model, its last registered
    version, who may still take part, and who is who."""

    weights: Weights
    identities: IdentityBook
    active: set[int]
    version: str | None = None
    stopped: set[int] = field(default_factory=set)
    departed: set[int] = field(default_factory=set)

    def account(self, client: int) -> str:
        """The identity client slot ``client`` acts as now."""
        return self.identities.current(client)


@dataclass
class Recorder:
    """The run's long-form metric rows and per-round records (append-only)."""

    rows: list[MetricRow] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    version_weights: dict[str, bytes] = field(default_factory=dict)
    """Each version's safetensors bytes, kept only with ``output.keep_versions``."""

    def add(self, round_: int, client: str, metric: str, value: float) -> None:
        self.rows.append(MetricRow(round_, client, metric, float(value)))


@dataclass
class Screened:
    """One reply after the server's checks: its simulated time and, if it is
    rejected, why. ``epsilon`` is the identity's cumulative ε after this round's
    steps (``None`` without DP); ``epsilon_before`` before them. ``processed``:
    the examples it trained on, rows × local epochs, or ``training.local_steps`` ×
    min(batch size, rows) (0 if it did not train)."""

    reply: Reply
    account: str
    seconds: float = 0.0
    processed: int = 0
    reason: str | None = None
    epsilon: float | None = None
    epsilon_before: float = 0.0


@dataclass
class RoundContext:
    """Everything one round's stages produce, in pipeline order.

    Each stage reads what earlier stages wrote and adds its own fields; nothing
    else is shared between stages within a round.
    """

    round: int
    start: float
    """Simulated time at the start of the round."""
    wall_start: float
    eligible: int = 0
    """Clients the round sampled from (client-level DP accounts with ``sampled / eligible``)."""
    sampled: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    slowdowns: dict[int, float] = field(default_factory=dict)
    """Factor on a sampled client's training time this round (churn stragglers)."""
    replies: list[Reply] = field(default_factory=list)
    screened: list[Screened] = field(default_factory=list)
    accepted: list[Reply] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    stragglers: int = 0
    client_seconds: list[float] = field(default_factory=list)
    duration: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    aggregated: bool = False
    failure: str | None = None
    """Why aggregation produced no model (``None`` when it did, or has not run)."""
    test: dict[str, float] = field(default_factory=dict)
    """The new global model's test-split metrics (``accuracy``, ``loss``, ...)."""
    registry_metrics: dict[str, float] = field(default_factory=dict)
    """What the version is registered with (``simulation.fl.evaluation.registry_metrics``)."""
    backdoor_success: float = float("nan")
    client_epsilon: tuple[float, float] | None = None
    """Client-level DP: this round's ε alone and the run's cumulative ε (``None`` without)."""
    reference: ContributionResult | None = None
    """The round's reference contribution (``contribution.reference``), with its
    precision target and verdict when it was sampled (``None`` without)."""
    reference_se_ratio: float = float("nan")
    """Monte Carlo reference: largest standard error over its target (NaN without)."""
    issued: int = 0
    royalties: float = 0.0

    @property
    def asked(self) -> list[int]:
        """Sampled clients that did not drop out."""
        dropped = set(self.dropped)
        return [c for c in self.sampled if c not in dropped]
