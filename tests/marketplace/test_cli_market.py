"""``fedmarket ledger`` / ``fedmarket registry`` through typer's CliRunner."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from marketplace import Market, PriceTerms
from simulation.cli.market import ledger_app, registry_app
from tests.keyring import KEYRING
from tests.marketplace.conftest import populate

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    m = Market.create(run, keyring=KEYRING, seed=3, genesis={"scenario_hash": "cli"})
    populate(m)
    weights = b"fake safetensors bytes" * 10
    (run / "model.safetensors").write_bytes(weights)
    m.register_model_version(
        round=1,
        parent=None,
        artifact_sha256=hashlib.sha256(weights).hexdigest(),
        metrics={
            "accuracy": 0.93,
            "precision": 0.92,
            "recall": 0.91,
            "f1": 0.9,
            "loss": 0.2,
            "recall_gap": 0.05,
            "equalized_odds_difference": 0.03,
            "modelled_latency_ms": 0.002,
            "parameters": 1000.0,
            "size_bytes": 4000.0,
        },
        contributors={"client-000": 0.5, "client-001": 0.5},
        prices={"research": PriceTerms(price=10, duration=100.0, max_uses=3)},
    )
    m.register_model_version(
        round=2,
        parent="v0001",
        artifact_sha256="ab" * 32,
        metrics={
            "accuracy": 0.85,
            "precision": 0.8,
            "recall": 0.82,
            "f1": 0.8,
            "loss": 0.5,
            "recall_gap": 0.2,
            "equalized_odds_difference": 0.15,
            "modelled_latency_ms": 0.004,
            "parameters": 5000.0,
            "size_bytes": 20000.0,
        },
        contributors={"client-002": 1.0},
    )
    m.register_model_version(  # an imported model: footprint and metadata only
        round=0,
        parent=None,
        artifact_sha256="cd" * 32,
        metrics={"parameters": 120.0, "size_bytes": 480.0},
        contributors={},
        imported={
            "name": "acme/tiny-gpt2",
            "task": "text-generation",
            "architecture": "GPT2LMHeadModel",
            "library": "transformers",
            "license": "mit",
        },
    )
    m.close()
    return run


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_verify_ok(run_dir: Path, workers: str) -> None:
    result = runner.invoke(ledger_app, ["verify", str(run_dir), "--workers", workers])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_verify_tampered_names_entry(run_dir: Path) -> None:
    conn = sqlite3.connect(run_dir / "ledger.db")
    conn.execute("UPDATE entries SET record = replace(record, 'airdrop', 'airdrip') WHERE seq = 7")
    conn.commit()
    conn.close()
    result = runner.invoke(ledger_app, ["verify", str(run_dir)])
    assert result.exit_code == 3
    lines = _lines(result.output)
    assert len(lines) == 1 and "entry #7" in lines[0]
    assert "Traceback" not in result.output


def test_missing_ledger(tmp_path: Path) -> None:
    for args in (["verify", str(tmp_path)], ["show", str(tmp_path)]):
        result = runner.invoke(ledger_app, args)
        assert result.exit_code == 4
        assert len(_lines(result.output)) == 1 and "no ledger" in result.output


def test_show(run_dir: Path) -> None:
    result = runner.invoke(ledger_app, ["show", str(run_dir), "--kind", "transfer"])
    assert result.exit_code == 0, result.output
    assert "transfer" in result.output and "prev=" in result.output and "hash=" in result.output
    assert '"memo":"gift"' in result.output
    result = runner.invoke(ledger_app, ["show", str(run_dir), "--limit", "2"])
    assert result.output.count("prev=") == 2


def test_prove(run_dir: Path) -> None:
    result = runner.invoke(ledger_app, ["prove", str(run_dir), "3"])
    assert result.exit_code == 0, result.output
    assert "checkpoint entry #" in result.output and "verified: ok" in result.output
    result = runner.invoke(ledger_app, ["prove", str(run_dir), "100000"])
    assert result.exit_code == 2 and len(_lines(result.output)) == 1


SEARCHES = [
    (["--min-accuracy", "0.9"], ["v0001"]),
    (["--min-precision", "0.9"], ["v0001"]),
    (["--min-recall", "0.85"], ["v0001"]),
    (["--min-f1", "0.85"], ["v0001"]),
    (["--max-loss", "0.3"], ["v0001"]),
    (["--max-recall-gap", "0.1"], ["v0001"]),
    (["--max-equalized-odds-difference", "0.1"], ["v0001"]),
    (["--max-modelled-latency-ms", "0.003"], ["v0001"]),
    (["--max-params", "2000"], ["v0001", "v0003"]),
    (["--max-size-bytes", "10000"], ["v0001", "v0003"]),
    (["--contributor", "client-002"], ["v0002"]),
    (["--min-round", "2"], ["v0002"]),
    (["--task", "text-generation"], ["v0003"]),
    (["--architecture", "GPT2LMHeadModel"], ["v0003"]),
    (["--library", "transformers"], ["v0003"]),
    (["--license", "mit"], ["v0003"]),
    (["--min-accuracy", "0.9", "--max-recall-gap", "0.01"], []),
    ([], ["v0001", "v0002", "v0003"]),
]


@pytest.mark.parametrize(("args", "expected"), SEARCHES)
def test_registry_search(run_dir: Path, args: list[str], expected: list[str]) -> None:
    result = runner.invoke(registry_app, ["search", str(run_dir), *args])
    assert result.exit_code == 0, result.output
    found = [line.split()[0] for line in _lines(result.output)[:-1]]
    assert found == expected
    assert _lines(result.output)[-1] == f"{len(expected)} version(s) match"


def test_every_search_option_is_tested() -> None:
    import click

    command = typer.main.get_command(registry_app)
    assert isinstance(command, click.Group)
    options = {o for p in command.commands["search"].params for o in p.opts if o.startswith("--")}
    tested = {a for args, _ in SEARCHES for a in args if a.startswith("--")}
    assert options - {"--help"} == tested


def test_registry_show(run_dir: Path) -> None:
    result = runner.invoke(registry_app, ["show", str(run_dir), "v0002"])
    assert result.exit_code == 0, result.output
    assert '"parent": "v0001"' in result.output
    result = runner.invoke(registry_app, ["show", str(run_dir), "v0099"])
    assert result.exit_code == 1 and "v0099" in result.output
    assert len(_lines(result.output)) == 1


def test_verify_artifact(run_dir: Path, tmp_path: Path) -> None:
    weights = run_dir / "model.safetensors"
    ok = runner.invoke(registry_app, ["verify-artifact", str(run_dir), str(weights)])
    assert ok.exit_code == 0 and "v0001" in ok.output
    ok_dir = runner.invoke(registry_app, ["verify-artifact", str(run_dir), str(run_dir)])
    assert ok_dir.exit_code == 0 and "v0001" in ok_dir.output
    data = bytearray(weights.read_bytes())
    data[17] ^= 0x01
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    bad = runner.invoke(registry_app, ["verify-artifact", str(run_dir), str(flipped)])
    assert bad.exit_code == 5 and "matches no registered version" in bad.output
    missing = runner.invoke(registry_app, ["verify-artifact", str(run_dir), str(tmp_path / "x")])
    assert missing.exit_code == 2 and len(_lines(missing.output)) == 1


def test_apps_mountable() -> None:
    app = typer.Typer()
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(registry_app, name="registry")
    assert runner.invoke(app, ["ledger", "--help"]).exit_code == 0


def test_no_torch_or_flwr_imported() -> None:
    code = (
        "import sys, marketplace, simulation.cli.market; "
        "bad = [m for m in ('torch', 'flwr') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_prove_an_entry_of_the_open_block(run_dir: Path) -> None:
    """Signed but not yet covered by a checkpoint: refused (exit 1), not a forgery."""
    size = Market.open(run_dir).size
    result = runner.invoke(ledger_app, ["prove", str(run_dir), str(size - 1)])
    assert result.exit_code == 1 and "open block" in result.output
