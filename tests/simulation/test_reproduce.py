"""Determinism kept honestly: heads per keyring, content digests across keyrings,
``fedmarket reproduce`` naming the first differing entry, pinned package versions."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace import Keyring, audit_ledger
from simulation.cli.main import app
from simulation.engine.runner import run_scenario
from simulation.fl.evaluation import SplitMetrics
from simulation.results.write import PACKAGES
from simulation.scenario.load import load_scenario
from simulation.world.records import Weights
from simulation.world.server_model import ServerModel
from tests.keyring import KEYRING

ROOT = Path(__file__).resolve().parents[2]
TINY = ["clients.count=3", "rounds=1", "training.epochs=1", "privacy.budget=null"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run_scenario(
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", TINY), out, engine="inprocess"
    )
    return out


def test_manifest_records_both_digests(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    ledger = manifest["ledger"]
    report = audit_ledger(run_dir)
    assert manifest["ledger_head"] == ledger["head"] == report.head_hash
    assert ledger["content_digest"] == report.content_digest
    assert (ledger["id"], ledger["size"], ledger["root"]) == (
        report.ledger_id,
        report.entries,
        report.root,
    )
    assert ledger["keyring_id"] == KEYRING.id and ledger["amendments"] == []
    assert set(PACKAGES) <= set(manifest["packages"])


def test_reproduced_under_another_keyring(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.keyring"
    Keyring.create(other)
    out = tmp_path / "again"
    result = CliRunner().invoke(
        app, ["reproduce", str(run_dir), "--keyring", str(other), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "reproduced: content digest" in result.output and "other keyring" in result.output
    original, again = audit_ledger(run_dir), audit_ledger(out)
    assert again.content_digest == original.content_digest
    assert again.head_hash != original.head_hash  # every signature differs, by design
    assert again.treasury_key != original.treasury_key


def test_not_reproduced_names_the_first_differing_entry(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result that comes out differently (here: the test accuracy, as a library
    upgrade could change it) is named by its entry."""
    real = ServerModel.validation_results
    calls = [0]

    def drifted(self: ServerModel, weights: Weights) -> SplitMetrics:
        results = real(self, weights)
        calls[0] += 1
        return dataclasses.replace(results, accuracy=results.accuracy + 1e-9)

    monkeypatch.setattr(ServerModel, "validation_results", drifted)
    result = CliRunner().invoke(app, ["reproduce", str(run_dir)])
    assert result.exit_code == 6, result.output
    first_version = next(i for i, line in enumerate(_kinds(run_dir)) if line == "model_version")
    assert f"not reproduced: entry #{first_version} differs" in result.output
    run_line, again_line = result.output.splitlines()[-2:]
    assert run_line.startswith("  run:") and again_line.startswith("  reproduced:")
    assert '"kind":"model_version"' in run_line
    assert calls[0] > 0


def _kinds(run_dir: Path) -> list[str]:
    from marketplace.content import content_records

    return [json.loads(c)["kind"] for c in content_records(run_dir)]


def test_constraints_pin_every_result_affecting_package() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            assert re.fullmatch(r"[0-9][0-9a-z.]*", version), line
            pins[name] = version
    assert set(pins) == set(PACKAGES) - {"fedmarket"}


def test_verify_compares_with_the_manifest_head(run_dir: Path, tmp_path: Path) -> None:
    """A shorter ledger that verifies on its own (a lost -wal file, deleted tail rows
    with the head row fixed) fails against the manifest's head."""
    import shutil
    import sqlite3

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    size = audit_ledger(copy).entries
    conn = sqlite3.connect(copy / "ledger.db", isolation_level=None)
    conn.execute("DELETE FROM entries WHERE seq >= ?", (size - 2,))
    last = conn.execute("SELECT record FROM entries WHERE seq = ?", (size - 3,)).fetchone()[0]
    conn.execute("UPDATE head SET seq = ?, hash = ?", (size - 3, json.loads(last)["hash"]))
    conn.close()
    assert audit_ledger(copy).entries == size - 2
    result = CliRunner().invoke(app, ["ledger", "verify", str(copy)])
    assert result.exit_code == 3
    assert f"ledger truncated: manifest.json records {size} entries" in result.output
    ok = CliRunner().invoke(app, ["ledger", "verify", str(run_dir)])
    assert ok.exit_code == 0 and f"head matches manifest.json ({size} entries)" in ok.output
