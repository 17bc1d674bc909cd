"""Server-side coalition attacks: rewrites of colluders' submissions after replies arrive.

Some attacks need what a single ClientApp cannot see: other clients' updates (update
copying), the colluders' shared statistics ("A Little Is Enough"), the member's own earlier
submissions (stale replay) or a Sybil owner's one update fanned out to its identities. The
simulation applies them on the server after the round's replies arrive and before
validation and aggregation, from ground truth the mechanisms never see
(docs/ARCHITECTURE.md, "Contract: training behaviours").

``CoalitionAttack.apply`` is the template (validate, rewrite members, pass everyone else
through untouched); subclasses implement ``rewrite``. Members run an ordinary training
behaviour on their ClientApp (usually ``honest``; ``free_rider`` for copying, which needs no
training) and the attack replaces what they sent.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from agents._params import BaseParams, validate_params
from agents._registry import Registry
from agents._weights import Weights, check_pair, copy_weights, gaussian_like, is_float
from agents.sybil import SybilGroup

__all__ = [
    "COALITION_ATTACKS",
    "ALIEAttack",
    "ALIEParams",
    "CoalitionAttack",
    "StaleReplayAttack",
    "StaleReplayParams",
    "SybilDuplicateAttack",
    "SybilDuplicateParams",
    "UpdateCopyingAttack",
    "UpdateCopyingParams",
    "alie_z_max",
    "attack_from_config",
    "attack_to_config",
    "create_coalition_attack",
]

logger = logging.getLogger("fedmarket.agents")

Submissions = Mapping[str, Sequence[np.ndarray]]


def _distinct_members(members: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(members)) != len(members):
        raise ValueError(f"members must be distinct, got {list(members)}")
    if any(not m for m in members):
        raise ValueError("members must be non-empty strings")
    return members


class CoalitionAttack(ABC):
    """A rewrite of the coalition members' submissions in one round.

    Subclasses set ``name`` and ``Params`` and implement ``members`` and ``rewrite``.
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseParams]]
    #: Do members train while the attack is on? ``False``: the simulation gives them a
    #: non-training behaviour (no compute, no training time) and the attack supplies
    #: their whole submission.
    members_train: ClassVar[bool] = True

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

    @property
    @abstractmethod
    def members(self) -> frozenset[str]:
        """The client ids whose submissions this attack may rewrite."""

    @abstractmethod
    def rewrite(
        self,
        round: int,
        present: tuple[str, ...],
        submissions: Submissions,
        global_weights: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, Weights]:
        """Return new weights for (a subset of) ``present``, the members that replied.

        ``submissions`` holds every reply of the round, members' as they were sent.
        """

    def see_round(self, round: int, global_weights: Sequence[np.ndarray]) -> None:  # noqa: B027
        """Called every round the attack is in force, before ``rewrite`` (and also when no
        member replied): attacks that need the history of the global model keep it here.
        A no-op by default."""

    def apply(
        self,
        round: int,
        submissions: Submissions,
        global_weights: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, list[np.ndarray]]:
        """Return every submission, members' rewritten; non-members' arrays are passed as-is.

        Raises:
            ValueError: ``round < 1`` or a submission whose arrays do not match the global
                model's.
        """
        if round < 1:
            raise ValueError(f"round must be >= 1, got {round}")
        for client, weights in submissions.items():
            try:
                check_pair(global_weights, weights)
            except ValueError as exc:
                raise ValueError(f"submission of {client}: {exc}") from None
        self.see_round(round, global_weights)
        present = tuple(sorted(c for c in submissions if c in self.members))
        out: dict[str, list[np.ndarray]] = {c: list(w) for c, w in submissions.items()}
        if not present:
            return out
        rewritten = self.rewrite(round, present, submissions, global_weights, rng)
        unknown = set(rewritten) - set(present)
        if unknown:
            raise RuntimeError(f"{self.name} rewrote non-members {sorted(unknown)}")
        out.update(rewritten)
        logger.debug("%s rewrote %s in round %d", self.name, sorted(rewritten), round)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


# -- stale replay --------------------------------------------------------------------------


