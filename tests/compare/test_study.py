"""Running studies: isolated run directories, resume, failures, CLI exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from simulation.cli.compare import mount
from simulation.scenario.sweep import resolve_study
from simulation.study.compare import METRICS, run_study
from tests.compare.conftest import QUICKSTART, TINY_SET, write_sweep


def _app() -> typer.Typer:
    app = typer.Typer()
    mount(app)

    @app.callback()
    def _root() -> None:
        """Keeps ``compare`` a sub-command, as on the real app."""

    return app


def _manifest_mtimes(study_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in study_dir.glob("runs/*/manifest.json")}


def test_study_writes_tables_and_resumes(tmp_path: Path) -> None:
    study = resolve_study(
        QUICKSTART, [*TINY_SET, "rewards.mechanism=equal,data_size"], engine="inprocess"
    )
    out = tmp_path / "study"
    first = run_study(study, out, workers=1)
    assert (first.ran, first.reused, first.failed) == (2, 0, 0)
    for name in ("study.json", "study.parquet", "study.csv", "summary.parquet", "summary.csv"):
        assert (out / name).is_file(), name
    table = pd.read_parquet(out / "study.parquet")
    assert list(table.columns[:4]) == ["run_id", "design", "rewards.mechanism", "seed"]
    assert set(METRICS) <= set(table.columns)
    assert sorted(table["rewards.mechanism"]) == ["data_size", "equal"]
    assert (table["status"] == "ok").all() and (table["seed"] == 42).all()
    assert table["test_accuracy"].between(0, 1).all()
    assert (table["attacker_token_share"] == 0.0).all()  # quickstart has no attackers
    equal = table.set_index("rewards.mechanism").loc["equal"]
    assert equal["reward_gini"] == pytest.approx(0.0, abs=1e-6)
    for run_id in table["run_id"]:
        assert (out / "runs" / run_id / "ledger.db").is_file()
    resolved = json.loads((out / "study.json").read_text())
    assert resolved["parameters"] == {"rewards.mechanism": ["equal", "data_size"]}
    assert [r["run_id"] for r in resolved["runs"]] == list(table["run_id"])
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 2 and (summary["runs"] == 1).all()
    assert summary["test_accuracy_ci95"].isna().all()  # one seed: no CI
    # the reward design does not touch training: paired on the one seed, no difference
    data_size = summary.set_index("design").iloc[1]
    assert data_size["test_accuracy_diff"] == 0.0 and data_size["test_accuracy_diff_n"] == 1
    assert math.isnan(data_size["test_accuracy_p"])  # one pair: no test

    before = _manifest_mtimes(out)
    second = run_study(study, out, workers=1)
    assert (second.ran, second.reused, second.failed) == (0, 2, 0)
    assert _manifest_mtimes(out) == before
    assert second.table["reused"].all()
    pd.testing.assert_series_equal(second.table["test_accuracy"], first.table["test_accuracy"])

    partial = out / "runs" / table["run_id"].iloc[0]
    (partial / "manifest.json").write_text('{"scenario": {}')  # killed mid-write
    third = run_study(study, out, workers=1)
    assert (third.ran, third.reused, third.failed) == (1, 1, 0)
    assert third.table["test_accuracy"].tolist() == first.table["test_accuracy"].tolist()


def test_failing_run_is_recorded_and_exits_3(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        """
schema_version: 1
name: failing
base: BASE
mode: zip
parameters:
  rewards.mechanism: [equal, data_size]
  model.hidden: [[8], [16]]
