"""Writing a run's results: tidy tables, the manifest, the model.

Results are data, not live objects: plots and reports read only these files,
so any past run can be re-plotted. Long-form metrics have one row per
``(round, client, metric)``; per-round global metrics one row per round; the
partition's label counts one row per ``(client, label)`` (``label_counts.parquet``,
what ``fedmarket plot`` draws the label distribution from, without the dataset).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from marketplace.keyring import Keyring
from marketplace.ledger import LedgerSummary
from simulation import names
from simulation.config.schema import VERSIONS_DIR, Scenario
from simulation.fl.federated import FederatedData
from simulation.fl.weights import safetensors_bytes
from simulation.results.privacy import privacy_manifest
from simulation.world.records import MetricRow, WorldResult
from simulation.world.setup import account_name

log = logging.getLogger("fedmarket.results")

PACKAGES = (
    "fedmarket",
    "flwr",
    "flwr-datasets",
    "datasets",
    "opacus",
    "torch",
    "numpy",
    "scipy",
    "simpy",
    "pydantic",
    "pyyaml",
    "ray",
    "cryptography",
    "pynacl",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "safetensors",
    "datasets",
    "huggingface_hub",
)
"""Packages whose versions can change a result; pinned in ``constraints.txt``."""

LABEL_COUNTS = "label_counts.parquet"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(*args: str, cwd: Path | None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_commit(cwd: Path | None = None) -> str | None:
    """The current git commit (with ``-dirty`` if tracked files changed), if any."""
    try:
        rev = _git("rev-parse", "HEAD", cwd=cwd)
        dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def write_versions(directory: Path, weights: dict[str, bytes]) -> None:
    """Write each version's safetensors bytes, exactly the bytes its
    ``artifact_sha256`` was computed from, as ``directory/vNNNN.safetensors``."""
    directory.mkdir(parents=True, exist_ok=True)
    for version, data in sorted(weights.items()):
        (directory / f"{version}.safetensors").write_bytes(data)


_MEASURED_ONLY = frozenset(
    {names.CLIENT_EPSILON, names.CLIENT_EPSILON_ROUND, names.REFERENCE_SE_RATIO}
)
"""Round fields that exist only in some rounds (client-level DP, a Monte Carlo
reference) and are NaN otherwise: a NaN one gets no metric row."""


def metrics_frame(result: WorldResult) -> pd.DataFrame:
    """Long form: ``round, client, metric, value`` (global metrics use client ``global``)."""
    rows: list[MetricRow] = list(result.rows)
    g = names.GLOBAL
    for rec in result.rounds:
        for key, value in dataclasses.asdict(rec).items():
            if key in ("round", "model_version", "wall_seconds"):
                continue
            if key in _MEASURED_ONLY and math.isnan(value):
                continue  # not measured this round (or run): no row
            rows.append(MetricRow(rec.round, g, key, float(value)))
    if result.baseline_accuracy is not None:
        for rec, base in zip(result.rounds, result.baseline_accuracy, strict=False):
            rows.append(MetricRow(rec.round, g, names.BASELINE_ACCURACY, base))
            rows.append(MetricRow(rec.round, g, names.ACCURACY_DROP, base - rec.test_accuracy))
    df = pd.DataFrame(rows, columns=["round", "client", "metric", "value"])
    return df.sort_values(["round", "client", "metric"], kind="stable").reset_index(drop=True)


def label_counts_frame(data: FederatedData) -> pd.DataFrame:
    """Long form: ``client, natural_id, label, label_name, count`` for every client and
    label (zeros included), in client then label order."""
    counts = data.label_counts()
    columns = ["client", "natural_id", "label", "label_name", "count"]
    if counts.size == 0:
        return pd.DataFrame([], columns=columns)
    n, k = counts.shape
    names = list(data.class_names) or [str(j) for j in range(k)]
    ids = list(data.client_ids) or [""] * n
    # Whole columns (client-major, label-minor) instead of one tuple per cell: the same
    # frame, O(clients) Python work rather than O(clients × labels) tuples.
    return pd.DataFrame(
        {
            "client": np.repeat(np.array([account_name(i) for i in range(n)], dtype=object), k),
            "natural_id": np.repeat(np.array(ids, dtype=object), k),
            "label": np.tile(np.arange(k, dtype=np.int64), n),
            "label_name": np.tile(np.array(names, dtype=object), n),
            "count": counts.reshape(-1).astype(np.int64),
        },
        columns=columns,
    )


def rounds_frame(result: WorldResult) -> pd.DataFrame:
    """One row per round (round 0 is the initial model)."""
    df = pd.DataFrame([dataclasses.asdict(r) for r in result.rounds])
    return df.drop(columns=["wall_seconds"])


MANIFEST = "manifest.json"


def ledger_manifest(summary: LedgerSummary, keyring: Keyring | None) -> dict[str, Any]:
    """The manifest's ``ledger`` block: id, size, head, root and both digests.

    ``head`` is byte-identical for the same scenario, seed and keyring;
    ``content_digest`` for the same scenario and seed under any keyring (what
    ``fedmarket reproduce`` compares). ``amendments`` keeps earlier heads when
    entries are appended after the run (``registry import-hf``)."""
    block: dict[str, Any] = dict(summary.to_json())
    block["keyring_id"] = keyring.id if keyring is not None else None
    block["amendments"] = []
    return block


def amend_manifest(run_dir: Path, summary: LedgerSummary, *, reason: str) -> dict[str, Any] | None:
    """Record a post-run append: the manifest's ledger head becomes ``summary``'s and
    the previous one moves to ``ledger.amendments`` (so ``ledger verify`` still
    compares against the manifest). ``None`` when the run has no manifest."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    ledger = manifest.get("ledger")
    if not isinstance(ledger, dict):
        return manifest
    previous = {k: ledger[k] for k in ("size", "head", "root", "content_digest") if k in ledger}
    ledger["amendments"] = [*ledger.get("amendments", []), {**previous, "superseded_by": reason}]
    ledger.update({k: v for k, v in summary.to_json().items() if k != "treasury_key"})
    manifest["ledger_head"] = summary.head
    _write_manifest(path, manifest)
    return manifest


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def client_dp_manifest(scenario: Scenario, result: WorldResult) -> dict[str, Any] | None:
    """The manifest's ``client_dp`` block: the mechanism, the accountant and the final
    client-level ε (``None`` without ``aggregation.client_dp``)."""
    dp = scenario.aggregation.client_dp
    if not dp:
        return None
    from simulation.fl.aggregation import DPFedAvgParams
    from simulation.fl.client_dp import ACCOUNTANT

    params = DPFedAvgParams(**{k: v for k, v in dp.items() if k != "mode"})
    released = [r for r in result.rounds if r.round > 0 and r.client_epsilon_round > 0]
    final = result.rounds[-1].client_epsilon
    return {
        "mode": dp["mode"],
        "noise_multiplier": params.noise_multiplier,
        "clipping_norm": params.clipping_norm,
        "delta": params.delta,
        "accountant": ACCOUNTANT,
        "rounds_released": len(released),
        names.CLIENT_EPSILON: None if math.isnan(final) else final,
        "covers": "the global models released each round (not the ledger's per-client"
        " entries, scores, rewards or metrics; see docs/client_dp.md)",
    }


