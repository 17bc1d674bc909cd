"""The Hub benchmarks through Flower Datasets, offline, on stand-ins in the Hub schemas.

Every test loads the stand-ins through the code a user's run takes (the HF
cache or ``dataset.path`` → ``FederatedDataset`` → partitioner). Expected
values come from reading the stand-ins' files directly (pyarrow, PIL), not
from the loader. The data is noise: nothing here says anything about accuracy.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from simulation.cli.main import app
from simulation.config.catalog import HUB_DATASETS, SHAKESPEARE_LETTERS, facts
from simulation.config.schema import (
    DirichletPartition,
    HubDatasetConfig,
    IidPartition,
    NaturalPartition,
)
from simulation.errors import ScenarioError
from simulation.fl.data import build_federated_data
from simulation.fl.sources import DatasetError, DatasetNotAvailable, locate
from simulation.scenario.load import validate_data
from tests.simulation.hub_fixtures import LAYOUT, write_parquet

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ("mnist", "fashion_mnist", "cifar10")


def config(name: str, **kw: Any) -> HubDatasetConfig:
    return HubDatasetConfig(name=name, test_fraction=None if name in OFFICIAL else 0.1, **kw)  # type: ignore[arg-type]


def raw_train(hub_root: Path, name: str) -> pd.DataFrame:
    """The stand-in's training rows, read straight from its files."""
    snap = hub_root / "snapshots" / name
    if name == "shakespeare":
        return pd.read_csv(snap / "shakespeare.csv", keep_default_na=False)
    folder = LAYOUT[name][1]
    return pq.read_table(snap / folder / "train-00000-of-00001.parquet").to_pandas()


def decode(cell: dict[str, Any], mode: str) -> np.ndarray:
    arr = np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert(mode), dtype=np.float32)
    return (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)) / 255.0


# ---------------------------------------------------------------- validation (no data)


def test_validation_fails_fast_naming_the_fetch_command(tmp_path: Path) -> None:
    """Without the data, validation is one line per scenario; it imports neither
    ``datasets`` nor ``flwr_datasets`` nor torch, and opens no socket."""
    code = f"""
import socket, sys, json
def refuse(*a, **k):
    raise RuntimeError("socket opened")
socket.socket.connect = refuse
socket.create_connection = refuse
from simulation.errors import ScenarioError
from simulation.scenario.load import validate_data
lines = []
for name in {list(HUB_DATASETS)!r}:
    data = {{"dataset": {{"name": name}}}}
    if name in ("femnist", "shakespeare"):
        data["dataset"]["test_fraction"] = 0.1
        data["partition"] = {{"kind": "natural"}}
    data["model"] = {{"name": "char_lstm" if name == "shakespeare" else "cnn"}}
    try:
        validate_data(data, "s.yaml")
    except ScenarioError as exc:
        lines.append([str(p) for p in exc.problems])
heavy = sorted(m for m in ("datasets", "flwr_datasets", "torch", "opacus") if m in sys.modules)
print(json.dumps({{"lines": lines, "heavy": heavy}}))
"""
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert len(result["lines"]) == 5
    for name, problems in zip(HUB_DATASETS, result["lines"], strict=True):
        (line,) = problems
        assert line.startswith(f"s.yaml: dataset.name -> {name} ({facts(name).hub_id})")
        assert f"run `fedmarket data fetch {name}`" in line and "\n" not in line


def test_cli_validate_and_run_exit_2_without_traceback(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    path = tmp_path / "s.yaml"
    path.write_text("dataset: {name: cifar10}\nmodel: {name: resnet8}\n")
    for args in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "r")]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2
        assert "Traceback" not in res.output
        assert "run `fedmarket data fetch cifar10` to download it" in res.output
    assert not (tmp_path / "r").exists()


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as exc:
        validate_data({"dataset": {"name": "mnist", "path": str(tmp_path / "no")}}, "s.yaml")
    assert [str(p) for p in exc.value.problems] == [
        f"s.yaml: dataset.path -> {tmp_path / 'no'} does not exist"
    ]


def test_cached_datasets_validate(hf_env: Path) -> None:
    for name in HUB_DATASETS:
        data: dict[str, Any] = {"dataset": config(name).model_dump()}
        data["model"] = {"name": "char_lstm" if name == "shakespeare" else "lenet5"}
        assert validate_data(data, "s.yaml").dataset.name == name
        source = locate(config(name))
        assert source.origin == "hf-cache" and source.revision == "c" * 40


