"""Tiny stand-ins for the five Hub datasets, in exactly the Hub repos' schemas.

Each writer builds a few hundred rows of random data with the repo's column
names and features (``image``/``img`` as an ``Image`` feature, ``label`` or
``character`` as a ``ClassLabel`` with the Hub's names, FEMNIST's ``writer_id``
and ``hsf_id``, Shakespeare's ``character_id``, ``x``, ``y``) and the repo's
file layout and dataset card (``configs`` → ``data_files``), so they load
through the same code path as the real snapshot. The data is noise: it proves
the plumbing, never an accuracy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from simulation.config.catalog import SHAKESPEARE_LETTERS, facts

# Repo layout: config name, the data files' folder, and which splits exist.
LAYOUT = {
    "mnist": ("mnist", "mnist", ("train", "test")),
    "fashion_mnist": ("fashion_mnist", "fashion_mnist", ("train", "test")),
    "cifar10": ("plain_text", "plain_text", ("train", "test")),
    "femnist": ("default", "data", ("train",)),
    "shakespeare": ("default", "", ("train",)),
}
ROWS = {"train": 240, "test": 80}


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> list[PILImage.Image]:
    c, h, w = shape
    arrays = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    return [
        PILImage.fromarray(a[..., 0] if c == 1 else a, mode="L" if c == 1 else "RGB")
        for a in arrays
    ]


def image_table(name: str, split: str, rng: np.random.Generator) -> Dataset:
    """Rows of an image dataset's split with the Hub's columns and features."""
    info = facts(name)
    assert info.input_shape is not None and info.feature_column is not None
    label = ClassLabel(names=list(info.class_names))
    if name == "femnist":
        writers = [f"f{k:04d}_{k % 50:02d}" for k in range(12)]
        sizes = rng.integers(15, 35, size=len(writers))
        n = int(sizes.sum())
        columns = {
            "image": _images(rng, n, info.input_shape),
            "writer_id": [w for w, s in zip(writers, sizes, strict=True) for _ in range(s)],
            "hsf_id": [int(k % 8) for k, s in enumerate(sizes) for _ in range(s)],
            "character": rng.integers(0, 62, size=n).tolist(),
        }
        features = Features(
            {
                "image": Image(),
                "writer_id": Value("string"),
                "hsf_id": Value("int64"),
                "character": label,
            }
        )
        return Dataset.from_dict(columns, features=features)
    n = ROWS[split]
    columns = {
        info.feature_column: _images(rng, n, info.input_shape),
        "label": rng.integers(0, 10, size=n).tolist(),
    }
    features = Features({info.feature_column: Image(), "label": label})
    return Dataset.from_dict(columns, features=features)


def shakespeare_frame(rng: np.random.Generator) -> pd.DataFrame:
    """LEAF's Shakespeare rows: per speaking role, consecutive 80-character windows
    (``x``) of one text and the character that follows (``y``)."""
    letters = np.array(list(SHAKESPEARE_LETTERS))
    rows = []
    for k in range(8):
        role = f"THE_PLAY_{k // 3}_ROLE_{k}"
        n = int(rng.integers(20, 45))
        text = "".join(rng.choice(letters, size=n + 80))
        rows += [(role, text[i : i + 80], text[i + 80]) for i in range(n)]
    return pd.DataFrame(rows, columns=["character_id", "x", "y"])


def _card(name: str) -> str:
    config, folder, splits = LAYOUT[name]
    info = facts(name)
    lines = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    for split in splits:
        path = "shakespeare.csv" if name == "shakespeare" else f"{folder}/{split}-*"
        lines += [f"  - split: {split}", f"    path: {path}"]
    if name != "shakespeare":
        lines += ["dataset_info:", f"  config_name: {config}", "  features:"]
        if name == "femnist":
            lines += [
                "  - name: image",
                "    dtype: image",
                "  - name: writer_id",
                "    dtype: string",
                "  - name: hsf_id",
                "    dtype: int64",
                "  - name: character",
            ]
        else:
            lines += [f"  - name: {info.feature_column}", "    dtype: image", "  - name: label"]
        lines += ["    dtype:", "      class_label:", "        names:"]
        lines += [f"          '{i}': {n!r}" for i, n in enumerate(info.class_names)]
    return "\n".join([*lines, "---", f"# {info.hub_id} (test stand-in)", ""])


def write_snapshot(name: str, root: Path, seed: int = 0) -> Path:
    """A copy of the Hub repo of ``name`` (card and data files) under ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(_card(name), encoding="utf-8")
    if name == "shakespeare":
        shakespeare_frame(rng).to_csv(root / "shakespeare.csv", index=False)
        return root
    _, folder, splits = LAYOUT[name]
    (root / folder).mkdir(parents=True, exist_ok=True)
    for split in splits:
        table = image_table(name, split, rng)
        table.to_parquet(str(root / folder / f"{split}-00000-of-00001.parquet"))
    return root


def write_parquet(name: str, root: Path, seed: int = 0) -> dict[str, str]:
    """The splits of ``name`` as bare Parquet files (for ``dataset.path: {train, test}``)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in LAYOUT[name][2]:
        path = root / f"{name}-{split}.parquet"
        if name == "shakespeare":
            shakespeare_frame(rng).to_parquet(path, index=False)
        else:
            image_table(name, split, rng).to_parquet(str(path))
        out[split] = str(path)
    return out


def install_in_cache(name: str, cache: Path, snapshot: Path, commit: str = "c" * 40) -> Path:
    """Put ``snapshot`` into an HF Hub cache the way huggingface_hub lays one out:
    content-addressed blobs, a ``refs/main`` file and symlinks under ``snapshots/``."""
    hub_id = facts(name).hub_id
    assert hub_id is not None
    repo = cache / ("datasets--" + hub_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for src in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        shutil.copyfile(src, blob)
        link = snap / src.relative_to(snapshot)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snap