class StaleReplayParams(BaseParams):
    """Parameters of ``stale_replay``.

    Attributes:
        members: the replaying clients.
        lag: how many rounds back the replayed global-model difference reaches.
    """

    members: tuple[str, ...] = Field(min_length=1)
    lag: int = Field(default=1, ge=1)

    _check_members = field_validator("members")(_distinct_members)


class StaleReplayAttack(CoalitionAttack):
    """Lin et al. 2019's "delta weights" free-rider ("Free-riders in federated learning:
    attacks and defenses"): a member trains nothing and submits the global model moved
    by the global model's own recent change, ``w_g^t + (w_g^t − w_g^{t−lag})``, which
    looks like a plausible, fresh update. Until ``lag`` earlier global models exist it
    submits ``w_g^t`` unchanged (the plain free-rider's zero update).

    The attack keeps the global model of every round it saw (at most ``lag + 1``).
    """

    name: ClassVar[str] = "stale_replay"
    Params: ClassVar[type[StaleReplayParams]] = StaleReplayParams
    members_train: ClassVar[bool] = False
    params: StaleReplayParams

    def __init__(self, params: StaleReplayParams | None = None) -> None:
        super().__init__(params)
        self._globals: list[tuple[int, Weights]] = []  # (round, global weights), increasing

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self.params.members)

    def see_round(self, round: int, global_weights: Sequence[np.ndarray]) -> None:
        if self._globals and self._globals[-1][0] >= round:
            raise ValueError(f"stale_replay: round {round} after round {self._globals[-1][0]}")
        self._globals.append((round, copy_weights(global_weights)))
        del self._globals[: max(0, len(self._globals) - (self.params.lag + 1))]

    def lagged(self, round: int) -> Weights | None:
        """The global model of round ``round − lag``, if the attack saw it."""
        old = [w for r, w in self._globals if r == round - self.params.lag]
        return old[0] if old else None

    def rewrite(
        self,
        round: int,
        present: tuple[str, ...],
        submissions: Submissions,
        global_weights: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, Weights]:
        old = self.lagged(round)
        out: dict[str, Weights] = {}
        for member in present:
            if old is None:
                out[member] = copy_weights(global_weights)
                continue
            out[member] = [
                (g + (g - o)).astype(g.dtype, copy=False) if is_float(g) else np.array(g)
                for g, o in zip(global_weights, old, strict=True)
            ]
        return out


# -- update copying ------------------------------------------------------------------------


class UpdateCopyingParams(BaseParams):
    """Parameters of ``update_copying``: the copying clients."""

    members: tuple[str, ...] = Field(min_length=1)

    _check_members = field_validator("members")(_distinct_members)


class UpdateCopyingAttack(CoalitionAttack):
    """Each member submits a copy of a non-member's update from this round.

    The victim is drawn per member (members in sorted order) with ``rng.integers`` from the
    sorted ids of the non-members that replied, so a seed fixes it. With no non-member
    reply the members' own submissions pass through.
    """

    name: ClassVar[str] = "update_copying"
    Params: ClassVar[type[UpdateCopyingParams]] = UpdateCopyingParams
    members_train: ClassVar[bool] = False
    params: UpdateCopyingParams

    def __init__(self, params: UpdateCopyingParams | None = None) -> None:
        super().__init__(params)
        self.last_victims: dict[str, str] = {}

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self.params.members)

    def rewrite(
        self,
        round: int,
        present: tuple[str, ...],
        submissions: Submissions,
        global_weights: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, Weights]:
        victims = sorted(c for c in submissions if c not in self.members)
        self.last_victims = {}
        if not victims:
            logger.debug("update_copying: no non-member replied in round %d", round)
            return {}
        out: dict[str, Weights] = {}
        for member in present:
            victim = victims[int(rng.integers(len(victims)))]
            self.last_victims[member] = victim
            out[member] = copy_weights(submissions[victim])
        return out


# -- A Little Is Enough --------------------------------------------------------------------


