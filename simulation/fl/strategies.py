"""Robust aggregation and client-level DP on Flower's message-based Strategy API.

Strategies here subclass :class:`flwr.serverapp.strategy.FedAvg` and override
``aggregate_train(server_round, replies)``, the only hook FedMarket's world
calls (it owns the round loop). Both robust rules need the *current global
model* to turn the clients' weights into updates, so they implement the
:class:`NeedsGlobal` mixin (its :meth:`~NeedsGlobal.prepare` hook):

* :class:`FoolsGold` — Fung, Yoon & Beschastnikh, "The Limitations of
  Federated Learning in Sybil Settings", RAID 2020 (Algorithm 1).
* :class:`FLTrust` — Cao, Fang, Liu & Gong, "FLTrust: Byzantine-robust
  Federated Learning via Trust Bootstrapping", NDSS 2021 (Algorithm 1).

Client-level DP is not here: Flower's server-side wrappers calibrate noise to
``C/m`` while the wrapped strategy weights by example count, and compute no ε, so
no scenario may use them; ``aggregation.client_dp`` is user-level DP-FedAvg with
its accountant (:mod:`simulation.fl.client_dp`).

How the world drives any strategy, each round (the world's ``Aggregate`` stage, and
:mod:`simulation.fl.coalition` on each hypothetical copy, the same way)::

    prepare_round(strategy, current_global_weights, Cohort(eligible, sampled))  # 1. first
    arrays, metrics = strategy.aggregate_train(round_, replies)                 # 2. then
    weights = getattr(strategy, "last_weights", {})                             # 3. optional

:func:`prepare_round` calls the strategy's ``prepare`` hook (:class:`PreparesRound`)
when it has one, and does nothing for Flower's own stateless rules: a strategy says
what it needs before aggregating by implementing the hook, never by its type.

``replies`` are the reply Messages ``World._aggregate`` builds (one per
client, sorted by client, ``metadata.src_node_id`` = client index, content
``{"arrays": ArrayRecord, "metrics": MetricRecord({"num-examples": n})}``).
:class:`FLTrust` also needs the server's root-dataset training: pass
``root_update=`` or call :meth:`FLTrust.set_root_update` once, before round 1.
``configure_train`` is never required; when a strategy is run by Flower's own
``Strategy.start()`` loop instead, ``configure_train`` records the global
model itself.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp.strategy import (
    FedAvg,
)
from flwr.serverapp.strategy import Krum as FlowerKrum
from flwr.serverapp.strategy import MultiKrum as FlowerMultiKrum
from flwr.serverapp.strategy.multikrum import select_multikrum
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from simulation.fl.weights import flatten, unflatten

log = logging.getLogger("fedmarket.strategies")

Weights = dict[str, np.ndarray]
RootUpdate = Callable[[int, Weights], Weights]

# The FedAvg-family settings every strategy gets (Flower's and ours): sampling is
# done by the world with the scenario's RNG, and the world never asks for
# federated evaluation.
FLOWER_BASE: dict[str, Any] = {
    "fraction_train": 1.0,
    "fraction_evaluate": 0.0,
    "min_train_nodes": 1,
    "min_evaluate_nodes": 0,
    "min_available_nodes": 1,
}

__all__ = [
    "FLOWER_BASE",
    "ClientPrivate",
    "Cohort",
    "FLTrust",
    "FoolsGold",
    "Krum",
    "MultiKrum",
    "NeedsGlobal",
    "PreparesRound",
    "ServerMomentum",
    "prepare_round",
]


# --------------------------------------------------------------------- helpers


def _to_numpy(record: ArrayRecord) -> Weights:
    """``ArrayRecord`` → ``{name: ndarray}``, keeping the record's key order."""
    return {k: np.asarray(v.numpy()) for k, v in record.items()}


def _to_record(weights: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})


