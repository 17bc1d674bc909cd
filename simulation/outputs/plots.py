"""Figures drawn from saved results only, so any past run or study can be re-plotted.

Everything here reads a run directory (``manifest.json``, ``rounds.parquet``,
``metrics.parquet``, ``ground_truth.json``, ``ledger.db``) or a study directory
(sub-directories that are runs, plus an optional ``study.parquet`` /
``summary.csv``) and never touches live simulation objects: results are data,
and a figure is a pure function of that data.

Figures are built as :class:`matplotlib.figure.Figure` objects without pyplot
(no global figure registry, no interactive backend), in one colour-blind-safe
style (Okabe-Ito), and saved with fixed metadata so the same inputs give the
same PDF bytes. :func:`run_figures` / :func:`study_figures` return the figures
before saving, which is what the tests inspect.
"""

from __future__ import annotations

import json
import logging
import math
import re
import textwrap
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from simulation import names
from simulation.results.groups import Truth

if TYPE_CHECKING:
    from simulation.study.stats import Estimate

__all__ = [
    "FIGURE_FORMATS",
    "OKABE_ITO",
    "LedgerRecord",
    "OutputsError",
    "RunData",
    "StudyData",
    "design_labels",
    "figure_style",
    "gini",
    "is_run_dir",
    "is_study_dir",
    "load_run",
    "load_study",
    "lorenz",
    "plot",
    "run_figures",
    "save_figures",
    "study_figures",
    "study_summary",
    "summary_estimate",
    "summary_records",
]

logger = logging.getLogger("fedmarket.outputs")

TOKEN = 1_000_000
"""Base units per token (mirrors ``marketplace.TOKEN``; kept local so reading is cheap)."""

FIGURE_FORMATS = ("pdf", "png")

OKABE_ITO = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
"""Okabe & Ito's palette: distinguishable under the common colour-vision deficiencies."""

_RC: dict[str, Any] = {
    "axes.prop_cycle": cycler(color=list(OKABE_ITO)),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "font.size": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.hashsalt": "fedmarket",
    "pdf.fonttype": 42,
    "path.simplify": False,
}

# Ledger entry kinds that move tokens, and the sign they have on total supply.
_SUPPLY_SIGN = {"mint": 1, "reward": 1, "burn": -1, "slash": -1}
_FLOW_KINDS = ("mint", "reward", "transfer", "stake", "unstake", "slash", "burn", "revenue_payout")


class OutputsError(Exception):
    """Raised when a run or study directory is missing or lacks a result file.

    The CLI turns it into one line on stderr and exit code 2.
    """


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """The plotting-relevant part of one ledger entry (no signatures)."""

    seq: int
    kind: str
    sender: str
    time: float
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything a figure or report may use from one run directory."""

    path: Path
    manifest: Mapping[str, Any]
    rounds: pd.DataFrame
    metrics: pd.DataFrame
    ground_truth: Mapping[str, Any]
    ledger: tuple[LedgerRecord, ...] = ()
    label_counts: pd.DataFrame | None = None
    """``label_counts.parquet``: training examples per (client, label), if the run wrote it."""

    @property
    def scenario(self) -> Mapping[str, Any]:
        """The resolved scenario stored in the manifest."""
        scenario = self.manifest.get("scenario", {})
        return scenario if isinstance(scenario, Mapping) else {}

    @property
    def seed(self) -> int | None:
        """The run's seed (manifest first, scenario second)."""
        seed = self.manifest.get("seed", self.scenario.get("seed"))
        return int(seed) if seed is not None else None

    def behaviours(self) -> dict[str, str]:
        """Account → behaviour name (ground truth; ``honest`` when unknown)."""
        raw = self.ground_truth.get("behaviours", {})
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}

    def truth(self) -> Truth:
        """Ground truth for grouping: each identity's data owner and attack role."""
        return Truth.from_json(self.ground_truth)

    def owner_earnings(self) -> pd.DataFrame:
        """:meth:`earnings` with one column per data owner (its identities summed): a
        whitewasher's fresh names and a Sybil group's identities are one participant."""
        table = self.earnings()
        if table.empty:
            return table
        truth = self.truth()
        return table.T.groupby(lambda c: truth.owner(str(c))).sum().T

    def earnings(self) -> pd.DataFrame:
        """Per-round reward tokens, one column per participant (rows: rounds, filled 0)."""
        m = self.metrics
        rows = m[(m["metric"] == names.REWARD_TOKENS) & (m["client"] != names.GLOBAL)]
        if rows.empty:
            return pd.DataFrame()
        table = rows.pivot_table(index="round", columns="client", values="value", aggfunc="sum")
        return table.sort_index().fillna(0.0)

    def final_earnings(self) -> pd.Series:
        """Total reward tokens per data owner over the run (0 for those never paid)."""
        table = self.owner_earnings()
        totals = table.sum(axis=0) if not table.empty else pd.Series(dtype=float)
        truth = self.truth()
        for account in self.behaviours():
            if truth.owner(account) not in totals.index:
                totals[truth.owner(account)] = 0.0
        return totals.sort_index()

    def rating_rule(self) -> tuple[str, dict[str, float]]:
        """The scenario's rating rule and its parameters (``mean`` if it names none)."""
        market = self.scenario.get("market", {})
        rule = market.get("rating_rule", "mean") if isinstance(market, Mapping) else "mean"
        if isinstance(rule, Mapping):
            return str(rule.get("name", "mean")), dict(rule.get("params") or {})
        return str(rule), {}


@dataclass(frozen=True, slots=True)
class StudyData:
    """Runs of a study grouped by design (scenario fields that vary, seed excluded)."""

    path: Path
    runs: tuple[RunData, ...]
    design_keys: tuple[str, ...]
    designs: Mapping[str, tuple[RunData, ...]] = field(default_factory=dict)
    table: pd.DataFrame | None = None
    """``study.parquet`` or ``summary.csv`` when the study wrote one."""