def alie_z_max(num_clients: int, num_attackers: int) -> float:
    """``z_max = Φ⁻¹((n − s)/n)`` with ``s = ⌊n/2 + 1⌋ − m`` (Baruch et al. 2019, §4).

    ``s`` is the number of honest clients the attackers must "win over" for a majority;
    ``z_max`` is how many standard deviations the crafted update may sit from the mean while
    still looking closer to the median than ``s`` honest ones. E.g. ``n = 10, m = 2``:
    ``s = 4``, ``Φ⁻¹(0.6) ≈ 0.2533``.

    Raises:
        ValueError: unless ``1 <= m`` and ``s >= 1`` (i.e. ``m <= n // 2``).
    """
    n, m = num_clients, num_attackers
    if m < 1 or n <= m:
        raise ValueError(f"need 1 <= num_attackers < num_clients, got n={n}, m={m}")
    s = math.floor(n / 2 + 1) - m
    if s < 1:
        raise ValueError(f"ALIE needs s = floor(n/2 + 1) - m >= 1, got s={s} for n={n}, m={m}")
    return NormalDist().inv_cdf((n - s) / n)


class ALIEParams(BaseParams):
    """Parameters of ``alie``.

    Attributes:
        members: the colluders.
        num_clients: ``n``, the participants per round. The simulation sets it to the
            expected number of clients sampled per round, fixed for the run, as in the
            paper's setting; ``None`` falls back to the number of replies.
        num_attackers: ``m``, the colluders per round (the simulation: the expected
            number among those sampled); ``None`` falls back to the colluders that replied.
        z: override ``z_max``; ``None`` computes it with ``alie_z_max(n, m)``.
    """

    members: tuple[str, ...] = Field(min_length=1)
    num_clients: int | None = Field(default=None, ge=2)
    num_attackers: int | None = Field(default=None, ge=1)
    z: float | None = None

    @model_validator(mode="after")
    def _feasible(self) -> ALIEParams:
        if self.z is None and self.num_clients is not None and self.num_attackers is not None:
            alie_z_max(self.num_clients, self.num_attackers)  # raises when s < 1
        return self

    _check_members = field_validator("members")(_distinct_members)


class ALIEAttack(CoalitionAttack):
    """The "A Little Is Enough" attack (Baruch, Baruch & Goldberg, NeurIPS 2019).

    The paper's workers send gradients, and the colluders all send ``μ_g − z·σ_g``: the
    coordinate-wise mean and population standard deviation (``ddof=0``) of their own honest
    gradients, shifted by ``z`` deviations (the authors' ``DriftAttack``, in
    moranant/attacking_distributed_learning). Ours send weights, whose step from the
    global model ``Δ_i = w_i − w_g`` is ``−η·g_i`` after one SGD step, so the same crafted
    gradient is the step ``μ − (−z)·σ`` of the deltas: every colluder submits
    ``w_g + μ + z·σ`` with ``μ``, ``σ`` over their deltas. Subtracting ``z·σ`` from the
    *deltas* would add it to the gradient, the opposite attack (tested against the
    authors' code in tests/agents/test_reference_alie.py). Small enough per coordinate
    to pass Krum, the median and Bulyan, consistent enough to steer the aggregate.
    """

    name: ClassVar[str] = "alie"
    Params: ClassVar[type[ALIEParams]] = ALIEParams
    params: ALIEParams

    def __init__(self, params: ALIEParams | None = None) -> None:
        super().__init__(params)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(self.params.members)

    def z_for(self, num_replies: int, num_present: int) -> float:
        """The ``z`` used in a round with ``num_replies`` replies, ``num_present`` colluders."""
        p = self.params
        if p.z is not None:
            return p.z
        n = p.num_clients if p.num_clients is not None else num_replies
        m = p.num_attackers if p.num_attackers is not None else num_present
        return alie_z_max(n, m)

    def rewrite(
        self,
        round: int,
        present: tuple[str, ...],
        submissions: Submissions,
        global_weights: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, Weights]:
        z = self.z_for(len(submissions), len(present))
        crafted: list[np.ndarray | None] = []
        for i, g in enumerate(global_weights):
            if not is_float(g):
                crafted.append(None)
                continue
            g64 = g.astype(np.float64)
            deltas = np.stack([submissions[m][i].astype(np.float64) - g64 for m in present])
            mu = deltas.mean(axis=0)
            sigma = deltas.std(axis=0)
            crafted.append((g64 + mu + z * sigma).astype(g.dtype))  # gradient mu - z*sigma
        return {
            m: [
                np.array(c, copy=True) if c is not None else np.array(own, copy=True)
                for c, own in zip(crafted, submissions[m], strict=True)
            ]
            for m in present
        }