_ROUNDING = 1e-12
"""FoolsGold: ``α`` below this is the rounding error of a cosine of 1 and counts as 0."""


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 0.0 when either vector is zero (the angle is undefined)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _reply_weights(msg: Message, keys: Iterable[str]) -> Weights:
    """The reply's single ArrayRecord as numpy arrays, by the global model's key names."""
    records = list(msg.content.array_records.values())
    if len(records) != 1:
        raise ValueError(
            f"reply from client {msg.metadata.src_node_id} carries {len(records)} "
            "ArrayRecords; expected exactly one"
        )
    record = records[0]
    keys = list(keys)
    if set(record.keys()) != set(keys):
        raise ValueError(
            f"reply from client {msg.metadata.src_node_id} has arrays "
            f"{sorted(record.keys())}; the global model has {sorted(keys)}"
        )
    return {k: np.asarray(record[k].numpy()) for k in keys}


# ------------------------------------------------------- the round's preparation


class Cohort(NamedTuple):
    """Who the round sampled: ``sampled`` of the ``eligible`` clients (client-level
    DP's sampling rate ``q = sampled / eligible``)."""

    eligible: int
    sampled: int


@runtime_checkable
class PreparesRound(Protocol):
    """A strategy that must be told about the round before ``aggregate_train``."""

    def prepare(self, global_weights: Weights, cohort: Cohort | None) -> None:
        """Take the round's global model (the one the replies were trained from) and
        its cohort (``None`` where the caller has none: a strategy that needs it raises)."""


@runtime_checkable
class ClientPrivate(Protocol):
    """A strategy with client-level DP (:class:`simulation.fl.client_dp.DPFedAvg`): every
    round that sampled anyone is a release, accepted replies or not (whether a round
    is released must not depend on the updates), and it reports the round's ε."""

    def client_epsilon(self) -> tuple[float, float]:
        """``(ε of the last round's release, cumulative ε)``; ``(0.0, cumulative)``
        when the last round released nothing."""
        ...


def prepare_round(strategy: Any, global_weights: Weights, cohort: Cohort | None) -> None:
    """Tell ``strategy`` about the round, if it asks (:class:`PreparesRound`): the one
    call the world's ``Aggregate`` stage and the coalition models both make before
    ``aggregate_train``, so a real and a hypothetical aggregation start alike."""
    if isinstance(strategy, PreparesRound):
        strategy.prepare(global_weights, cohort)


class NeedsGlobal:
    """Mixin for strategies that must see the current global model before aggregating.

    :meth:`prepare` records the global model of the round (:meth:`set_global`)
    *before* ``aggregate_train`` of that round. ``configure_train`` (Flower's own
    loop) records it too, so either driver works.
    """

    _global: Weights | None = None
    _global_record: ArrayRecord | None = None

    def prepare(self, global_weights: Weights, cohort: Cohort | None) -> None:
        """The round's hook (:class:`PreparesRound`): record its global model."""
        self.set_global(_to_record(global_weights))

    def set_global(self, arrays: ArrayRecord) -> None:
        """Record ``arrays`` as the global model the next replies were trained from."""
        self._global_record = arrays
        self._global = _to_numpy(arrays)

    def _require_global(self) -> Weights:
        if self._global is None:
            raise RuntimeError(
                f"{type(self).__name__}.set_global(arrays) must be called before "
                "aggregate_train (it needs the current global model)"
            )
        return self._global


# ------------------------------------------------------------------ FoolsGold