def is_run_dir(path: Path) -> bool:
    """A run directory is one holding ``manifest.json``."""
    return (path / "manifest.json").is_file()


def is_study_dir(path: Path) -> bool:
    """A study directory holds at least one run directory one level down."""
    return path.is_dir() and not is_run_dir(path) and any(_run_subdirs(path))


def _run_subdirs(path: Path) -> Iterator[Path]:
    """Run directories of a study: one level down, or under ``runs/`` (``fedmarket
    compare``'s layout)."""
    for parent in (path, path / "runs"):
        if not parent.is_dir():
            continue
        for child in sorted(parent.iterdir()):
            if child.is_dir() and is_run_dir(child):
                yield child


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputsError(f"{path}: missing") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputsError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise OutputsError(f"{path}: expected a JSON object")
    return data


def _read_table(path: Path) -> pd.DataFrame:
    """Parquet, falling back to the CSV twin the run also writes."""
    csv = path.with_suffix(".csv")
    if path.is_file():
        return pd.read_parquet(path)
    if csv.is_file():
        return pd.read_csv(csv)
    raise OutputsError(f"{path}: missing (no {csv.name} either)")


def read_ledger(path: Path) -> tuple[LedgerRecord, ...]:
    """The run's ledger entries, or ``()`` when there is no ``ledger.db``."""
    if not (path / "ledger.db").is_file():
        logger.info("%s: no ledger.db; ledger figures skipped", path)
        return ()
    from marketplace import Market

    with Market.open(path, readonly=True) as market:
        return tuple(
            LedgerRecord(e.seq, e.kind, e.sender, float(e.time), dict(e.data))
            for e in market.entries()
        )


def rating_history(
    path: Path, rule: str, params: Mapping[str, float] | None = None
) -> dict[str, list[tuple[float, float]]]:
    """Per version, ``(time, rating)`` after each of its votes under ``rule``: the ledger
    replayed entry by entry, so each rating uses the stakes and reputations of that
    moment, as ``Market.rating`` computes it then. A vote that leaves the rule no
    defined rating (``yuma`` with no staked voter) adds no point."""
    if not (path / "ledger.db").is_file():
        return {}
    from marketplace import Market
    from marketplace.ratings import Ballot, aggregate_rating
    from marketplace.reputation import reputation
    from marketplace.state import MarketState

    state = MarketState()
    out: dict[str, list[tuple[float, float]]] = {}
    with Market.open(path, readonly=True) as market:
        for entry in market.entries():
            state.apply(entry.tx)
            if entry.kind == "genesis":
                state.ledger_id = entry.hash
            if entry.kind != "vote":
                continue
            version = str(entry.data["version"])
            ballots = [
                Ballot(v.voter, v.score, state.staked(v.voter), reputation(state, v.voter))
                for v in sorted(state.votes.get(version, {}).values(), key=lambda v: v.voter)
            ]
            try:
                rating = aggregate_rating(rule, ballots, params)
            except ValueError:
                continue
            out.setdefault(version, []).append((float(entry.time), float(rating)))
    return out


