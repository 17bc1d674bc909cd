"""Hub import, all offline: folders the tests write, the recorded responses made from
those same bytes, a fake HF cache. Every field the reference PoC records is checked
against hand-derived values and against what transformers reads from the folders
(tests/fixtures/hf/reference_transformers.json)."""

from __future__ import annotations

import csv
import filecmp
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from marketplace import Market, PriceTerms, audit_ledger
from simulation.cli.market import ledger_app, registry_app
from simulation.outputs.hf_metadata import category_of, infer_task, labels_of, special_tokens
from simulation.outputs.hub import (
    HubError,
    HubModelRecord,
    RecordedHubClient,
    read_model_list,
    record_from_cache,
    record_from_local_dir,
    record_from_model_info,
    run_prices,
    sample_ids,
)
from tests.fixtures.hf import build as fixtures
from tests.fixtures.hf.make_fixtures import git_blob_id, render
from tests.keyring import KEYRING
from tests.outputs.conftest import FIXTURES_HF

BERT, GPT2 = "fedmarket-fixtures/tiny-bert", "fedmarket-fixtures/tiny-gpt2"
SST2 = "fedmarket-fixtures/tiny-bert-sst2"
REFERENCE = json.loads((FIXTURES_HF / "reference_transformers.json").read_text())["models"]
runner = CliRunner()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recorded(repo_id: str) -> HubModelRecord:
    client = RecordedHubClient(FIXTURES_HF)
    return record_from_model_info(client.model_info(repo_id), client)


# -- the fixtures are the files the tests write ---------------------------------------------


def test_recorded_fixtures_are_made_from_the_files_the_tests_write(tmp_path: Path) -> None:
    written = render(tmp_path)
    for path in written:
        committed = FIXTURES_HF / path.relative_to(tmp_path)
        assert filecmp.cmp(path, committed, shallow=False), f"{committed} is stale"
    committed_json = {p.name for p in FIXTURES_HF.glob("*__*.json")}
    assert committed_json == {
        p.name for p in written if p.suffix == ".json" and p.parent == tmp_path
    }


def test_recorded_lfs_hash_is_the_sha256_of_the_built_weights(tmp_path: Path) -> None:
    for repo_id in fixtures.MODELS:
        folder = fixtures.build(repo_id, tmp_path)
        record = _recorded(repo_id)
        (weights,) = record.weights()
        assert weights.sha256 == _sha(folder / "model.safetensors")
        assert weights.size == (folder / "model.safetensors").stat().st_size


def test_git_blob_id_published_vectors() -> None:
    # `git hash-object` of an empty file and of "hello\n" (Git's documented examples)
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


# -- every field, BERT-style and GPT-2-style folders ------------------------------------------


def _assert_files_hashed(record: HubModelRecord, folder: Path) -> None:
    on_disk = sorted(p.name for p in folder.iterdir())
    assert [f.path for f in record.files] == on_disk
    for f in record.files:
        assert f.sha256 == _sha(folder / f.path) and f.size == (folder / f.path).stat().st_size


def test_bert_style_folder_every_field(tmp_path: Path) -> None:
    folder = fixtures.build(BERT, tmp_path)
    record = record_from_local_dir(folder)
    assert record.name == "tiny-bert" and record.source == "local"
    lines = "\n".join(f"{p.name}:{_sha(p)}" for p in sorted(folder.iterdir()))
    assert record.sha == hashlib.sha256(lines.encode()).hexdigest()
    assert record.architecture == "BertForMaskedLM" and record.model_type == "bert"
    assert record.vocab_size == 16  # the 16 lines of vocab.txt
    assert record.special_tokens == {
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
    }
    assert (record.task, record.task_source) == ("fill-mask", "pipeline_tag")
    assert record.category == "Natural Language Processing"
    assert record.labels == ()  # only transformers' default LABEL_0, LABEL_1
    assert record.library == "transformers" and record.license == "apache-2.0"
    assert record.last_modified is None  # a folder has no commit date; no mtime is signed
    assert record.parameters == 16 * 4 + 16 * 4 + 16
    _assert_files_hashed(record, folder)
    ref = REFERENCE[BERT]
    assert record.architecture == ref["architecture"] and record.model_type == ref["model_type"]
    assert record.vocab_size == ref["tokenizer_vocab_size"] == ref["config_vocab_size"]
    assert record.special_tokens == ref["special_tokens_map"]