def test_cache_without_data_files_is_not_available(tmp_path: Path) -> None:
    repo = tmp_path / "datasets--ylecun--mnist"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "README.md").write_text("---\n---\n")
    with pytest.raises(DatasetNotAvailable, match="holds no data files"):
        locate(config("mnist"), tmp_path)


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("name", HUB_DATASETS)
def test_loads_rows_exactly_as_the_files_hold_them(hf_env: Path, hub_root: Path, name: str) -> None:
    info = facts(name)
    data = build_federated_data(config(name), IidPartition(), 3, seed=7)
    raw = raw_train(hub_root, name)
    n = len(raw)
    assert data.input_shape == info.input_shape and data.num_classes == info.num_classes
    assert data.source == f"hf-cache:{info.hub_id}@{'c' * 40}"
    rows = np.concatenate(data.partitions)
    assert len(np.unique(rows)) == len(rows) and rows.max() < n
    if name in OFFICIAL:
        # Official test split (80 rows) kept whole; ⌊10%⌋ of the 240 training rows validate.
        assert (len(rows), len(data.y_val), len(data.y_test)) == (240 - 24, 24, 80)
        assert data.sizes() == [72, 72, 72]
    else:
        per_group = raw.groupby(info.natural_id).size().to_numpy()
        held = 2 * np.floor(per_group * 0.1).astype(int)  # test + validation, 10% each
        assert len(rows) == n - held.sum() and len(data.y_test) == held.sum() // 2
    client_x, client_y = data.client(1)
    take = data.partitions[1][:5]
    if info.kind == "image":
        assert info.feature_column is not None and info.image_mode is not None
        expected = np.stack([decode(raw[info.feature_column][i], info.image_mode) for i in take])
        np.testing.assert_array_equal(client_x[:5], expected)
        assert client_x.dtype == np.float32 and 0.0 <= client_x.min() <= client_x.max() <= 1.0
        np.testing.assert_array_equal(client_y[:5], raw[info.label_column].to_numpy()[take])
    else:
        letters = {c: i for i, c in enumerate(SHAKESPEARE_LETTERS)}
        expected = np.array([[letters[c] for c in raw["x"][i]] for i in take])
        np.testing.assert_array_equal(client_x[:5], expected)
        assert client_y[:5].tolist() == [letters[raw["y"][i]] for i in take]
    assert data.x_test.shape == (len(data.y_test), *info.input_shape)


@pytest.mark.parametrize("name", ["femnist", "shakespeare"])
def test_natural_partition_one_writer_per_client(hf_env: Path, hub_root: Path, name: str) -> None:
    info = facts(name)
    assert info.natural_id is not None
    raw = raw_train(hub_root, name)
    ids = raw[info.natural_id].to_numpy()
    data = build_federated_data(config(name), NaturalPartition(), 4, seed=3)
    assert len(data.client_ids) == 4 and list(data.client_ids) == sorted(data.client_ids)
    for part, writer in zip(data.partitions, data.client_ids, strict=True):
        assert set(ids[part]) == {writer}
        mine = np.flatnonzero(ids == writer)
        held = len(mine) - len(part)
        assert held == 2 * int(len(mine) * 0.1)
        if name == "shakespeare":
            # Temporal: a role's training windows all precede its held-out ones.
            assert part.max() < np.setdiff1d(mine, part).min()
    other = build_federated_data(config(name), NaturalPartition(), 4, seed=4)
    assert other.client_ids != data.client_ids  # the seed draws the writers


def test_more_clients_than_writers_is_an_error(hf_env: Path) -> None:
    from simulation.fl.partitions import PartitionError

    with pytest.raises(PartitionError, match=r"12 natural ids .* but there are 20 clients"):
        build_federated_data(config("femnist"), NaturalPartition(), 20, seed=0)


@pytest.mark.parametrize("name", HUB_DATASETS)
def test_parquet_path_loads_the_same_data_as_the_cache(
    hf_env: Path, tmp_path: Path, name: str
) -> None:
    """``dataset.path`` with Parquet files (the stand-ins' rows again, same seed) gives
    the same partitions, labels and inputs as the cached Hub snapshot."""
    files = write_parquet(name, tmp_path / "pq")
    spec = DirichletPartition(alpha=0.5, min_partition_size=1)
    from_cache = build_federated_data(config(name), spec, 3, seed=5)
    from_path = build_federated_data(config(name, path=files), spec, 3, seed=5)
    assert from_path.source.startswith("path:")
    for a, b in zip(from_cache.partitions, from_path.partitions, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_cache.y_train, from_path.y_train)
    np.testing.assert_array_equal(from_cache.x_test, from_path.x_test)


def test_directory_path_outside_the_cache(hf_env: Path, hub_root: Path) -> None:
    data = build_federated_data(
        config("cifar10", path=str(hub_root / "snapshots" / "cifar10")), IidPartition(), 2, seed=1
    )
    assert data.source == f"path:{hub_root / 'snapshots' / 'cifar10'}"
    assert data.client(0)[0].shape[1:] == (3, 32, 32)


def test_same_seed_same_partitions(hf_env: Path) -> None:
    spec = DirichletPartition(alpha=0.3, min_partition_size=1)
    a = build_federated_data(config("mnist"), spec, 4, seed=11)
    from simulation.fl import data as data_module

    data_module._build_cached.cache_clear()  # rebuilt from the files, not memoised
    b = build_federated_data(config("mnist"), spec, 4, seed=11)
    c = build_federated_data(config("mnist"), spec, 4, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a.partitions, b.partitions, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.partitions, c.partitions, strict=True))


