"""Fixtures for the Hub datasets: stand-ins in the Hub schemas, in a private HF cache.

``hub_cache`` writes all five stand-ins once per session (``hub_fixtures``) and
installs them in an HF Hub cache under the session's temp dir; ``hf_env``
points this process (and every child it starts: Ray workers, CLI
subprocesses) at that cache and at a private Arrow cache, so no test reads or
writes the user's ``~/.cache/huggingface``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulation.config.catalog import HUB_DATASETS
from tests.simulation.hub_fixtures import install_in_cache, write_snapshot


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session folder with ``snapshots/NAME`` (Hub repo copies) and ``hub`` (the cache)."""
    root = tmp_path_factory.mktemp("hf")
    for name in HUB_DATASETS:
        snap = write_snapshot(name, root / "snapshots" / name)
        install_in_cache(name, root / "hub", snap)
    return root


@pytest.fixture
def hf_env(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's HF environment: the session's Hub cache and Arrow cache."""
    import datasets

    arrow = hub_root / "arrow"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_root / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(arrow))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", arrow)
    yield hub_root / "hub"