engine: inprocess
""",
    )
    out = tmp_path / "study"
    study = resolve_study(sweep, TINY_SET)
    blocked = study.variants[1].run_id
    # A file where the second run's directory must go: that run fails at run time.
    (out / "runs").mkdir(parents=True)
    (out / "runs" / blocked).write_text("not a directory")
    args = ["compare", str(sweep), "--out", str(out), "--workers", "1", *_set(TINY_SET)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 3, result.output
    assert "2 ran, 0 reused, 1 failed" in result.output
    assert f"run {blocked} failed: " in result.output
    table = pd.read_csv(out / "study.csv")
    assert table["status"].tolist() == ["ok", "failed"]
    assert table["run_id"].iloc[1] == blocked and "Error" in table["error"].iloc[1]
    assert math.isnan(table["test_accuracy"].iloc[1])
    assert table["model.hidden"].tolist() == ["[8]", "[16]"]  # lists as JSON text
    summary = pd.read_csv(out / "summary.csv")
    assert summary["failed"].tolist() == [0, 1]
    # the failed run is retried on resume; the finished one is not
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 3
    assert "1 ran, 1 reused, 1 failed" in again.output


def test_invalid_study_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml", "base: BASE\nparameters:\n  rewards.mechanism: [equal, nope]\n"
    )
    out = tmp_path / "study"
    result = CliRunner().invoke(_app(), ["compare", str(sweep), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{sweep}: parameters.rewards.mechanism -> unknown mechanism 'nope'" in result.output
    assert not out.exists()
    bad_engine = CliRunner().invoke(
        _app(), ["compare", str(sweep), "--out", str(out), "--engine", "ray"]
    )
    assert bad_engine.exit_code == 2
    bad_interval = CliRunner().invoke(
        _app(), ["compare", str(sweep), "--out", str(out), "--interval", "normal"]
    )
    assert bad_interval.exit_code == 2
    assert "--interval: unknown 'normal' (valid: bootstrap, t)" in bad_interval.output


def test_cli_scenario_with_comma_sweep_in_worker_processes(tmp_path: Path) -> None:
    """Two spawned workers (the pool path), a scenario file and a --set sweep."""
    out = tmp_path / "study"
    args = ["compare", str(QUICKSTART), "--out", str(out), "--engine", "inprocess"]
    args += ["--workers", "2", *_set([*TINY_SET, "seed=1,2"])]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "2 ran, 0 reused, 0 failed" in result.output
    table = pd.read_parquet(out / "study.parquet")
    assert sorted(table["seed"]) == [1, 2] and (table["design"] == "base").all()
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 1 and summary["runs"].iloc[0] == 2
    # two seeds: no interval (fewer than 5), the two per-seed values instead
    assert math.isnan(summary["test_accuracy_ci95"].iloc[0])
    assert len(summary["test_accuracy_points"].iloc[0].split(";")) == 2
    assert "95% bootstrap interval" in result.output


HEARTBEAT_LOST = "No heartbeat received from the task"


@pytest.mark.slow
def test_flower_runs_in_parallel_are_isolated(tmp_path: Path) -> None:
    """Two Flower runs at once, each with its own Ray session, ledger and directory."""
    study = resolve_study(
        QUICKSTART,
        [*TINY_SET, "resources.num_cpus=1", "rewards.mechanism=equal,data_size"],
        engine="flower",
    )
    out = tmp_path / "study"
    outcome = run_study(study, out, workers=2)
    errors = [e for e in outcome.table["error"].tolist() if e]
    if errors and all(HEARTBEAT_LOST in e for e in errors):
        # Known, not yet understood: in a full suite on 2 cores one of the two runs'
        # ServerApp processes sometimes never heartbeats to its SuperLink (Flower
        # ends the run after 2 x 30 s). It has never happened to a run alone; the
        # failed run is resumed once (the finished one is reused), and any other
        # error, or a second loss, fails the test. See the closing note of #15.
        outcome = run_study(study, out, workers=2)
    assert outcome.failed == 0, outcome.table["error"].tolist()
    heads = set()
    for run_id in outcome.table["run_id"]:
        manifest = json.loads((out / "runs" / run_id / "manifest.json").read_text())
        heads.add(manifest["ledger_head"])
        assert (out / "runs" / run_id / "ledger.db").is_file()
    assert len(heads) == 2


def _set(options: list[str]) -> list[str]:
    return [arg for opt in options for arg in ("--set", opt)]


def test_edited_base_is_not_resumed(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(QUICKSTART.read_text())
    out = tmp_path / "study"
    study = resolve_study(base, TINY_SET, engine="inprocess")
    assert run_study(study, out, workers=1).ran == 1
    assert run_study(study, out, workers=1).ran == 0
    base.write_text(QUICKSTART.read_text() + "description: edited\n")
    edited = resolve_study(base, TINY_SET, engine="inprocess")
    assert edited.variants[0].run_id == study.variants[0].run_id  # same overrides and seed
    again = run_study(edited, out, workers=1)
    assert (again.ran, again.reused) == (1, 0)