def test_wrong_schema_is_one_clear_error(hf_env: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    path = tmp_path / "train.parquet"
    Dataset.from_dict({"picture": [b"x"], "label": [1]}).to_parquet(str(path))
    with pytest.raises(DatasetError, match=r"no column 'image' .*ylecun/mnist"):
        build_federated_data(
            config("mnist", path={"train": str(path), "test": str(path)}), IidPartition(), 1, seed=0
        )
    with pytest.raises(DatasetError, match="no test split"):
        build_federated_data(config("mnist", path=str(path)), IidPartition(), 1, seed=0)


def test_hub_config_rules() -> None:
    with pytest.raises(ValueError, match="official test split"):
        HubDatasetConfig(name="mnist", test_fraction=0.2)
    with pytest.raises(ValueError, match=r"LEAF uses 0\.1"):
        HubDatasetConfig(name="femnist")
    with pytest.raises(ValueError, match="splits train and test"):
        HubDatasetConfig(name="mnist", path={"validation": "x.parquet"})


# ---------------------------------------------------------------- fetch


def test_fetch_downloads_on_request_only(
    hf_env: Path, hub_root: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    import huggingface_hub

    from tests.simulation.hub_fixtures import install_in_cache

    cache = tmp_path / "cache"
    calls: list[dict[str, Any]] = []

    def fake_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        return str(
            install_in_cache(
                "femnist", Path(kwargs["cache_dir"]), hub_root / "snapshots" / "femnist", "d" * 40
            )
        )

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "dataset: {name: femnist, test_fraction: 0.1}\nmodel: {name: lenet5}\n"
        "partition: {kind: natural}\nclients: {count: 4}\n"
    )
    assert CliRunner().invoke(app, ["validate", str(scenario)]).exit_code == 2
    assert calls == []  # validation never downloads
    res = CliRunner().invoke(app, ["data", "fetch", "femnist"])
    assert res.exit_code == 0, res.output
    assert calls == [
        {
            "repo_id": "flwrlabs/femnist",
            "repo_type": "dataset",
            "revision": None,
            "cache_dir": str(cache),
            "allow_patterns": ["README.md", "*.parquet", "*.csv"],
        }
    ]
    assert f"hf-cache:flwrlabs/femnist@{'d' * 40}" in res.output
    assert CliRunner().invoke(app, ["validate", str(scenario)]).exit_code == 0
    listing = CliRunner().invoke(app, ["data", "list"]).output
    assert (
        "femnist        flwrlabs/femnist" in listing
        and "not cached (fedmarket data fetch mnist)" in listing
    )


def test_fetch_failure_and_unknown_name_are_one_line(monkeypatch: Any) -> None:
    import huggingface_hub

    def offline(**kwargs: Any) -> str:
        raise OSError("offline mode is enabled\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    res = CliRunner().invoke(app, ["data", "fetch", "mnist"])
    assert res.exit_code == 3 and res.output.strip() == (
        "error: could not download mnist: offline mode is enabled"
    )
    res = CliRunner().invoke(app, ["data", "fetch", "digits"])
    assert res.exit_code == 2 and "not a Hub dataset" in res.output


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "studies" / "paper").glob("*.yaml")))
def test_paper_scale_studies_resolve(hf_env: Path, path: Path) -> None:
    """The paper-scale studies in docs/paper-scale.md stay valid (they need the real data
    and a GPU to run; the stand-ins in the cache let them validate)."""
    from simulation.scenario.sweep import resolve_study

    study = resolve_study(path)  # validates every variant (ScenarioError otherwise)
    assert len(study.variants) == 24  # 4 designs × 6 seeds (a paired test needs ≥ 6)
    assert study.fixed["clients"]["count"] == 100
    assert study.fixed["dataset"]["name"] in HUB_DATASETS


@settings(max_examples=60)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    validation=st.sampled_from([0.0, 0.1, 0.25]),
    test=st.sampled_from([0.1, 0.2, 0.5]),
    temporal=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_within_groups_properties(
    sizes: list[int], validation: float, test: float, temporal: bool, seed: int
) -> None:
    """Each writer of n rows gives ⌊n·test⌋ test and ⌊n·validation⌋ validation rows; the
    three splits partition the rows; a temporal split tests on each writer's last rows."""
    from simulation.fl.hub_data import split_within_groups

    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.repeat([f"w{k:02d}" for k in range(len(sizes))], sizes))
    train, val, held = split_within_groups(
        groups, validation, test, np.random.default_rng(seed), temporal=temporal
    )
    every = np.concatenate([train, val, held])
    assert sorted(every.tolist()) == list(range(len(groups)))
    for k, n in enumerate(sizes):
        rows = np.flatnonzero(groups == f"w{k:02d}")
        assert np.isin(rows, held).sum() == int(n * test)
        assert np.isin(rows, val).sum() == int(n * validation)
        if temporal and int(n * test):
            kept = rows[~np.isin(rows, held)]
            assert kept.size == 0 or kept.max() < rows[np.isin(rows, held)].min()