# -- Sybil duplicate -----------------------------------------------------------------------


class SybilDuplicateParams(BaseParams):
    """Parameters of ``sybil_duplicate``.

    Attributes:
        groups: the Sybil groups; identities must not overlap across groups.
        noise_std: std of Gaussian noise added to each copy (0 submits exact copies).
    """

    groups: tuple[SybilGroup, ...] = Field(min_length=1)
    noise_std: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _disjoint(self) -> SybilDuplicateParams:
        seen: set[str] = set()
        for group in self.groups:
            overlap = seen.intersection(group.identities)
            if overlap:
                raise ValueError(f"identities in several groups: {sorted(overlap)}")
            seen.update(group.identities)
        return self


class SybilDuplicateAttack(CoalitionAttack):
    """Every identity of a group submits its source identity's update (Fung et al. 2020).

    The source is the group's first identity, in listed order, that replied this round; the
    other identities that replied get its weights, plus ``N(0, noise_std²)`` on float arrays
    if ``noise_std > 0`` (to slip past exact-duplicate filters).
    """

    name: ClassVar[str] = "sybil_duplicate"
    Params: ClassVar[type[SybilDuplicateParams]] = SybilDuplicateParams
    params: SybilDuplicateParams

    def __init__(self, params: SybilDuplicateParams | None = None) -> None:
        super().__init__(params)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(i for g in self.params.groups for i in g.identities)

    def rewrite(
        self,
        round: int,
        present: tuple[str, ...],
        submissions: Submissions,
        global_weights: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> dict[str, Weights]:
        out: dict[str, Weights] = {}
        std = self.params.noise_std
        for group in self.params.groups:
            replied = [i for i in group.identities if i in submissions]
            if len(replied) < 2:
                continue
            source = submissions[replied[0]]
            for identity in replied[1:]:
                out[identity] = [
                    s + gaussian_like(s, std, rng) if std > 0 and is_float(s) else np.array(s)
                    for s in source
                ]
        return out


# -- registry ------------------------------------------------------------------------------

COALITION_ATTACKS: Registry[type[CoalitionAttack]] = Registry("coalition attack")
for _cls in (StaleReplayAttack, UpdateCopyingAttack, ALIEAttack, SybilDuplicateAttack):
    COALITION_ATTACKS.register(_cls.name, _cls)
del _cls


def create_coalition_attack(
    name: str, params: Mapping[str, object] | BaseParams | None = None
) -> CoalitionAttack:
    """Build the coalition attack registered as ``name`` from JSON-able ``params``.

    Raises:
        ValueError: unknown ``name`` (listing valid names) or invalid ``params`` (naming the
            field).
    """
    cls = COALITION_ATTACKS.get_or_raise(name)
    validated = validate_params(cls.Params, params, what=f"coalition attack {name!r}")
    return cls(validated)


def attack_to_config(attack: CoalitionAttack) -> str:
    """Canonical JSON ``{"name": ..., "params": {...}}`` of an attack (state not included)."""
    return json.dumps(
        {"name": attack.name, "params": attack.params.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def attack_from_config(config: str) -> CoalitionAttack:
    """A fresh attack from ``attack_to_config``'s string; bad input raises ``ValueError``."""
    try:
        payload = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"attack config is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or set(payload) != {"name", "params"}:
        raise ValueError('attack config must be an object with exactly "name" and "params"')
    name, params = payload["name"], payload["params"]
    if not isinstance(name, str) or not isinstance(params, dict):
        raise ValueError('attack config: "name" must be a string and "params" an object')
    return create_coalition_attack(name, params)