class FoolsGold(NeedsGlobal, FedAvg):
    """FoolsGold: down-weight clients whose update *histories* look alike.

    Fung, Yoon & Beschastnikh, "The Limitations of Federated Learning in Sybil
    Settings", RAID 2020, Algorithm 1 (and the authors' reference code,
    ``DistributedML/FoolsGold``). Per round ``t`` and participating client ``i``:

    1. ``H_i += Δ_i,t`` with ``Δ_i,t = w_i − w_global`` (history keyed by
       ``metadata.src_node_id``, kept across rounds);
    2. ``cs_ij = cos(H_i, H_j)`` for ``i ≠ j``, ``cs_ii = 0``, and
       ``v_i = max_j cs_ij`` (so ``v_i ≥ 0``: the authors' code takes the maximum
       of ``cos − I``, whose diagonal is 0);
    3. pardoning: ``cs_ij *= v_i / v_j`` where ``v_j > v_i``;
    4. ``α_i = 1 − max_j cs_ij``, clipped to ``[0, 1]``, then ``α /= max α``
       (``α`` below 1e-12, the rounding of a cosine of 1, counts as 0);
    5. logit: ``α_i = κ (ln(α_i / (1 − α_i)) + 0.5)`` (``α_i = 1`` is first set to
       0.99, as the reference code does), clipped to ``[0, 1]``;
    6. ``w_{t+1} = w_global + Σ α_i Δ_i,t / Σ α_i``; if every ``α_i`` is 0 the
       global model is kept.

    Differences from the paper, on purpose: the feature-importance weighting of
    line 8 is not applied (``S_t = 1``: all parameters count equally), step 6
    normalises by ``Σ α_i`` so the server step has the size of one client
    update, and similarities are computed among the clients that reply in the
    round (with partial participation, absent clients keep their history but
    take no part). A single replying client gets ``α = 1``. Every ``α`` is checked
    against the authors' code (``DistributedML/FoolsGold``, ``deep-fg/fg/foolsgold.py``)
    by ``tests/strategies/test_reference_foolsgold.py``; a client anti-correlated
    with the crowd (a sign flipper) is *not* zeroed: its maximum similarity is 0.

    ``last_weights`` maps each client of the last round to its ``α_i``.
    """

    def __init__(self, kappa: float = 1.0, **fedavg: Any) -> None:
        if not (math.isfinite(kappa) and kappa > 0):
            raise ValueError(f"FoolsGold kappa must be a positive number, got {kappa!r}")
        super().__init__(**{**FLOWER_BASE, **fedavg})
        self.kappa = float(kappa)
        self.histories: dict[int, np.ndarray] = {}
        self.last_weights: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"FoolsGold(kappa={self.kappa})"

    def summary(self) -> None:
        """Log the configuration."""
        log.info("FoolsGold: kappa=%s, clients with history=%d", self.kappa, len(self.histories))

    def what_if(self) -> FoolsGold:
        """A copy to aggregate a hypothetical set of replies with, leaving this one's
        histories untouched (``aggregate_train`` rebinds, never mutates, a history)."""
        fork = copy.copy(self)
        fork.histories = dict(self.histories)
        fork.last_weights = {}
        return fork

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        """Record the global model, then configure as FedAvg does."""
        self.set_global(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def learning_rates(self, histories: list[np.ndarray]) -> np.ndarray:
        """Steps 2–5 of Algorithm 1: per-client ``α`` from the clients' histories."""
        n = len(histories)
        if n == 0:
            return np.zeros(0)
        if n == 1:
            return np.ones(1)
        # The diagonal stays 0, as in the authors' code (cos − I): v_i is never
        # below 0, so pardoning never multiplies by a negative ratio.
        cs = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                cs[i, j] = cs[j, i] = _cosine(histories[i], histories[j])
        v = cs.max(axis=1)
        for i in range(n):  # pardoning
            for j in range(n):
                if i != j and v[j] > v[i]:
                    cs[i, j] *= v[i] / v[j]
        alpha = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
        alpha[alpha < _ROUNDING] = 0.0  # cos(x, x) rounded below 1 is still x itself
        top = float(alpha.max())
        if top <= 0.0:
            return np.zeros(n)
        alpha = alpha / top
        alpha[alpha == 1.0] = 0.99
        with np.errstate(divide="ignore"):
            logit = self.kappa * (np.log(alpha / (1.0 - alpha)) + 0.5)
        clipped: np.ndarray = np.clip(
            np.nan_to_num(logit, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0
        )
        return clipped

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate with FoolsGold weights (see the class docstring)."""
        valid, _ = self._check_and_log_replies(list(replies), is_train=True)
        if not valid:
            return None, None
        glob = self._require_global()
        keys = list(glob)
        g = flatten(glob, keys)
        clients = [int(m.metadata.src_node_id) for m in valid]
        if len(set(clients)) != len(clients):
            raise ValueError(f"round {server_round}: duplicate clients in replies {clients}")
        deltas = [flatten(_reply_weights(m, keys), keys) - g for m in valid]
        new = self.aggregate_flat(clients, deltas, g)
        log.debug("round %d: FoolsGold weights %s", server_round, self.last_weights)
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        if new is None:
            log.info(
                "round %d: every FoolsGold weight is 0; keeping the global model", server_round
            )
            return _to_record(glob), metrics
        return _to_record(unflatten(new, glob)), metrics

    def aggregate_flat(
        self, clients: list[int], deltas: list[np.ndarray], g: np.ndarray
    ) -> np.ndarray | None:
        """Steps 1–6 on flat vectors: add ``deltas`` to the clients' histories and return
        the new flat model, or ``None`` when every weight is 0 (the model is kept).
        ``aggregate_train`` and the reference contribution's hypothetical rounds (on a
        :meth:`what_if` copy, without Flower's message encoding) share it."""
        for c, d in zip(clients, deltas, strict=True):
            prev = self.histories.get(c)
            if prev is not None and prev.shape != d.shape:
                raise ValueError(f"client {c}: update shape changed since its last round")
            self.histories[c] = d.copy() if prev is None else prev + d
        alpha = self.learning_rates([self.histories[c] for c in clients])
        self.last_weights = {c: float(a) for c, a in zip(clients, alpha, strict=True)}
        total = float(alpha.sum())
        if total <= 0.0:
            return None
        step = sum((a * d for a, d in zip(alpha, deltas, strict=True)), np.zeros_like(g))
        new: np.ndarray = g + step / total
        return new


# --------------------------------------------------------------------- FLTrust


class FLTrust(NeedsGlobal, FedAvg):
    """FLTrust: trust bootstrapped from a small server-side root dataset.

    Cao, Fang, Liu & Gong, "FLTrust: Byzantine-robust Federated Learning via
    Trust Bootstrapping", NDSS 2021, Algorithm 1. Each round the server trains
    on its root dataset from the global model, giving ``g_0 = w_root − w_global``;
    for each client update ``g_i = w_i − w_global``:

    * trust score ``TS_i = ReLU(cos(g_i, g_0))``;
    * normalised update ``ĝ_i = g_i · ‖g_0‖ / ‖g_i‖``;
    * ``w_{t+1} = w_global + server_lr · Σ TS_i ĝ_i / Σ TS_i`` (the paper's global
      learning rate ``α`` is ``server_lr``, 1 by default); if every ``TS_i`` is 0
      the global model is kept.

    A zero client update (or a zero root update) has no direction and scores 0.

    ``root_update(round, global_weights) -> root_trained_weights`` is the
    server's local training; the world supplies it here or through
    :meth:`set_root_update`. ``last_weights`` maps each client of the last round
    to ``TS_i``.
    """

    def __init__(
        self,
        root_update: RootUpdate | None = None,
        server_lr: float = 1.0,
        **fedavg: Any,
    ) -> None:
        if not (math.isfinite(server_lr) and server_lr > 0):
            raise ValueError(f"FLTrust server_lr must be a positive number, got {server_lr!r}")
        super().__init__(**{**FLOWER_BASE, **fedavg})
        self.root_update = root_update
        self.server_lr = float(server_lr)
        self.last_weights: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"FLTrust(server_lr={self.server_lr})"

    def summary(self) -> None:
        """Log the configuration."""
        log.info(
            "FLTrust: server_lr=%s, root update %s",
            self.server_lr,
            "set" if self.root_update is not None else "MISSING",
        )

    def what_if(self) -> FLTrust:
        """A copy to aggregate hypothetical sets of replies with: the server's root
        update, a function of the round and the global model only, is trained once
        and reused by every hypothetical aggregation of the round."""
        fork = copy.copy(self)
        fork.last_weights = {}
        root = self.root_update
        if root is not None:
            done: dict[int, Weights] = {}

            def once(round_: int, glob: Weights) -> Weights:
                if round_ not in done:
                    done[round_] = root(round_, glob)
                return {k: v.copy() for k, v in done[round_].items()}

            fork.root_update = once
        return fork

    def set_root_update(self, fn: RootUpdate) -> None:
        """Install the server's root-dataset training: ``fn(round, global) -> weights``."""
        self.root_update = fn

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Any
    ) -> Iterable[Message]:
        """Record the global model, then configure as FedAvg does."""
        self.set_global(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate with FLTrust trust scores (see the class docstring)."""
        valid, _ = self._check_and_log_replies(list(replies), is_train=True)
        if not valid:
            return None, None
        if self.root_update is None:
            raise RuntimeError(
                "FLTrust needs the server's root update: pass root_update= or call "
                "set_root_update(fn) before aggregate_train"
            )
        glob = self._require_global()
        keys = list(glob)
        g = flatten(glob, keys)
        root = self.root_update(server_round, {k: v.copy() for k, v in glob.items()})
        g0 = flatten(root, keys) - g
        n0 = float(np.linalg.norm(g0))
        clients = [int(m.metadata.src_node_id) for m in valid]
        step = np.zeros_like(g)
        total = 0.0
        self.last_weights = {}
        for c, m in zip(clients, valid, strict=True):
            gi = flatten(_reply_weights(m, keys), keys) - g
            ni = float(np.linalg.norm(gi))
            ts = max(0.0, _cosine(gi, g0))
            self.last_weights[c] = ts
            if ts > 0.0:
                step += ts * (n0 / ni) * gi
                total += ts
        log.debug("round %d: FLTrust trust scores %s", server_round, self.last_weights)
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        if total <= 0.0:
            log.info(
                "round %d: every FLTrust trust score is 0; keeping the global model", server_round
            )
            return _to_record(glob), metrics
        return _to_record(unflatten(g + self.server_lr * step / total, glob)), metrics


# ------------------------------------------------------- Krum's selection, observed


class _RecordsSelection:
    """Mixin over Flower's ``MultiKrum``: the same selection and aggregate, and
    ``last_selected``, the clients (``src_node_id``) whose updates the last call kept,
    so a run can record which update Krum chose (Baruch et al. 2019's mechanism is
    that Krum keeps the colluders' crafted update)."""

    last_selected: tuple[int, ...] = ()
    num_malicious_nodes: int
    num_nodes_to_select: int

    def what_if(self) -> Any:
        """A copy for hypothetical aggregations (``last_selected`` is the only state)."""
        fork = copy.copy(self)
        fork.last_selected = ()
        return fork

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's ``MultiKrum.aggregate_train`` step by step, with Flower's own
        functions (``select_multikrum``, ``aggregate_arrayrecords``, the strategy's
        metrics rule), keeping the selection it makes once rather than selecting twice."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)  # type: ignore[attr-defined]
        self.last_selected = ()
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        chosen = select_multikrum(
            contents,
            num_malicious_nodes=self.num_malicious_nodes,
            num_nodes_to_select=self.num_nodes_to_select,
        )
        by_id = {id(c): int(m.metadata.src_node_id) for c, m in zip(contents, valid, strict=True)}
        self.last_selected = tuple(sorted(by_id[id(c)] for c in chosen))
        weighted_by = self.weighted_by_key  # type: ignore[attr-defined]
        arrays = aggregate_arrayrecords(chosen, weighted_by)
        metrics = self.train_metrics_aggr_fn(chosen, weighted_by)  # type: ignore[attr-defined]
        return arrays, metrics


class Krum(_RecordsSelection, FlowerKrum):  # type: ignore[misc]
    """Flower's Krum, recording the client it selects (``last_selected``)."""


class MultiKrum(_RecordsSelection, FlowerMultiKrum):  # type: ignore[misc]
    """Flower's Multi-Krum, recording the clients it selects (``last_selected``)."""


# ------------------------------------------------------------- server momentum


class ServerMomentum(NeedsGlobal):
    """Any aggregator followed by server-side momentum (heavy ball), as FedAvgM does
    (Hsu, Qi & Brown 2019; Flower's ``FedAvgM`` with ``server_learning_rate = 1``).

    Each round the wrapped rule gives ``w_agg``; with ``Δ_t = w_agg − w_global``::

        v_t = β · v_{t−1} + Δ_t          (v_0 = 0)
        w_{t+1} = w_global + v_t

    Baruch et al. 2019 train this way (their code's ``Server.defend``:
    ``velocity = 0.9·velocity − lr·defence(grads)``; ``weights += velocity``). With
    clients that take one SGD step, ``w_i = w_global − lr·g_i``, and a rule that
    commutes with that map (median, trimmed mean, Krum's selection),
    ``Δ_t = −lr·defence(g)``: the same recursion. A small bias the rule lets through
    every round accumulates in ``v`` up to ``1/(1 − β)`` times (10 at β = 0.9), which is
    why a little is enough there.

    ``last_weights`` and ``last_selected`` are the wrapped rule's. A round whose rule
    returns no model leaves ``v`` and the model unchanged.
    """

    def __init__(self, inner: Any, momentum: float) -> None:
        if not (math.isfinite(momentum) and 0.0 < momentum < 1.0):
            raise ValueError(f"server momentum must be in (0, 1), got {momentum!r}")
        self.inner = inner
        self.momentum = float(momentum)
        self.velocity: Weights | None = None

    def __repr__(self) -> str:
        return f"ServerMomentum({self.inner!r}, momentum={self.momentum})"

    @property
    def last_weights(self) -> dict[int, float]:
        """The wrapped rule's per-client weights of the last round (if it has them)."""
        return dict(getattr(self.inner, "last_weights", {}) or {})

    @property
    def last_selected(self) -> tuple[int, ...]:
        """The wrapped rule's selected clients of the last round (Krum, Multi-Krum)."""
        return tuple(getattr(self.inner, "last_selected", ()))

    def summary(self) -> None:
        """Log the configuration."""
        log.info("server momentum %s over %r", self.momentum, self.inner)

    def prepare(self, global_weights: Weights, cohort: Cohort | None) -> None:
        """Record the global model (the momentum step needs it), then let the wrapped
        rule prepare its round through the same hook (:func:`prepare_round`)."""
        super().prepare(global_weights, cohort)
        prepare_round(self.inner, global_weights, cohort)

    def what_if(self) -> ServerMomentum:
        """A copy for hypothetical aggregations: the velocity is copied (never mutated
        in place: ``aggregate_train`` rebinds it) and the wrapped rule forked."""
        fork = copy.copy(self)
        inner_fork = getattr(self.inner, "what_if", None)
        fork.inner = inner_fork() if inner_fork is not None else self.inner
        return fork

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped rule's aggregate, then the momentum step (class docstring)."""
        glob = self._require_global()
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if arrays is None:
            return None, metrics
        agg = _to_numpy(arrays)
        prev = self.velocity
        velocity = {
            k: (agg[k] - glob[k]) if prev is None else self.momentum * prev[k] + (agg[k] - glob[k])
            for k in glob
        }
        self.velocity = velocity
        return _to_record({k: glob[k] + velocity[k] for k in glob}), metrics