def load_run(path: Path | str, *, ledger: bool = True) -> RunData:
    """Read one run directory; raises :class:`OutputsError` naming a missing file."""
    p = Path(path)
    if not p.is_dir():
        raise OutputsError(f"{p}: no such directory")
    if not is_run_dir(p):
        raise OutputsError(f"{p}: not a run directory (no manifest.json)")
    manifest = _read_json(p / "manifest.json")
    gt_path = p / "ground_truth.json"
    ground_truth = _read_json(gt_path) if gt_path.is_file() else {}
    labels = p / "label_counts.parquet"
    return RunData(
        path=p,
        manifest=manifest,
        rounds=_read_table(p / "rounds.parquet"),
        metrics=_read_table(p / "metrics.parquet"),
        ground_truth=ground_truth,
        ledger=read_ledger(p) if ledger else (),
        label_counts=_read_table(labels)
        if labels.is_file() or labels.with_suffix(".csv").is_file()
        else None,
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of a scenario. Lists of mappings (the population, the
    timeline) are entered by index, as in ``--set population.0.fraction=0.2``, so
    a study that sweeps one field of a list item varies that one leaf; other
    lists (``model.hidden``) stay whole values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                out.update(_flatten(item, f"{name}.{i}."))
        else:
            out[name] = json.dumps(value, sort_keys=True) if isinstance(value, list) else value
    return out


def design_of(run: RunData, keys: Sequence[str]) -> str:
    """The design label of ``run``: ``key=value`` of every varying field that is set,
    or ``all``. Keys are shortened to their last component (``strategy=krum``) unless
    two varying keys would then read the same."""
    flat = _flatten(run.scenario)
    if not keys:
        return "all"
    short = [k.rsplit(".", 1)[-1] for k in keys]
    names = short if len(set(short)) == len(short) else list(keys)
    parts = [
        f"{n}={flat.get(k)}" for n, k in zip(names, keys, strict=True) if flat.get(k) is not None
    ]
    return ", ".join(parts) or "all"


def load_study(path: Path | str) -> StudyData:
    """Read every run under ``path`` and group them by design.

    The design of a run is the set of scenario fields (dotted paths) whose
    values differ across the study's runs, ``seed`` excluded: that is what the
    study varied on purpose, and the seeds are the replicates of each design.
    """
    p = Path(path)
    if not p.is_dir():
        raise OutputsError(f"{p}: no such directory")
    runs = tuple(load_run(d) for d in _run_subdirs(p))
    if not runs:
        raise OutputsError(f"{p}: not a study directory (no sub-directory has manifest.json)")
    flats = [_flatten(r.scenario) for r in runs]
    all_keys = sorted(set().union(*flats))
    keys = tuple(k for k in all_keys if k != "seed" and len({repr(f.get(k)) for f in flats}) > 1)
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(design_of(run, keys), []).append(run)
    table: pd.DataFrame | None = None
    if (p / "study.parquet").is_file():
        table = pd.read_parquet(p / "study.parquet")
    elif (p / "summary.csv").is_file():
        table = pd.read_csv(p / "summary.csv")
    logger.info("study %s: %d runs, %d designs over %s", p, len(runs), len(groups), keys)
    return StudyData(p, runs, keys, {k: tuple(v) for k, v in sorted(groups.items())}, table)


# -- statistics ----------------------------------------------------------------------------


def lorenz(values: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve points: population share vs. cumulative share of earnings."""
    x = np.sort(np.asarray(list(values), dtype=float))
    n = len(x)
    pop = np.linspace(0.0, 1.0, n + 1)
    total = x.sum()
    cum = np.concatenate([[0.0], np.cumsum(x) / total]) if total > 0 else pop.copy()
    return pop, cum


def gini(values: Iterable[float]) -> float:
    """Gini coefficient of non-negative earnings (0 equal, → 1 concentrated); the same
    definition as the study tables (``simulation.results.metrics.gini``)."""
    from simulation.results.metrics import gini as study_gini

    return study_gini(list(values))


# -- figures: one run --------------------------------------------------------------------


@contextmanager
def figure_style() -> Iterator[None]:
    """The shared rc settings (palette, fonts, fixed hash salt) for drawing and saving."""
    with mpl.rc_context(_RC):  # type: ignore[arg-type]
        yield


def _figure(ncols: int = 1, width: float = 6.0, height: float = 3.4) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * (1 if ncols == 1 else 0.9 * ncols / 1.5), height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _global_series(run: RunData, column: str) -> pd.Series | None:
    if column in run.rounds.columns:
        return run.rounds.set_index("round")[column].astype(float)
    m = run.metrics
    rows = m[(m["client"] == names.GLOBAL) & (m["metric"] == column)]
    return rows.set_index("round")["value"].astype(float) if not rows.empty else None


def _fig_accuracy_loss(run: RunData) -> Figure | None:
    acc = _global_series(run, "test_accuracy")
    loss = _global_series(run, "test_loss")
    if acc is None and loss is None:
        logger.info("%s: no test_accuracy/test_loss; accuracy figure skipped", run.path)
        return None
    fig, (ax_acc, ax_loss) = _figure(2)
    if acc is not None:
        ax_acc.plot(acc.index, acc.to_numpy(), marker="o", ms=3, label="test accuracy")
    ax_acc.set(xlabel="round", ylabel="test accuracy", title="Accuracy per round")
    if loss is not None:
        ax_loss.plot(loss.index, loss.to_numpy(), marker="o", ms=3, color=OKABE_ITO[1])
    ax_loss.set(xlabel="round", ylabel="test loss", title="Loss per round")
    fig.tight_layout()
    return fig


def _fig_reward_share(run: RunData) -> Figure | None:
    table = run.earnings()
    if table.empty:
        logger.info("%s: no reward_tokens rows; reward-share figure skipped", run.path)
        return None
    truth = run.truth()
    by_type = table.T.groupby(lambda c: truth.role(str(c))).sum().T
    totals = by_type.sum(axis=1).replace(0.0, np.nan)
    share = by_type.div(totals, axis=0).fillna(0.0)
    fig, (ax,) = _figure()
    ax.stackplot(
        share.index.to_numpy(),
        *[share[c].to_numpy() for c in share.columns],
        labels=[str(c) for c in share.columns],
        colors=OKABE_ITO[: len(share.columns)],
        alpha=0.85,
    )
    ax.set(xlabel="round", ylabel="share of round rewards", ylim=(0, 1))
    ax.set_title("Reward share by attack role")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def _fig_earnings(run: RunData) -> Figure | None:
    table = run.owner_earnings()
    if table.empty:
        logger.info("%s: no reward_tokens rows; earnings figure skipped", run.path)
        return None
    cumulative = table.cumsum()
    truth = run.truth()
    types = sorted({truth.role(str(c)) for c in cumulative.columns} | {"honest"})
    colour = {t: OKABE_ITO[i % len(OKABE_ITO)] for i, t in enumerate(types)}
    fig, (ax,) = _figure()
    for owner in cumulative.columns:
        kind = truth.role(str(owner))
        ax.plot(
            cumulative.index, cumulative[owner].to_numpy(), lw=1, color=colour[kind], label=kind
        )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), title="attack role")
    ax.set(xlabel="round", ylabel="cumulative reward (tokens)")
    ax.set_title("Cumulative earnings per data owner")
    fig.tight_layout()
    return fig


def _fig_lorenz(run: RunData) -> Figure | None:
    final = run.final_earnings()
    if final.empty or final.sum() <= 0:
        logger.info("%s: no earnings; Lorenz figure skipped", run.path)
        return None
    pop, cum = lorenz(final.to_numpy())
    fig, (ax,) = _figure(width=4.2, height=4.0)
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="equality")
    ax.plot(pop, cum, marker="o", ms=3, label=f"earnings (Gini {gini(final.to_numpy()):.3f})")
    ax.set(xlabel="share of data owners", ylabel="share of earnings", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Lorenz curve of final earnings")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def _fig_epsilon(run: RunData) -> Figure | None:
    m = run.metrics
    per_client = m[(m["metric"] == names.EPSILON) & (m["client"] != names.GLOBAL)]
    eps_max = _global_series(run, "epsilon_max")
    eps_mean = _global_series(run, "epsilon_mean")
    if per_client.empty and eps_max is None:
        logger.info("%s: no epsilon data; privacy figure skipped", run.path)
        return None
    fig, (ax,) = _figure()
    for i, (_client, rows) in enumerate(per_client.groupby("client", sort=True)):
        ax.plot(
            rows["round"].to_numpy(),
            rows["value"].to_numpy(),
            color="0.75",
            lw=0.8,
            label="per client" if i == 0 else None,
        )
    if eps_max is not None:
        ax.plot(eps_max.index, eps_max.to_numpy(), color=OKABE_ITO[3], lw=2, label="ε max")
    if eps_mean is not None:
        ax.plot(eps_mean.index, eps_mean.to_numpy(), color=OKABE_ITO[0], lw=2, label="ε mean")
    privacy = run.scenario.get("privacy", {})
    budget = privacy.get("budget") if isinstance(privacy, Mapping) else None
    if isinstance(budget, int | float):
        ax.axhline(float(budget), ls="--", color="0.3", lw=1, label="budget")
    delta = privacy.get("delta") if isinstance(privacy, Mapping) else None
    ax.set(xlabel="round", ylabel="ε")
    ax.set_title(f"Privacy loss per round (δ = {delta})" if delta else "Privacy loss per round")
    ax.legend()
    fig.tight_layout()
    return fig


def _fig_votes_licenses(run: RunData) -> Figure | None:
    votes = [r for r in run.ledger if r.kind == "vote"]
    purchases = [r for r in run.ledger if r.kind == "license_purchase"]
    # The platform fee goes to the treasury, not to contributors.
    payouts = [r for r in run.ledger if r.kind == "revenue_payout" and not r.data.get("fee")]
    if not votes and not purchases:
        logger.info("%s: no vote or license_purchase entries; market figure skipped", run.path)
        return None
    prices: dict[tuple[str, str], float] = {}
    for r in run.ledger:
        table = r.data.get("prices") if r.kind in ("price_list", "model_version") else None
        if isinstance(table, Mapping):
            version = str(r.data.get("version"))
            for lic_type, terms in table.items():
                if isinstance(terms, Mapping) and "price" in terms:
                    prices[(version, str(lic_type))] = float(terms["price"]) / TOKEN
    fig, (ax_votes, ax_rev) = _figure(2)
    rule, params = run.rating_rule()
    by_version = rating_history(run.path, rule, params) if votes else {}
    for version, points in sorted(by_version.items()):
        t = np.array([p[0] for p in points])
        ax_votes.plot(t, [p[1] for p in points], marker="o", ms=3, label=version)
    ax_votes.set(xlabel="simulated time (s)", ylabel=f"{rule} rating (0-5)", ylim=(0, 5))
    ax_votes.set_title(f"Ratings over time ({rule})")
    if by_version:
        ax_votes.legend()
    if purchases:
        t = np.array([r.time for r in purchases])
        revenue = np.cumsum(
            [
                prices.get((str(r.data.get("version")), str(r.data.get("license_type"))), 0.0)
                for r in purchases
            ]
        )
        ax_rev.step(t, revenue, where="post", label="license sales")
    if payouts:
        t = np.array([r.time for r in payouts])
        paid = np.cumsum([float(r.data.get("amount", 0)) / TOKEN for r in payouts])
        ax_rev.step(t, paid, where="post", label="paid to contributors")
    ax_rev.set(xlabel="simulated time (s)", ylabel="tokens (cumulative)")
    ax_rev.set_title("License revenue")
    if ax_rev.get_legend_handles_labels()[0]:
        ax_rev.legend()
    fig.tight_layout()
    return fig


def _fig_token_flows(run: RunData) -> Figure | None:
    moves = [r for r in run.ledger if r.kind in _FLOW_KINDS and "amount" in r.data]
    if not moves:
        logger.info("%s: no token-moving ledger entries; token figure skipped", run.path)
        return None
    fig, (ax_supply, ax_flow) = _figure(2)
    t = np.array([r.time for r in moves])
    delta = np.array([_SUPPLY_SIGN.get(r.kind, 0) * float(r.data["amount"]) for r in moves])
    ax_supply.step(t, np.cumsum(delta) / TOKEN, where="post", color=OKABE_ITO[0])
    ax_supply.set(xlabel="simulated time (s)", ylabel="supply (tokens)")
    ax_supply.set_title("Token supply")
    totals: dict[str, float] = {}
    for r in moves:
        totals[r.kind] = totals.get(r.kind, 0.0) + float(r.data["amount"]) / TOKEN
    kinds = [k for k in _FLOW_KINDS if k in totals]
    ax_flow.bar(kinds, [totals[k] for k in kinds], color=OKABE_ITO[: len(kinds)])
    ax_flow.set(ylabel="tokens moved (total)")
    ax_flow.set_title("Token flows by entry kind")
    ax_flow.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


LABEL_LEGEND_MAX = 20
"""Up to this many classes the label distribution is a stacked bar chart with a legend;
above (FEMNIST's 62, Shakespeare's 81) a heatmap with a colour bar."""


def _fig_label_distribution(run: RunData) -> Figure | None:
    """Training examples per client and label, drawn by Flower Datasets'
    ``plot_label_distributions`` from the counts the run stored (no dataset needed)."""
    table = run.label_counts
    if table is None or table.empty:
        logger.info("%s: no label_counts.parquet; label distribution skipped", run.path)
        return None
    from flwr_datasets.visualization import plot_label_distributions

    partitioner = counts_partitioner(table)
    classes = table["label"].nunique()
    clients = table["client"].nunique()
    fig = Figure(figsize=(max(6.0, min(0.25 * clients, 16.0)), 3.8), layout="constrained")
    ax = fig.subplots()
    heatmap = classes > LABEL_LEGEND_MAX
    with warnings.catch_warnings():
        # Flower Datasets warns when the per-client frames have no verbose names; ours do.
        warnings.simplefilter("ignore", UserWarning)
        plot_label_distributions(
            partitioner,
            label_name="label",
            plot_type="heatmap" if heatmap else "bar",
            size_unit="absolute",
            partition_id_axis="x",
            axis=ax,
            title="Label distribution per client",
            cmap="viridis",
            legend=True,
            legend_title="examples" if heatmap else "label",
            verbose_labels=not heatmap,
            # Flower pushes the bar legend right of the figure; constrained layout
            # makes room for it only at its own "outside" position.
            legend_kwargs=None if heatmap else {"bbox_to_anchor": None},
        )
    ax.set_xlabel("client")
    ax.set_ylabel("label" if heatmap else "examples")
    return fig


def counts_partitioner(table: pd.DataFrame) -> Any:
    """A Flower ``Partitioner`` whose partition *i* is client *i*'s stored label counts
    (rows of a ``label`` column with the class names as a ``ClassLabel``), so Flower's
    own plotting code draws a past run."""
    from datasets import ClassLabel, Dataset, Features
    from flwr_datasets.partitioner import Partitioner

    names = table.drop_duplicates("label").sort_values("label")["label_name"].astype(str).tolist()
    clients = sorted(table["client"].unique())
    ordered = table.set_index(["client", "label"])["count"]
    labels: list[np.ndarray] = []
    for client in clients:
        counts = ordered.loc[client].reindex(range(len(names)), fill_value=0).to_numpy()
        labels.append(np.repeat(np.arange(len(names)), counts))
    bounds = np.concatenate([[0], np.cumsum([len(a) for a in labels])])

    class StoredCounts(Partitioner):  # type: ignore[misc]
        def load_partition(self, partition_id: int) -> Dataset:
            start, stop = int(bounds[partition_id]), int(bounds[partition_id + 1])
            return self.dataset.select(range(start, stop))

        @property
        def num_partitions(self) -> int:
            return len(clients)

    partitioner = StoredCounts()
    partitioner.dataset = Dataset.from_dict(
        {"label": np.concatenate(labels).astype(np.int64)},
        features=Features({"label": ClassLabel(names=names)}),
    )
    return partitioner


def run_figures(run: RunData) -> dict[str, Figure]:
    """Every figure the run's data supports, by name (absent data → figure skipped)."""
    builders = {
        "accuracy_loss": _fig_accuracy_loss,
        "reward_share": _fig_reward_share,
        "earnings": _fig_earnings,
        "lorenz": _fig_lorenz,
        "epsilon": _fig_epsilon,
        "votes_licenses": _fig_votes_licenses,
        "token_flows": _fig_token_flows,
        "label_distribution": _fig_label_distribution,
    }
    logger.info("%s: attack heatmap needs a study with attack columns; skipped", run.path)
    with figure_style():
        made = {name: build(run) for name, build in builders.items()}
    return {name: fig for name, fig in made.items() if fig is not None}


# -- figures: a study --------------------------------------------------------------------
#
# Every study figure reads the same summary frame the report's tables print
# (:func:`study_summary`: ``summary.parquet`` as ``fedmarket compare`` wrote it, or the
# same summary rebuilt from the runs), so a figure and a table never disagree; per-round
# curves use :func:`simulation.study.stats.estimate` round by round, the same estimator.


def study_summary(study: StudyData) -> pd.DataFrame:
    """The study's ``summary.parquet``/``.csv`` as ``fedmarket compare`` wrote it; for a
    plain directory of runs (or an older summary) the same summary rebuilt from the runs'
    files with :func:`~simulation.study.compare.summarize`, so the two never disagree."""
    for name in ("summary.parquet", "summary.csv"):
        f = study.path / name
        if f.is_file():
            table = pd.read_parquet(f) if name.endswith("parquet") else pd.read_csv(f)
            if "test_accuracy_points" in table.columns:
                return table
    from simulation.results.groups import run_group_outcomes, study_columns
    from simulation.results.metrics import run_metrics
    from simulation.study.compare import summarize

    rows = []
    for design, runs in study.designs.items():
        for run in runs:
            try:
                values: dict[str, Any] = dict(run_metrics(run.path))
                values |= study_columns(run_group_outcomes(run.path))
                status = "ok"
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("%s: unreadable results (%s); left out", run.path, exc)
                values, status = {}, "failed"
            rows.append({"design": design, "seed": run.seed, "status": status, **values})
    return summarize(pd.DataFrame(rows), ())


def summary_estimate(row: Mapping[str, Any], metric: str) -> Estimate:
    """The :class:`~simulation.study.stats.Estimate` of ``metric`` stored in one summary
    row (``_mean``, ``_lo``, ``_hi``, ``_n``, ``_points``); ``n == 0`` when absent."""
    from simulation.study.stats import Estimate

    points = row.get(f"{metric}_points", "")
    points = "" if not isinstance(points, str) else points
    n = row.get(f"{metric}_n", 0)
    return Estimate(
        int(n) if isinstance(n, int | float) and n == n else 0,
        float(row.get(f"{metric}_mean", math.nan)),
        float(row.get(f"{metric}_lo", math.nan)),
        float(row.get(f"{metric}_hi", math.nan)),
        tuple(float(v) for v in points.split(";") if v),
    )


def design_labels(study: StudyData) -> dict[str, str]:
    """Summary design (``fedmarket compare``'s ``key=value`` of the sweep) → the short
    label the per-round figures use (:func:`design_of`), through ``study.parquet``'s
    ``run_id``s, so every figure names a design alike; identity where unknown."""
    table = study.table
    if table is None or not {"run_id", "design"} <= set(table.columns):
        return {}
    short = {run.path.name: label for label, runs in study.designs.items() for run in runs}
    return {
        str(design): short[str(run_id)]
        for run_id, design in zip(table["run_id"], table["design"], strict=True)
        if str(run_id) in short
    }


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary's rows as dicts, built column by column (``to_dict("records")`` walks
    a summary's thousands of mixed-type columns row-wise and takes seconds)."""
    columns = summary.to_dict("list")
    return [{c: values[i] for c, values in columns.items()} for i in range(len(summary))]


def _per_design(records: Sequence[Mapping[str, Any]], metric: str) -> list[tuple[str, Estimate]]:
    """``(design, estimate)`` of ``metric`` for every design where it is defined."""
    out = []
    for rec in records:
        est = summary_estimate(rec, metric)
        if est.n > 0:
            out.append((str(rec["design"]), est))
    return out


def _interval_title(estimates: Sequence[Estimate]) -> str:
    from simulation.study.stats import MIN_SEEDS

    if any(e.has_interval for e in estimates):
        return "bar: mean, whisker: 95% interval, dots: seeds"
    return f"bar: mean, dots: seeds (no interval below {MIN_SEEDS} seeds)"


def _wrapped(labels: Sequence[str]) -> list[str]:
    return [textwrap.fill(label, 40) for label in labels]


def _estimate_bars(
    study: StudyData, records: Sequence[Mapping[str, Any]], metric: str, label: str
) -> Figure | None:
    """One horizontal bar per design: the mean, the interval when there is one, and every
    seed's value as a dot (the only spread shown below the seeds an interval needs)."""
    found = _per_design(records, metric)
    if not found:
        logger.info("%s: %s undefined in every design; figure skipped", study.path, metric)
        return None
    labels = _wrapped([d for d, _ in found])
    estimates = [e for _, e in found]
    lines = sum(lbl.count("\n") + 1 for lbl in labels)
    fig, (ax,) = _figure(height=max(2.5, 0.3 * lines + 0.2 * len(labels) + 1.5))
    err = np.array(
        [[e.mean - e.lo, e.hi - e.mean] if e.has_interval else [0.0, 0.0] for e in estimates]
    ).T
    rows = np.arange(len(labels))
    colours = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(len(labels))]
    ax.barh(rows, [e.mean for e in estimates], xerr=err, color=colours, capsize=3, alpha=0.8)
    ax.set_yticks(rows, labels)
    for i, e in enumerate(estimates):
        ax.plot(e.points, [i] * len(e.points), "o", color="black", markersize=3)
    ax.set(xlabel=label, title=f"{label} per design\n({_interval_title(estimates)})")
    ax.xaxis.set_major_locator(MaxNLocator(5))  # small values have long tick labels
    fig.tight_layout()
    return fig


def _round_frames(study: StudyData, column: str) -> dict[str, pd.DataFrame]:
    """Per design, ``column`` per round (rows) and seed (columns); designs without it left out."""
    out: dict[str, pd.DataFrame] = {}
    for design, runs in study.designs.items():
        series = {
            (r.seed if r.seed is not None else i): s
            for i, r in enumerate(runs)
            if (s := _global_series(r, column)) is not None
        }
        if series:
            out[design] = pd.DataFrame(series).sort_index(axis=0).sort_index(axis=1)
    return out


def _identical(frames: Mapping[str, pd.DataFrame]) -> bool:
    """Whether every design has the same value on every seed and round (e.g. reward
    designs over the same training: the curves coincide and one line says so)."""
    first, *rest = frames.values()
    return bool(rest) and all(
        f.shape == first.shape
        and list(f.columns) == list(first.columns)
        and np.array_equal(f.to_numpy(float), first.to_numpy(float), equal_nan=True)
        for f in rest
    )


def _values(frames: Mapping[str, pd.DataFrame]) -> np.ndarray:
    """Every value of the frames, flat (empty without frames)."""
    if not frames:
        return np.zeros(0)
    return np.concatenate([f.to_numpy(float).ravel() for f in frames.values()])


def _has_data(frames: Mapping[str, pd.DataFrame], *, zero_is_none: bool = False) -> bool:
    values = _values(frames)
    finite = values[~np.isnan(values)]
    return finite.size > 0 and not (zero_is_none and not np.any(finite))


def _round_curve(ax: Any, frame: pd.DataFrame, metric: str, colour: str, label: str) -> None:
    """Mean per round; a 95% band (:func:`~simulation.study.stats.estimate`) from
    :data:`~simulation.study.stats.MIN_SEEDS` seeds, else every seed as a thin line."""
    from simulation.study.stats import MIN_SEEDS, estimate

    x = frame.index.to_numpy()
    ests = [estimate(row.tolist(), metric, key=("round", int(r))) for r, row in frame.iterrows()]
    ax.plot(x, [e.mean for e in ests], color=colour, marker="o", ms=3, label=label)
    if frame.shape[1] >= MIN_SEEDS:
        lo = [e.lo if e.has_interval else e.mean for e in ests]
        hi = [e.hi if e.has_interval else e.mean for e in ests]
        ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
    else:
        for seed in frame.columns:
            ax.plot(x, frame[seed].to_numpy(float), color=colour, lw=0.6, alpha=0.45)


def _design_curves(ax: Any, frames: Mapping[str, pd.DataFrame], metric: str) -> str:
    """One curve per design, or one labelled "identical across designs" when they coincide;
    returns the spread note for the title."""
    from simulation.study.stats import MIN_SEEDS

    if _identical(frames):
        design, frame = next(iter(frames.items()))
        label = f"identical across designs ({len(frames)} designs, n={frame.shape[1]})"
        _round_curve(ax, frame, metric, OKABE_ITO[0], label)
    else:
        for i, (design, frame) in enumerate(frames.items()):
            label = f"{design} (n={frame.shape[1]})"
            _round_curve(ax, frame, metric, OKABE_ITO[i % len(OKABE_ITO)], label)
    few = min(f.shape[1] for f in frames.values()) < MIN_SEEDS
    return "mean; thin lines: seeds" if few else "mean ± 95% interval"


def _study_accuracy_loss(study: StudyData) -> Figure | None:
    acc, loss = _round_frames(study, "test_accuracy"), _round_frames(study, "test_loss")
    if not (_has_data(acc) or _has_data(loss)):
        logger.info("%s: no test accuracy or loss; accuracy figure skipped", study.path)
        return None
    fig, (ax_acc, ax_loss) = _figure(2, height=3.8)
    note = _design_curves(ax_acc, acc, "test_accuracy") if acc else ""
    if loss:
        _design_curves(ax_loss, loss, "test_loss")
    ax_acc.set(xlabel="round", ylabel="test accuracy", title=f"Accuracy ({note})")
    ax_loss.set(xlabel="round", ylabel="test loss", title=f"Loss ({note})")
    values = _values(loss)
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax_loss.set_yscale("log")
    _legend_below(fig, ax_acc)
    return fig


def _legend_below(fig: Figure, ax: Any) -> None:
    """One legend under the axes, so long design labels never squeeze the plots."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        fig.tight_layout()
        return
    labels = [textwrap.fill(label, 90) for label in labels]  # never wider than the figure
    ncol = 1 if max(len(label) for label in labels) > 40 else 2
    rows = -(-sum(label.count("\n") + 1 for label in labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize="small")
    fig.tight_layout(rect=(0.0, min(0.5, 0.06 * rows + 0.02), 1.0, 1.0))


def _study_epsilon(study: StudyData) -> Figure | None:
    frames = _round_frames(study, "epsilon_max")
    if not _has_data(frames, zero_is_none=True):  # no DP anywhere: ε is 0 throughout
        logger.info("%s: no privacy loss in any run; ε figure skipped", study.path)
        return None
    fig, (ax,) = _figure()
    note = _design_curves(ax, frames, "epsilon_max")
    ax.set(xlabel="round", ylabel="ε max", title=f"Privacy loss ({note})")
    _legend_below(fig, ax)
    return fig


#: Summary columns of the study outcome figures (``<set>:<name>:<column>`` of groups data).
ATTACKERS_TOKEN_SHARE = "total:attackers:token_share"
HONEST_PROFIT = "total:honest:net_profit_per_owner"


def _sets_of(summary: pd.DataFrame, kind: str, column: str) -> list[str]:
    """Names of ``kind``'s sets (``group``, ``kind``) with a ``column`` in the summary."""
    pattern = re.compile(rf"^{re.escape(kind)}:(.+):{re.escape(column)}_mean$")
    return [m.group(1) for c in summary.columns if (m := pattern.match(str(c)))]


def _stacked_panel(ax: Any, summary: pd.DataFrame, kind: str, title: str) -> bool:
    """Mean token share of each set of ``kind`` per design, stacked (a partition: ≈ 1)."""
    names_ = _sets_of(summary, kind, "token_share")
    designs = summary["design"].astype(str).tolist()
    shares = {
        n: np.nan_to_num(summary[f"{kind}:{n}:token_share_mean"].to_numpy(float)) for n in names_
    }
    if not names_ or not any(np.any(v) for v in shares.values()):
        ax.set_visible(False)
        return False
    rows = np.arange(len(designs))
    left = np.zeros(len(designs))
    for i, n in enumerate(names_):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        ax.barh(rows, shares[n], left=left, color=colour, label=n, alpha=0.85)
        left += shares[n]
    ax.set_yticks(rows, _wrapped(designs))
    ax.set(xlim=(0, 1), xlabel="share of all tokens (mean over seeds)", title=title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return True


def _study_token_share_groups(study: StudyData, summary: pd.DataFrame) -> Figure | None:
    """Token share (rewards + royalties) by population group and by attack role, stacked
    per design."""
    height = max(2.0, 0.4 * len(summary) + 1.4)
    fig = Figure(figsize=(7.5, 2 * height), layout="constrained")
    ax_group, ax_kind = fig.subplots(2, 1)
    drawn = [
        _stacked_panel(ax_group, summary, "group", "Token share by population group"),
        _stacked_panel(ax_kind, summary, "kind", "Token share by attack role"),
    ]
    if not any(drawn):
        logger.info("%s: no tokens paid to any group; group share figure skipped", study.path)
        return None
    return fig


_SCORES = ("precision", "recall", "f1")


def _study_detection(study: StudyData, records: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Precision, recall and F1 of telling attacking owners from honest ones, per detector
    that acted and per design (``total:attackers:<detector>_<score>``)."""
    from simulation.results.groups import DETECTORS

    acted = [
        d for d in DETECTORS if any(_per_design(records, f"{ATTACK_SET}:{d}_{s}") for s in _SCORES)
    ]
    if not acted:
        logger.info("%s: no detector acted or no attackers; detection figure skipped", study.path)
        return None
    designs = [str(r["design"]) for r in records]
    fig, axes = _figure(len(acted), height=max(3.2, 0.35 * len(designs) + 2.4))
    width = 0.8 / len(_SCORES)
    notes = []
    for ax, det in zip(axes, acted, strict=True):
        rows = np.arange(len(designs))
        for j, score in enumerate(_SCORES):
            y = rows + (j - 1) * width
            ests = [summary_estimate(r, f"{ATTACK_SET}:{det}_{score}") for r in records]
            notes += ests
            means = [e.mean if e.n else 0.0 for e in ests]
            ax.barh(y, means, height=width, color=OKABE_ITO[j], label=score, alpha=0.85)
            for yi, e in zip(y, ests, strict=True):
                ax.plot(e.points, [yi] * len(e.points), "o", color="black", markersize=2)
                if e.n == 0:
                    ax.text(0.01, yi, "n/a", va="center", fontsize=6)
        ax.set_yticks(rows, _wrapped(designs) if ax is axes[0] else [""] * len(designs))
        ax.set(xlim=(0, 1.05), title=f"{det}", xlabel="score")
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize="small")
    fig.suptitle(f"Detection of attacking owners ({_interval_title([e for e in notes if e.n])})")
    fig.tight_layout()
    return fig


ATTACK_SET = "total:attackers"


def _has_attackers(summary: pd.DataFrame) -> bool:
    column = f"{ATTACK_SET}:owners_mean"
    return column in summary and bool((summary[column].fillna(0.0) > 0).any())


def _paid_anything(study: StudyData) -> bool:
    return any(not r.earnings().empty for r in study.runs)


_ATTACK_FRACTION = ("attacker_fraction", "attackers_fraction", "attack_fraction")
_ATTACK_SUCCESS = ("attack_success", "attack_success_rate", "asr")
_ATTACK_ROWS = ("defence", "defense", "aggregation", "aggregator", "mechanism", "design")


def _heatmap_rows(study: StudyData, table: pd.DataFrame, frac: str) -> pd.Series:
    """Row labels of the attack heatmap: the study's swept parameters (from
    ``study.json``) except the ones that set the attacker fraction, so each row is a
    defence and each column a fraction; else a conventional column, else ``all``."""
    swept: list[str] = []
    meta = study.path / "study.json"
    if meta.is_file():
        params = json.loads(meta.read_text(encoding="utf-8")).get("parameters") or {}
        swept = [c for c in params if c in table.columns and "fraction" not in c]
    if swept:
        return (
            table[swept]
            .astype(str)
            .apply(lambda r: ", ".join(f"{c.rsplit('.', 1)[-1]}={v}" for c, v in r.items()), axis=1)
        )
    row_col = next((c for c in _ATTACK_ROWS if c in table.columns), None)
    return table[row_col].astype(str) if row_col else pd.Series("all", index=table.index)


def _study_attack_heatmap(study: StudyData) -> Figure | None:
    table = study.table
    if table is None:
        logger.info("%s: no study.parquet/summary.csv; attack heatmap skipped", study.path)
        return None
    frac = next((c for c in _ATTACK_FRACTION if c in table.columns), None)
    success = next((c for c in _ATTACK_SUCCESS if c in table.columns), None)
    if frac is None or success is None:
        logger.info(
            "%s: study table lacks attacker-fraction/attack-success columns; heatmap skipped",
            study.path,
        )
        return None
    rows = _heatmap_rows(study, table, frac)
    grid = (
        table.assign(_row=rows)
        .pivot_table(index="_row", columns=frac, values=success, aggfunc="mean")
        .sort_index()
    )
    if grid.empty or bool(np.isnan(grid.to_numpy(float)).all()):
        logger.info("%s: attack success undefined in every run; heatmap skipped", study.path)
        return None
    fig, (ax,) = _figure(height=max(2.5, 0.5 * len(grid) + 1.5))
    image = ax.imshow(grid.to_numpy(), cmap="cividis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [f"{c:g}" for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), list(grid.index))
    ax.grid(False)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if not np.isnan(value):
            # cividis is bright at the top: dark text there stays readable
            color = "k" if value > 0.6 else "w"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="attacker fraction", ylabel="defence", title="Attack success")
    # Constrained layout makes room for the colorbar; tight_layout cannot
    # and leaves the figure as it was, with a warning.
    fig.set_layout_engine("constrained")
    fig.colorbar(image, ax=ax, label="attack success")
    return fig


def study_figures(study: StudyData, summary: pd.DataFrame | None = None) -> dict[str, Figure]:
    """The study's comparative figures by name, each skipped when its metric has no data:
    accuracy/loss and ε per round (one line when identical across designs), attackers'
    token share, honest profit, token share by group, detection and Gini per design (from
    ``summary``, default :func:`study_summary`), and the attack heatmap."""
    table = study_summary(study) if summary is None else summary
    labels = design_labels(study)
    table = table.assign(design=[labels.get(str(d), str(d)) for d in table["design"]])
    records = summary_records(table)
    attackers = _has_attackers(table)
    paid = _paid_anything(study)
    with figure_style():
        made: dict[str, Figure | None] = {
            "accuracy_loss": _study_accuracy_loss(study),
            "epsilon": _study_epsilon(study),
            "attacker_token_share": (
                _estimate_bars(study, records, ATTACKERS_TOKEN_SHARE, "Attackers' token share")
                if attackers and paid
                else None
            ),
            "honest_profit": (
                _estimate_bars(study, records, HONEST_PROFIT, "Honest profit per owner (tokens)")
                if paid
                else None
            ),
            "token_share_groups": _study_token_share_groups(study, table) if paid else None,
            "detection": _study_detection(study, records) if attackers else None,
            "gini": (
                _estimate_bars(
                    study, records, "reward_gini", "Gini of tokens (rewards + royalties)"
                )
                if paid
                else None
            ),
            "attack_heatmap": _study_attack_heatmap(study),
        }
    return {name: fig for name, fig in made.items() if fig is not None}


# -- saving -------------------------------------------------------------------------------


def _metadata(fmt: str) -> dict[str, Any]:
    """Fixed metadata: no creation date, so identical inputs give identical bytes."""
    if fmt == "pdf":
        return {"CreationDate": None, "ModDate": None, "Producer": "fedmarket", "Creator": None}
    if fmt == "png":
        return {"Software": "fedmarket"}
    if fmt == "svg":
        return {"Date": None, "Creator": "fedmarket"}
    return {}


def save_figures(
    figures: Mapping[str, Figure], out_dir: Path, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """Write each figure as ``NAME.FMT`` into ``out_dir``; returns the paths written."""
    bad = [f for f in formats if f not in ("pdf", "png", "svg")]
    if bad:
        raise OutputsError(f"unknown figure format(s) {', '.join(bad)} (valid: pdf, png, svg)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with figure_style():
        for name, fig in figures.items():
            for fmt in formats:
                target = out_dir / f"{name}.{fmt}"
                fig.savefig(target, format=fmt, metadata=_metadata(fmt))
                written.append(target)
    logger.info("wrote %d figure files to %s", len(written), out_dir)
    return written


def figures_for(path: Path | str) -> dict[str, Figure]:
    """The figures for a run or a study directory, whichever ``path`` is."""
    p = Path(path)
    if not p.exists():
        raise OutputsError(f"{p}: no such run or study directory")
    if is_run_dir(p):
        return run_figures(load_run(p))
    if is_study_dir(p):
        return study_figures(load_study(p))
    raise OutputsError(f"{p}: neither a run directory (manifest.json) nor a study of runs")


def plot(
    path: Path | str, out_dir: Path | None = None, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """Re-plot a saved run or study into ``out_dir`` (default ``PATH/plots``)."""
    p = Path(path)
    figures = figures_for(p)
    return save_figures(figures, out_dir if out_dir is not None else p / "plots", formats)
