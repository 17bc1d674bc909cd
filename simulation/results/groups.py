"""Outcomes per population group and per attacker kind, from ground truth.

A study asks *who* gained: the Sybils, the free-riders, the flippers? This module
answers per group of data owners, never per identity: a whitewasher's fresh names
and a Sybil group's identities are one owner (``ground_truth.json`` ``owners``).
One row per set of owners (``set``/``name``):

* ``group`` / each population group (``groups``), plus ``(none)`` for clients in no
  group;
* ``kind`` / each attack role in ``roles`` (``sybil+label_flip``, ``colluding_cabal``,
  ``honest``, ...);
* ``total`` / ``attackers`` (every owner of a ground-truth attacker) and ``honest``.

Columns, over the identities of the set's owners (definitions in docs/outputs.md):
token shares (``reward_share``, ``royalty_share``, ``token_share``: the set's
tokens over everyone's), ``net_profit`` (tokens minus ``cost`` rows, summed) and
``net_profit_per_owner``, ``contribution_share`` (signed: the set's summed
``true_contribution`` over the sum of everyone's; shares of a partition add up
to 1, a set that harmed the model has a negative share; NaN when the total is
not positive), ``participation`` (the share of the set's owner-rounds in which the
owner had a contribution accepted: who stayed, under rational participants), and per
detector that acts ``<detector>_precision``, ``_recall``, ``_f1`` and ``_flag_rate``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simulation import names
from simulation.results.tables import read_table

__all__ = [
    "DETECTORS",
    "GROUPS_FILE",
    "RunFiles",
    "Truth",
    "detector_flags",
    "group_outcomes",
    "run_group_outcomes",
    "study_columns",
]

GROUPS_FILE = "groups.parquet"
NAN = float("nan")
NO_GROUP = "(none)"

DETECTORS = ("screen", "aggregator", "mechanism", "any")
"""Detectors whose flags are scored (what counts as flagged: :func:`detector_flags`)."""

_SHARES = ("reward_share", "royalty_share", "token_share")


@dataclass(frozen=True)
class Truth:
    """``ground_truth.json`` as grouping needs it: identity → owner and attack role."""

    owners: Mapping[str, str]
    roles: Mapping[str, str]
    attackers: frozenset[str]
    groups: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Truth:
        """Read a ground-truth mapping; runs written before ``roles`` existed fall
        back to the training behaviour of attackers."""
        attackers = frozenset(str(a) for a in data.get("attackers", ()))
        roles = {str(k): str(v) for k, v in (data.get("roles") or {}).items()}
        if not roles:
            behaviours = data.get("behaviours") or {}
            roles = {
                str(a): (str(b) if a in attackers else "honest") for a, b in behaviours.items()
            }
            for behaviour, members in (data.get("market_attackers") or {}).items():
                for a in members:
                    prior = roles.get(a, "honest")
                    roles[a] = behaviour if prior == "honest" else f"{prior}+{behaviour}"
        return cls(
            owners={str(k): str(v) for k, v in (data.get("owners") or {}).items()},
            roles=roles,
            attackers=attackers,
            groups={str(g): tuple(map(str, m)) for g, m in (data.get("groups") or {}).items()},
        )

    def owner(self, account: str) -> str:
        """The data owner behind ``account`` (itself when ground truth has none)."""
        return self.owners.get(account, account)

    def role(self, account: str) -> str:
        """The attack role of ``account``'s owner (``honest`` if none)."""
        own = self.roles.get(account)
        if own is not None and own != "honest":
            return own
        return self.roles.get(self.owner(account), own or "honest")

    def known(self, extra: Iterable[str] = ()) -> set[str]:
        """Every identity ground truth knows, plus ``extra`` (e.g. metric rows' clients)."""
        return set(self.owners) | set(self.roles) | set(extra)

    def attacker_owners(self) -> set[str]:
        """Owners of ground-truth attackers (and of market attackers' accounts)."""
        att = {self.owner(a) for a in self.attackers}
        return att | {self.owner(a) for a, r in self.roles.items() if r != "honest"}


def sum_by_owner(metrics: pd.DataFrame, metric: str, truth: Truth) -> pd.Series:
    """Sum of a long-form metric over rounds, per data owner (``global`` rows excluded)."""
    rows = metrics[(metrics["metric"] == metric) & (metrics["client"] != names.GLOBAL)]
    owners = rows["client"].astype(str).map(truth.owner)
    return rows["value"].astype(float).groupby(owners).sum()