def test_gpt2_style_folder_every_field(tmp_path: Path) -> None:
    folder = fixtures.build(GPT2, tmp_path)
    record = record_from_local_dir(folder, "acme/tiny-gpt2")
    assert record.name == "acme/tiny-gpt2" and record.source == "local"
    assert record.architecture == "GPT2LMHeadModel" and record.model_type == "gpt2"
    assert record.vocab_size == 11  # the 11 entries of vocab.json
    eot = "<|endoftext|>"
    assert record.special_tokens == {"bos_token": eot, "eos_token": eot, "unk_token": eot}
    # no model card: the task comes from the LM head, the library from config.json
    assert (record.task, record.task_source) == ("text-generation", "architecture")
    assert record.category == "Natural Language Processing"
    assert record.library == "transformers" and record.license is None
    assert record.last_modified is None and record.labels == ()
    assert record.parameters == 11 * 4 + 16 * 4 + 4 + 4
    _assert_files_hashed(record, folder)
    ref = REFERENCE[GPT2]
    assert record.vocab_size == ref["tokenizer_vocab_size"] == ref["config_vocab_size"]
    assert record.special_tokens == ref["special_tokens_map"]


def test_classifier_labels_and_task_from_its_head(tmp_path: Path) -> None:
    record = record_from_local_dir(fixtures.build(SST2, tmp_path))
    assert record.labels == ("NEGATIVE", "POSITIVE")
    assert [REFERENCE[SST2]["id2label"][k] for k in ("0", "1")] == list(record.labels)
    assert (record.task, record.task_source) == ("text-classification", "architecture")


def test_task_from_id2label_category_from_the_hubs_taxonomy() -> None:
    labels = labels_of({"id2label": {"1": "spam", "0": "ham"}})
    assert labels == ("ham", "spam")
    assert infer_task(None, "BertModel", labels, ["tokenizer_config.json"]) == (
        "text-classification",
        "id2label",
    )
    assert infer_task(None, "ViTModel", labels, ["preprocessor_config.json"]) == (
        "image-classification",
        "id2label",
    )
    assert infer_task(None, "T5ForConditionalGeneration", (), []) == (None, None)
    assert labels_of({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}) == ()
    # the PoC filed these two under "other"; the Hub files them under NLP
    assert category_of("feature-extraction") == category_of("text2text-generation")
    assert category_of("text2text-generation") == "Natural Language Processing"
    assert category_of("automatic-speech-recognition") == "Audio"
    assert category_of("image-text-to-text") == "Multimodal"
    assert category_of(None) is None


def test_special_tokens_from_added_tokens_and_the_fallback_order() -> None:
    config = {
        "bos_token": {"content": "<s>", "lstrip": False, "__type": "AddedToken"},
        "additional_special_tokens": ["<x0>", {"content": "<x1>"}],
        "model_max_length": 8,
    }
    assert special_tokens(None, config) == {
        "additional_special_tokens": ["<x0>", "<x1>"],
        "bos_token": "<s>",
    }
    assert special_tokens({"unk_token": "?"}, config) == {"unk_token": "?"}
    assert special_tokens({}, {"model_max_length": 8}, {"eos_token": "</s>"}) == {
        "eos_token": "</s>"
    }


# -- recorded Hub responses and the HF cache --------------------------------------------------


@pytest.mark.parametrize("repo_id", list(fixtures.MODELS))
def test_recorded_response_agrees_with_the_folder(repo_id: str, tmp_path: Path) -> None:
    local = record_from_local_dir(fixtures.build(repo_id, tmp_path), repo_id)
    hub = _recorded(repo_id)
    payload = json.loads((FIXTURES_HF / f"{repo_id.replace('/', '__')}.json").read_text())
    assert hub.source == "hub" and hub.sha == payload["sha"]
    assert hub.last_modified == payload["lastModified"].replace(".000Z", "+00:00")
    for name in ("architecture", "model_type", "vocab_size", "special_tokens", "category"):
        assert getattr(hub, name) == getattr(local, name), name
    for name in ("task", "labels", "library", "license", "parameters"):
        assert getattr(hub, name) == getattr(local, name), name
    local_files = {f.path: f for f in local.files}
    for f in hub.files:
        assert f.size == local_files[f.path].size
        assert f.sha256 in (None, local_files[f.path].sha256)
    hashed = {f.path for f in hub.files if f.sha256}
    assert "model.safetensors" in hashed and "config.json" in hashed  # LFS, and downloaded


def test_recorded_download_that_is_not_the_listed_blob_is_refused(tmp_path: Path) -> None:
    fixtures_copy = tmp_path / "hf"
    shutil.copytree(FIXTURES_HF, fixtures_copy)
    config = fixtures_copy / BERT.replace("/", "__") / "config.json"
    config.write_text(config.read_text().replace('"vocab_size": 16', '"vocab_size": 99999'))
    client = RecordedHubClient(fixtures_copy)
    with pytest.raises(HubError, match=r"config\.json is not blob"):
        record_from_model_info(client.model_info(BERT), client)


