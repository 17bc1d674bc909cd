"""Hub import/export, all offline: recorded responses, local folders, a fake HF cache."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import typer
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from marketplace import Market, audit_ledger
from simulation.cli.market import ledger_app, registry_app
from simulation.outputs.hub import (
    IMPORT_EVENT,
    RecordedHubClient,
    read_model_list,
    record_from_cache,
    record_from_model_info,
    sample_ids,
)
from tests.outputs.conftest import FIXTURES_HF

BERT = "google-bert/bert-base-uncased"
GPT2 = "openai-community/gpt2"


def _hf_entries(run_dir: Path) -> list[dict[str, object]]:
    with Market.open(run_dir) as market:
        return [dict(e.data) for e in market.entries() if e.kind == IMPORT_EVENT]


def test_recorded_client_maps_model_info() -> None:
    info = RecordedHubClient(FIXTURES_HF).model_info(BERT)
    record = record_from_model_info(info)
    assert record.architecture == "BertForMaskedLM"
    assert record.task == "fill-mask"
    assert record.library == "transformers"
    assert record.license == "apache-2.0"
    assert record.sha == "86b5e0934494bd15c9632b12f734a8a67f723594"
    assert record.last_modified == "2024-02-19T11:06:12+00:00"
    by_name = {f.path: f for f in record.files}
    payload = json.loads((FIXTURES_HF / "google-bert__bert-base-uncased.json").read_text())
    lfs = {s["rfilename"]: s["lfs"]["sha256"] for s in payload["siblings"] if "lfs" in s}
    assert by_name["model.safetensors"].sha256 == lfs["model.safetensors"]
    assert by_name["config.json"].sha256 is None  # not LFS: the Hub gives no sha256


def test_sample_is_seeded() -> None:
    ids = read_model_list(FIXTURES_HF / "models.txt")
    assert len(ids) == 5
    assert sample_ids(ids, 3, seed=7) == sample_ids(ids, 3, seed=7)
    assert len(set(sample_ids(ids, 3, seed=7))) == 3
    assert sample_ids(ids, 5, seed=1) != sample_ids(ids, 5, seed=2)


def test_import_hf_ids_registers_on_ledger(cli: typer.Typer, run_dir: Path) -> None:
    before = json.loads((run_dir / "manifest.json").read_text())["ledger"]
    args = ["registry", "import-hf", str(run_dir), BERT, GPT2]
    result = CliRunner().invoke(cli, [*args, "--offline-fixtures", str(FIXTURES_HF)])
    assert result.exit_code == 0, result.output
    assert "2 Hub models registered" in result.stdout
    entries = _hf_entries(run_dir)
    assert [e["repo_id"] for e in entries] == [BERT, GPT2]
    assert entries[1]["license"] == "mit" and entries[1]["task"] == "text-generation"
    report = audit_ledger(run_dir)  # the new events verify like any other entry
    # A new block sealed with a signed checkpoint; the manifest's head amended.
    assert report.open_block_entries == 0
    after = json.loads((run_dir / "manifest.json").read_text())["ledger"]
    assert (after["head"], after["size"]) == (report.head_hash, report.entries)
    assert [(a["head"], a["size"]) for a in after["amendments"]] == [
        (before["head"], before["size"])
    ]
    verify = CliRunner().invoke(ledger_app, ["verify", str(run_dir)])
    assert verify.exit_code == 0 and "head matches manifest.json" in verify.output


def test_import_hf_random_via_env_writes_csv_json(
    cli: typer.Typer, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDMARKET_HF_FIXTURES", str(FIXTURES_HF))
    out = tmp_path / "out"
    args = ["registry", "import-hf", str(run_dir), "--random", "3", "--seed", "11"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = sample_ids(read_model_list(FIXTURES_HF / "models.txt"), 3, seed=11)
    with (out / "hf_models.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["repo_id"] for r in rows] == expected
    records = json.loads((out / "hf_models.json").read_text())
    assert [r["repo_id"] for r in records] == expected
    assert all(r["files"] for r in records)
    assert [e["repo_id"] for e in _hf_entries(run_dir)] == expected


def test_import_hf_local_folder_hashes_files(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["TinyNet"], "model_type": "tiny"})
    )
    weights = b"\x00\x01weights" * 100
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "README.md").write_text(
        "---\nlicense: mit\npipeline_tag: image-classification\n---\n"
    )
    result = CliRunner().invoke(cli, ["registry", "import-hf", str(run_dir), str(folder)])
    assert result.exit_code == 0, result.output
    (entry,) = _hf_entries(run_dir)
    assert entry["source"] == "local" and entry["architecture"] == "TinyNet"
    assert entry["license"] == "mit" and entry["task"] == "image-classification"
    files = {f["path"]: f["sha256"] for f in entry["files"]}  # type: ignore[attr-defined]
    assert files["model.safetensors"] == hashlib.sha256(weights).hexdigest()


def test_record_from_fake_hf_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny"
    commit = "a" * 40
    content = b'{"architectures": ["AcmeTiny"]}'
    blob_hash = hashlib.sha256(content).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / blob_hash).write_bytes(content)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(Path("../../blobs") / blob_hash)
    record = record_from_cache("acme/tiny", cache)
    assert record is not None
    assert record.source == "cache" and record.sha == commit
    assert record.architecture == "AcmeTiny"
    assert record.files[0].sha256 == blob_hash
    assert record_from_cache("acme/other", cache) is None


def test_import_hf_unknown_model_one_line(cli: typer.Typer, run_dir: Path) -> None:
    args = ["registry", "import-hf", str(run_dir), "nobody/nothing"]
    result = CliRunner().invoke(cli, [*args, "--offline-fixtures", str(FIXTURES_HF)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nobody/nothing: no recorded response")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _hf_entries(run_dir) == []


def test_import_hf_missing_run(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["registry", "import-hf", str(tmp_path / "x"), BERT])
    assert result.exit_code == 2
    assert "no such run or study directory" in result.stderr


def test_export_then_verify_artifact_end_to_end(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hf-export"
    result = CliRunner().invoke(
        cli, ["export-hf", str(run_dir), "--version", "final", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
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
    args = ["export-hf", str(run_dir), "--version", "v0001", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "no weights for v0001" in result.stderr
    assert not (tmp_path / "o").exists()


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