def reference_manifest(scenario: Scenario, result: WorldResult) -> dict[str, Any] | None:
    """The precision of the reference contribution (``None`` without ``contribution.reference``):
    how many rounds were estimated by Monte Carlo and which of them missed the standard-error
    target (kept only under ``contribution.on_imprecise: record``; per round:
    ``rounds.parquet`` ``reference_se_ratio``)."""
    if not scenario.contribution.reference:
        return None
    sampled = [r for r in result.rounds if not math.isnan(r.reference_se_ratio)]
    return {
        "on_imprecise": scenario.contribution.on_imprecise,
        "exact_max_clients": scenario.contribution.exact_max_clients,
        "monte_carlo_rounds": len(sampled),
        "imprecise_rounds": [r.round for r in sampled if r.reference_se_ratio > 1.0],
    }


def write_results(
    scenario: Scenario,
    out_dir: Path,
    result: WorldResult,
    *,
    wall_seconds: float,
    keyring: Keyring | None = None,
) -> dict[str, Any]:
    """Write every result file into ``out_dir``; return the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = metrics_frame(result)
    rounds = rounds_frame(result)
    metrics.to_parquet(out_dir / "metrics.parquet", index=False)
    rounds.to_parquet(out_dir / "rounds.parquet", index=False)
    if scenario.output.csv:
        metrics.to_csv(out_dir / "metrics.csv", index=False)
        rounds.to_csv(out_dir / "rounds.csv", index=False)
    if result.data is not None:
        labels = label_counts_frame(result.data)
        labels.to_parquet(out_dir / LABEL_COUNTS, index=False)
        if scenario.output.csv:
            labels.to_csv(out_dir / "label_counts.csv", index=False)
    if scenario.output.save_model:
        (out_dir / "model.safetensors").write_bytes(safetensors_bytes(result.final_weights))
    if scenario.output.keep_versions:
        write_versions(out_dir / VERSIONS_DIR, result.version_weights)
    (out_dir / "ground_truth.json").write_text(result.ground_truth.to_json())
    (out_dir / "scenario.yaml").write_text(
        yaml.safe_dump(scenario.resolved(), sort_keys=False), encoding="utf-8"
    )
    final = result.rounds[-1]
    manifest = {
        "fedmarket_manifest": 1,
        "scenario": scenario.resolved(),
        "scenario_hash": scenario.sha256(),
        "seed": scenario.seed,
        "ledger_head": result.head_hash,
        "ledger": ledger_manifest(result.ledger, keyring) if result.ledger is not None else None,
        "final": {
            "round": final.round,
            "test_accuracy": final.test_accuracy,
            "test_loss": final.test_loss,
            "epsilon_max": final.epsilon_max,
            "simulated_seconds": final.time,
            "backdoor_success": (
                None if math.isnan(final.backdoor_success) else final.backdoor_success
            ),
        },
        # ε is about data: the budget, final.epsilon_max and rounds.parquet's
        # epsilon_max/epsilon_mean are over data owners (every identity that trained
        # on an owner's rows composes into it); the ledger records per-identity ε.
        "epsilon": {
            "epsilon_max_over": "data_owner",
            "per_owner": result.owner_epsilon,
            "per_identity": result.final_epsilon,
        },
        "grad_sample_mode": result.grad_sample_mode,
        "client_dp": client_dp_manifest(scenario, result),
        "reference": reference_manifest(scenario, result),
        "privacy": privacy_manifest(scenario, out_dir) if result.ledger is not None else None,
        "market": result.market.as_dict(),
        "baseline_accuracy": (result.baseline_accuracy[-1] if result.baseline_accuracy else None),
        "data": ({"name": scenario.dataset.name, **result.data.summary()} if result.data else None),
        "device": result.device.to_json() if result.device else None,
        "wall_seconds": wall_seconds,
        # Timed on this machine, so (like wall_seconds) never on the ledger or in metrics.
        "measured_latency_ms": result.latency.as_dict() if result.latency is not None else None,
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
    }
    _write_manifest(out_dir / MANIFEST, manifest)
    # The attack metrics are computed from the files just written (one definition,
    # shared with `fedmarket compare`), then added to the manifest.
    from simulation.results.groups import GROUPS_FILE, RunFiles, run_group_outcomes
    from simulation.results.metrics import run_metrics

    files = RunFiles.read(out_dir)  # read once for both
    run_group_outcomes(files).to_parquet(out_dir / GROUPS_FILE, index=False)
    metrics_now = run_metrics(files)
    manifest["attack"] = {
        k: (None if v != v else v)  # NaN is not JSON
        for k, v in metrics_now.items()
        if k not in ("test_accuracy", "test_loss", "epsilon_max", "wall_seconds")
    }
    _write_manifest(out_dir / MANIFEST, manifest)
    log.info("results written to %s", out_dir)
    return manifest