def _fake_cache(cache: Path, repo_id: str, folder: Path, commit: str) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for path in sorted(folder.iterdir()):
        blob = _sha(path)
        shutil.copyfile(path, repo / "blobs" / blob)
        (snap / path.name).symlink_to(Path("../../blobs") / blob)


def test_record_from_fake_hf_cache_signs_no_mtime(tmp_path: Path) -> None:
    folder = fixtures.build(BERT, tmp_path / "src")
    cache, commit = tmp_path / "hub", "a" * 40
    _fake_cache(cache, BERT, folder, commit)
    record = record_from_cache(BERT, cache)
    assert record is not None
    assert record.source == "cache" and record.sha == commit
    local = record_from_local_dir(folder, BERT)
    assert record.files == local.files and record.special_tokens == local.special_tokens
    assert (record.task, record.vocab_size) == (local.task, local.vocab_size)
    assert record.last_modified is None
    for blob in (cache / f"models--{BERT.replace('/', '--')}" / "blobs").iterdir():
        os.utime(blob, (1_000_000, 1_000_000))  # another machine's download time
    assert record_from_cache(BERT, cache) == record
    assert record_from_cache("acme/other", cache) is None


def test_sample_is_seeded() -> None:
    ids = read_model_list(FIXTURES_HF / "models.txt")
    assert ids == list(fixtures.MODELS)
    assert sample_ids(ids, 3, seed=7) == sample_ids(ids, 3, seed=7)
    assert len(set(sample_ids(ids, 3, seed=7))) == 3
    assert sample_ids(ids, 5, seed=1) != sample_ids(ids, 5, seed=2)


# -- registration: an imported model is a registry version ----------------------------------


def _imported(run_dir: Path) -> list[object]:
    with Market.open(run_dir) as market:
        return [v for v in market.versions() if v.imported is not None]


def test_import_registers_versions_sealed_by_a_signed_checkpoint(
    cli: typer.Typer, run_dir: Path
) -> None:
    with Market.open(run_dir) as market:
        before, run_versions = market.size, len(market.versions())
    manifest_before = json.loads((run_dir / "manifest.json").read_text())["ledger"]
    args = ["registry", "import-hf", str(run_dir), BERT, GPT2]
    result = runner.invoke(cli, [*args, "--offline-fixtures", str(FIXTURES_HF)])
    assert result.exit_code == 0, result.output
    assert "2 Hub models registered" in result.stdout
    for header in ("Model Name", "Vocabulary Size", "Special Tokens", "Model Category"):
        assert header in result.stdout
    report = audit_ledger(run_dir)
    # The manifest's head is amended to the new one, the run's own head kept.
    after = json.loads((run_dir / "manifest.json").read_text())["ledger"]
    assert (after["head"], after["size"]) == (report.head_hash, report.entries)
    assert [(a["head"], a["size"]) for a in after["amendments"]] == [
        (manifest_before["head"], manifest_before["size"])
    ]
    verify = runner.invoke(ledger_app, ["verify", str(run_dir)])
    assert verify.exit_code == 0 and "head matches manifest.json" in verify.output
    with Market.open(run_dir) as market:
        entries = market.entries(before)
        versions = market.versions()[run_versions:]
        proof = market.inclusion_proof(versions[0].seq)
        prices = market.state.prices.get(versions[0].version, {})
    assert [e.kind for e in entries] == ["model_version", "model_version", "checkpoint"]
    assert entries[-1].sender == "treasury" and entries[-1].data["tree_size"] == before + 2
    assert proof.checkpoint_seq == entries[-1].seq
    assert [v.imported["name"] for v in versions] == [BERT, GPT2]  # type: ignore[index]
    bert, gpt2 = versions
    assert bert.round == 0 and bert.parent is None and dict(bert.contributors) == {}
    assert bert.artifact_sha256 == _recorded(BERT).artifact()[0]
    assert dict(bert.metrics) == {"parameters": 144.0, "size_bytes": float(bert_weights_size())}
    assert gpt2.imported["task"] == "text-generation"  # type: ignore[index]
    assert gpt2.imported["last_modified"] == "2024-02-19T10:57:45+00:00"  # type: ignore[index]
    # quickstart sets no market.prices: it prices each version from demand at its
    # measured accuracy, which an imported model lacks, so imports are not for sale
    assert prices == {}