def _owner_rounds(metrics: pd.DataFrame, truth: Truth) -> set[tuple[str, int]]:
    """``(owner, round)`` of every accepted contribution (its ``num_examples`` row)."""
    rows = metrics[(metrics["metric"] == names.NUM_EXAMPLES) & (metrics["client"] != names.GLOBAL)]
    return {
        (truth.owner(str(c)), int(r)) for c, r in zip(rows["client"], rows["round"], strict=True)
    }


def detector_flags(
    metrics: pd.DataFrame, truth: Truth, flag_below: float
) -> dict[str, set[str] | None]:
    """Per detector, the owners it flagged (``None``: the detector did not act).

    An owner is flagged when any of its identities was, in any round:

    * ``screen``: the server's screening rejected a reply (a ``rejected`` row ≥ 0.5);
      always acts.
    * ``aggregator``: the robust aggregator gave it a weight below
      ``aggregation.flag_below`` (``aggregation_weight`` rows); acts when the
      strategy reports weights.
    * ``mechanism``: the incentive mechanism's detector slashed it (a
      ``slashed_tokens`` row: a rejected contribution, or a score below
      ``min_score``); acts when the mechanism allocated (reward or slash rows).
    * ``any``: flagged by any of the above.
    """
    client = metrics["client"] != names.GLOBAL

    def owners_where(mask: pd.Series) -> set[str]:
        return {truth.owner(str(a)) for a in metrics.loc[mask & client, "client"]}

    metric = metrics["metric"]
    weights = metric == names.AGGREGATION_WEIGHT
    allocated = metric.isin([names.REWARD_TOKENS, names.SLASHED_TOKENS])
    out: dict[str, set[str] | None] = {
        "screen": owners_where((metric == names.REJECTED) & (metrics["value"] >= 0.5)),
        "aggregator": (
            owners_where(weights & (metrics["value"] < flag_below)) if weights.any() else None
        ),
        "mechanism": owners_where(metric == names.SLASHED_TOKENS) if allocated.any() else None,
    }
    out["any"] = set().union(*(f for f in out.values() if f is not None))
    return out


def _share(part: float, total: float) -> float:
    return part / total if total > 0 else NAN


def _detection(
    flagged: set[str], members: set[str], attackers: set[str], honest: set[str]
) -> dict[str, float]:
    """Precision, recall and F1 of telling this set's attackers from honest owners,
    and the share of the set's owners flagged."""
    target = members & attackers
    hits = len(flagged & target)
    called = hits + len(flagged & honest)  # |flagged & (target | honest)|: they are disjoint
    recall = hits / len(target) if target else NAN
    precision = hits / called if target and called else NAN
    f1 = (
        2 * precision * recall / (precision + recall)
        if not (math.isnan(precision) or math.isnan(recall)) and precision + recall > 0
        else (0.0 if target and hits == 0 else NAN)
    )
    rate = len(flagged & members) / len(members) if members else NAN
    return {"precision": precision, "recall": recall, "f1": f1, "flag_rate": rate}


def _sets(truth: Truth, owners: list[str], attackers: set[str]) -> list[tuple[str, str, set[str]]]:
    sets: list[tuple[str, str, set[str]]] = []
    grouped: set[str] = set()
    for g, members in sorted(truth.groups.items()):
        own = {truth.owner(a) for a in members}
        grouped |= own
        sets.append(("group", g, own))
    known = set(truth.owners.values())  # a set: owners.values() is a linear scan per test
    rest = {o for o in owners if o not in grouped and o in known}
    if rest:
        sets.append(("group", NO_GROUP, rest))
    by_role: dict[str, set[str]] = {}
    for o in owners:
        by_role.setdefault(truth.role(o), set()).add(o)
    sets += [("kind", r, m) for r, m in sorted(by_role.items())]
    honest = {o for o in owners if o not in attackers}
    sets += [("total", "attackers", attackers & set(owners)), ("total", "honest", honest)]
    return sets


