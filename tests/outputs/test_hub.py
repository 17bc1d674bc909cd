"""Hub export: only what the run can back (weights hash, privacy, licence, config)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import typer
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from marketplace import Market
from simulation.cli.market import registry_app
from simulation.outputs.hub import HubError, privacy_claim


def _export(cli: typer.Typer, run: Path, version: str, out: Path) -> None:
    """``fedmarket export-hf RUN --version VERSION --out OUT``, which must succeed."""
    args = ["export-hf", str(run), "--version", version, "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_export_then_verify_artifact_end_to_end(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hf-export"
    _export(cli, run_dir, "final", out)
    assert {p.name for p in out.iterdir()} == {
        "model.safetensors",
        "config.json",
        "README.md",
        "fedmarket_provenance.json",
    }
    with Market.open(run_dir) as market:
        final = market.versions()[-1]
        head = market.head_hash
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 10 and config["input_shape"] == [1, 8, 8]
    assert config["fedmarket_version"] == final.version
    card = ModelCard.load(out / "README.md")
    assert card.data.datasets == ["digits"]
    assert "federated-learning" in card.data.tags
    assert head in card.text and final.artifact_sha256 in card.text
    assert "δ = 1e-05" in card.text and "client-003" in card.text
    provenance = json.loads((out / "fedmarket_provenance.json").read_text())
    assert provenance["inclusion_proof"]["seq"] == final.seq
    assert provenance["contributors"] == pytest.approx(dict(final.contributors))

    ok = CliRunner().invoke(registry_app, ["verify-artifact", str(run_dir), str(out)])
    assert ok.exit_code == 0, ok.output
    assert final.version in ok.stdout

    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    bad = CliRunner().invoke(registry_app, ["verify-artifact", str(run_dir), str(out)])
    assert bad.exit_code == 5


def test_export_nonfinal_version_without_weights_fails(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    shutil.rmtree(run_dir / "versions")  # as if output.keep_versions were off
    args = ["export-hf", str(run_dir), "--version", "v0001", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "no weights for v0001" in result.stderr and "output.keep_versions" in result.stderr
    assert not (tmp_path / "o").exists()


def test_every_kept_version_exports_and_verifies(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    with Market.open(run_dir) as market:
        versions = market.versions()
    assert [v.version for v in versions] == ["v0001", "v0002"]
    kept = sorted(p.name for p in (run_dir / "versions").iterdir())
    assert kept == ["v0001.safetensors", "v0002.safetensors"]
    for v in versions:
        out = tmp_path / v.version
        _export(cli, run_dir, v.version, out)
        weights = (out / "model.safetensors").read_bytes()
        assert hashlib.sha256(weights).hexdigest() == v.artifact_sha256
        ok = CliRunner().invoke(registry_app, ["verify-artifact", str(run_dir), str(out)])
        assert ok.exit_code == 0 and v.version in ok.stdout


def test_export_claims_epsilon_at_the_versions_round(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    rounds = pd.read_parquet(run_dir / "rounds.parquet").set_index("round")["epsilon_max"]
    assert rounds[1] < rounds[2]  # ε grows: the end-of-run value would overstate v0001's
    out = tmp_path / "v1"
    _export(cli, run_dir, "v0001", out)
    card = ModelCard.load(out / "README.md")
    assert f"ε = {rounds[1]:.4f}, δ = 1e-05" in card.text
    assert f"{rounds[2]:.4f}" not in card.text
    assert "differential-privacy" in card.data.tags
    assert card.data.license == "apache-2.0"  # the default: the scenario names none
    provenance = json.loads((out / "fedmarket_provenance.json").read_text())
    assert provenance["privacy"] == {
        "mechanism": "dp_sgd",
        "epsilon": pytest.approx(rounds[1]),
        "delta": 1e-05,
        "round": 1,
    }


def test_export_without_dp_claims_no_privacy(
    cli: typer.Typer, plain_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "plain"
    _export(cli, plain_run, "v0002", out)
    card = ModelCard.load(out / "README.md")
    assert "differential-privacy" not in card.data.tags
    assert "DP-SGD" not in card.text and "ε" not in card.text
    assert "no differential privacy" in card.text
    assert card.data.license == "mit"  # output.license
    assert json.loads((out / "fedmarket_provenance.json").read_text())["privacy"] is None
    config = json.loads((out / "config.json").read_text())
    assert config["fedmarket_model"] == "logreg"
    assert "channels" not in config and "hidden_sizes" not in config
    assert config["num_parameters"] == 64 * 10 + 10


def test_mlp_config_has_only_mlp_fields(cli: typer.Typer, run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp"
    _export(cli, run_dir, "final", out)
    config = json.loads((out / "config.json").read_text())
    assert config["fedmarket_model"] == "mlp" and config["hidden_sizes"] == [64]
    assert "channels" not in config
    assert config["tensor_shapes"] == {
        "1.bias": [64],
        "1.weight": [64, 64],
        "3.bias": [10],
        "3.weight": [10, 64],
    }


def test_client_level_dp_claims_the_recorded_client_epsilon() -> None:
    dp = {"mode": "dp-fedavg", "noise_multiplier": 0.8, "clipping_norm": 1.0, "delta": 1e-6}
    scenario = {"privacy": {"mode": "none"}, "aggregation": {"client_dp": dp}}
    rounds = pd.DataFrame({"round": [0, 1, 2, 3], "client_epsilon": [float("nan"), 1.0, 1.5, 2.0]})
    claim = privacy_claim(scenario, rounds, 2)
    assert claim is not None and claim.epsilon == 1.5 and claim.delta == 1e-6
    assert "DP-FedAvg" in claim.section and "(ε = 1.5000, δ = 1e-06)" in claim.section
    with pytest.raises(HubError, match="no client_epsilon for round 0"):
        privacy_claim(scenario, rounds, 0)
    assert privacy_claim({"privacy": {"mode": "none"}}, None, 3) is None


def test_export_refuses_tampered_weights(cli: typer.Typer, run_dir: Path, tmp_path: Path) -> None:
    weights = run_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["export-hf", str(run_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 5
    assert "differs from" in result.stderr


def test_export_unknown_version(cli: typer.Typer, run_dir: Path, tmp_path: Path) -> None:
    args = ["export-hf", str(run_dir), "--version", "v9999", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "v9999" in result.stderr
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