def test_imported_models_take_a_fixed_price_list(tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_text(
        "market:\n  prices:\n    perpetual: {price: 20}\n    per_use: {price: 2.5, max_uses: 20}\n"
    )
    assert run_prices(tmp_path) == {
        "per_use": PriceTerms(price=2_500_000, duration=None, max_uses=20),
        "perpetual": PriceTerms(price=20_000_000, duration=None, max_uses=None),
    }


def bert_weights_size() -> int:
    payload = json.loads((FIXTURES_HF / f"{BERT.replace('/', '__')}.json").read_text())
    (weights,) = [s for s in payload["siblings"] if s["rfilename"] == "model.safetensors"]
    return int(weights["size"])


def test_imported_version_can_be_licensed_voted_on_and_searched(
    cli: typer.Typer, run_dir: Path, tmp_path: Path
) -> None:
    import yaml

    # Imports are sold under a fixed price list only (demand prices need a measured
    # accuracy): give the run one, as a scenario with market.prices would have.
    scenario_file = run_dir / "scenario.yaml"
    scenario = yaml.safe_load(scenario_file.read_text())
    scenario.setdefault("market", {})["prices"] = {"perpetual": {"price": 20.0}}
    scenario_file.write_text(yaml.safe_dump(scenario))
    folder = fixtures.build(GPT2, tmp_path)
    result = runner.invoke(cli, ["registry", "import-hf", str(run_dir), str(folder)])
    assert result.exit_code == 0, result.output
    with Market.open(run_dir, readonly=False, keyring=KEYRING) as market:
        (version,) = [v.version for v in market.versions() if v.imported is not None]
        market.register_participant("buyer-900", role="buyer")
        market.mint("buyer-900", 50_000_000, reason="test grant")
        market.buy_license("buyer-900", version, "perpetual")
        voter = "client-000"  # staked at genesis
        market.vote(voter, version, 4.0)
        assert market.rating(version) == 4.0
        market.end_block()
    audit_ledger(run_dir)
    found = runner.invoke(registry_app, ["search", str(run_dir), "--task", "text-generation"])
    assert found.exit_code == 0 and found.stdout.startswith(f"{version} round=0")
    assert "1 version(s) match" in found.stdout
    small = runner.invoke(registry_app, ["search", str(run_dir), "--max-params", "200"])
    assert version in small.stdout
    ok = runner.invoke(registry_app, ["verify-artifact", str(run_dir), str(folder)])
    assert ok.exit_code == 0 and version in ok.stdout


def test_import_is_deterministic_across_copies_and_mtimes(
    cli: typer.Typer, pristine_run: Path, tmp_path: Path
) -> None:
    heads = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        shutil.copytree(pristine_run, run)
        folder = fixtures.build(BERT, tmp_path / f"src{i}")
        for path in folder.iterdir():
            os.utime(path, (1_000_000 * (i + 1), 1_000_000 * (i + 1)))
        result = runner.invoke(cli, ["registry", "import-hf", str(run), str(folder)])
        assert result.exit_code == 0, result.output
        with Market.open(run) as market:
            heads.append(market.head_hash)
    assert heads[0] == heads[1]


def test_import_random_writes_the_pocs_csv_and_json(
    cli: typer.Typer, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDMARKET_HF_FIXTURES", str(FIXTURES_HF))
    out = tmp_path / "out"
    args = ["registry", "import-hf", str(run_dir), "--random", "3", "--seed", "11"]
    result = runner.invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = sample_ids(read_model_list(FIXTURES_HF / "models.txt"), 3, seed=11)
    with (out / "models_metadata.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames is not None and reader.fieldnames[:7] == [
        "Model Name",
        "Architecture",
        "Vocabulary Size",
        "Special Tokens",
        "Model Category",
        "Model Type",
        "Last Modified",
    ]
    assert [r["Model Name"] for r in rows] == expected
    docs = json.loads((out / "models_metadata.json").read_text())
    assert [d["name"] for d in docs] == expected
    versions = [v.version for v in _imported(run_dir)]  # type: ignore[attr-defined]
    assert [d["version"] for d in docs] == [r["version"] for r in rows] == versions
    for row, doc in zip(rows, docs, strict=True):
        record = _recorded(doc["name"])
        assert row["Architecture"] == (record.architecture or "")
        assert row["Vocabulary Size"] == (
            "" if record.vocab_size is None else str(record.vocab_size)
        )
        assert json.loads(row["Special Tokens"]) == record.special_tokens
        assert row["Model Type"] == record.task and row["Model Category"] == record.category
        assert doc["files"] == [
            {"path": f.path, "size": f.size, "sha256": f.sha256} for f in record.files
        ]


def test_import_hf_unknown_model_one_line(cli: typer.Typer, run_dir: Path) -> None:
    args = ["registry", "import-hf", str(run_dir), "nobody/nothing"]
    result = runner.invoke(cli, [*args, "--offline-fixtures", str(FIXTURES_HF)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nobody/nothing: no recorded response")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _imported(run_dir) == []


def test_import_hf_missing_run(cli: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["registry", "import-hf", str(tmp_path / "x"), BERT])
    assert result.exit_code == 2
    assert "no such run or study directory" in result.stderr