def group_outcomes(metrics: pd.DataFrame, truth: Truth, flag_below: float = 0.0) -> pd.DataFrame:
    """One row per group of owners (see the module docstring for rows and columns)."""
    clients = metrics.loc[metrics["client"] != names.GLOBAL, "client"].astype(str)
    owners = sorted({truth.owner(a) for a in truth.known(clients)})
    rewards = sum_by_owner(metrics, names.REWARD_TOKENS, truth).reindex(owners, fill_value=0.0)
    royalties = sum_by_owner(metrics, names.ROYALTY_TOKENS, truth).reindex(owners, fill_value=0.0)
    tokens = rewards + royalties
    costs = sum_by_owner(metrics, names.COST, truth).reindex(owners, fill_value=0.0)
    contribution = sum_by_owner(metrics, names.TRUE_CONTRIBUTION, truth)
    # On every owner, 0 where it has none: a set's mask of this is what
    # ``contribution.reindex(sorted(set), fill_value=0.0)`` gave, zeros in the same places.
    given_all = contribution.reindex(owners, fill_value=0.0)
    accepted = _owner_rounds(metrics, truth)
    rounds = int(metrics["round"].max()) if len(metrics) else 0
    attackers = truth.attacker_owners() & set(owners)
    honest = set(owners) - attackers
    flags = detector_flags(metrics, truth, flag_below)
    index = pd.Index(owners)
    rows = []
    for kind, name, members in _sets(truth, owners, attackers):
        # A boolean mask over the sorted owners selects the set's owners in sorted
        # order: the same values, summed in the same order, as indexing by
        # ``sorted(members)``, without a label lookup per owner per column.
        mask = index.isin(list(members))
        row: dict[str, Any] = {"set": kind, "name": name, "owners": len(members)}
        row["reward_share"] = _share(float(rewards[mask].sum()), float(rewards.sum()))
        row["royalty_share"] = _share(float(royalties[mask].sum()), float(royalties.sum()))
        row["token_share"] = _share(float(tokens[mask].sum()), float(tokens.sum()))
        profit = float((tokens[mask] - costs[mask]).sum())
        row["net_profit"] = profit
        row["net_profit_per_owner"] = profit / len(members) if members else NAN
        given = given_all[mask].sum() if not contribution.empty else NAN
        row["contribution_share"] = _share(float(given), float(contribution.sum()))
        slots = len(members) * rounds
        row["participation"] = sum(1 for o, _ in accepted if o in members) / slots if slots else NAN
        for det, flagged in flags.items():
            if flagged is None:
                continue
            for key, value in _detection(flagged, members, attackers, honest).items():
                row[f"{det}_{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def _flag_below(manifest: Mapping[str, Any]) -> float:
    from simulation.config.schema import AggregationConfig

    scenario = manifest.get("scenario") or {}
    agg = scenario.get("aggregation") or {} if isinstance(scenario, Mapping) else {}
    value = agg.get("flag_below") if isinstance(agg, Mapping) else None
    if isinstance(value, int | float):
        return float(value)
    return float(AggregationConfig.model_fields["flag_below"].default)


@dataclass(frozen=True)
class RunFiles:
    """The files of a finished run that its outcomes are computed from, read once:
    the manifest, ``ground_truth.json`` (raw, and as :class:`Truth`) and the metric
    rows. ``write_results`` hands one to both :func:`run_group_outcomes` and
    :func:`~simulation.results.metrics.run_metrics` (at 100,000 clients ground truth
    alone is ~10 MB of JSON)."""

    manifest: Mapping[str, Any]
    ground_truth: Mapping[str, Any]
    truth: Truth
    metrics: pd.DataFrame

    @classmethod
    def read(cls, run: Path | str | RunFiles) -> RunFiles:
        """``run``'s files (``run`` itself when it is already read)."""
        if isinstance(run, RunFiles):
            return run
        p = Path(run)
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        gt_path = p / "ground_truth.json"
        raw = json.loads(gt_path.read_text(encoding="utf-8")) if gt_path.is_file() else {}
        return cls(manifest, raw, Truth.from_json(raw), read_table(p / "metrics.parquet"))


def run_group_outcomes(run: Path | str | RunFiles) -> pd.DataFrame:
    """:func:`group_outcomes` of a finished run directory, from its files only."""
    files = RunFiles.read(run)
    return group_outcomes(files.metrics, files.truth, _flag_below(files.manifest))


def study_columns(outcomes: pd.DataFrame) -> dict[str, float]:
    """A run's group outcomes as flat study-table columns ``<set>:<name>:<column>``."""
    out: dict[str, float] = {}
    for rec in outcomes.to_dict("records"):
        prefix = f"{rec['set']}:{rec['name']}"
        for key, value in rec.items():
            if key not in ("set", "name"):
                out[f"{prefix}:{key}"] = float(value)
    return out
