"""Where a Hub dataset's files are on this machine, and fetching them when asked.

Nothing here imports ``datasets``, ``flwr_datasets`` or torch, and nothing opens
a socket except :func:`fetch`, which the user calls (``fedmarket data fetch
NAME``). Validation calls :func:`locate`: a Hub dataset is usable when
``dataset.path`` points at it or when the local Hugging Face cache holds a
snapshot of its repo (``huggingface_hub.scan_cache_dir``, which reads the cache
folder only). Runs load exactly that snapshot, so a run never downloads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from simulation.config.catalog import HUB_DATASETS, facts
from simulation.config.schema import HubDatasetConfig

__all__ = [
    "DATA_PATTERNS",
    "DataError",
    "DataSource",
    "DatasetError",
    "DatasetNotAvailable",
    "fetch",
    "hub_cache_dir",
    "locate",
]

log = logging.getLogger("fedmarket.data")

DATA_PATTERNS = ("README.md", "*.parquet", "*.csv")
"""The repo files ``fetch`` downloads: the dataset card (features, splits) and the data."""


class DataError(ValueError):
    """Base of the data errors a run reports as one line::

    DataError
     ├── DatasetNotAvailable   not at dataset.path, not in the HF cache
     ├── DatasetError          the files are there but not in the Hub schema
     └── PartitionError        the partition cannot be met (simulation.fl.partitions)
    """


class DatasetNotAvailable(DataError):
    """Raised when a Hub dataset is neither at ``dataset.path`` nor in the local HF cache.

    Validation reports it as one line that names the command that fetches it.
    """


class DatasetError(DataError):
    """Raised when local files cannot be read as the dataset (missing split or column,
    labels out of range, images of the wrong size)."""


@dataclass(frozen=True)
class DataSource:
    """Local files of one Hub dataset: a directory, one file, or a split → file map."""

    name: str
    origin: Literal["path", "hf-cache"]
    location: Path | Mapping[str, Path]
    revision: str | None = None

    def describe(self) -> str:
        """``hf-cache:ylecun/mnist@<commit>`` or ``path:/data/mnist`` (for the manifest)."""
        if self.origin == "hf-cache":
            return f"hf-cache:{facts(self.name).hub_id}@{self.revision}"
        if isinstance(self.location, Mapping):
            return "path:" + ",".join(f"{k}={v}" for k, v in sorted(self.location.items()))
        return f"path:{self.location}"

    def load_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``FederatedDataset`` (passed on to ``load_dataset``)."""
        loc = self.location
        if isinstance(loc, Mapping):
            return {"dataset": "parquet", "data_files": {k: str(v) for k, v in loc.items()}}
        if loc.is_file():
            builder = "csv" if loc.suffix == ".csv" else "parquet"
            return {"dataset": builder, "data_files": {"train": str(loc)}}
        return {"dataset": str(loc)}


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    huggingface_hub's default. Read at call time, so a changed environment counts."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _fetch_hint(name: str) -> str:
    return f"run `fedmarket data fetch {name}` to download it, or set dataset.path"


def _from_path(cfg: HubDatasetConfig) -> DataSource:
    assert cfg.path is not None
    raw = cfg.path if isinstance(cfg.path, Mapping) else {"": cfg.path}
    paths = {k: Path(v).expanduser() for k, v in raw.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DatasetNotAvailable(f"{missing[0]} does not exist")
    single = paths.get("")
    location: Path | Mapping[str, Path] = single if single is not None else paths
    return DataSource(cfg.name, "path", location)


def _cached(name: str, cache: Path) -> DataSource:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    hub_id = facts(name).hub_id
    absent = DatasetNotAvailable(
        f"{name} ({hub_id}) is not in the local Hugging Face cache ({cache}); {_fetch_hint(name)}"
    )
    try:
        info = scan_cache_dir(cache)
    except CacheNotFound:
        raise absent from None
    for repo in info.repos:
        if repo.repo_type != "dataset" or repo.repo_id != hub_id or not repo.revisions:
            continue
        # The revision ``main`` points to; else the newest one cached.
        revision = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        files = [f.file_name for f in revision.files]
        if not any(f.endswith((".parquet", ".csv")) for f in files):
            raise DatasetNotAvailable(
                f"{name} ({hub_id}): the cached snapshot {revision.commit_hash[:12]} holds no "
                f"data files; {_fetch_hint(name)}"
            )
        return DataSource(name, "hf-cache", revision.snapshot_path, revision.commit_hash)
    raise absent


def locate(cfg: HubDatasetConfig, cache_dir: Path | None = None) -> DataSource:
    """The local files of ``cfg``'s dataset; raises :class:`DatasetNotAvailable`.

    ``dataset.path`` wins; otherwise the newest cached snapshot of the Hub repo
    (the one ``main`` points to, when several are cached).
    """
    if cfg.path is not None:
        return _from_path(cfg)
    return _cached(cfg.name, cache_dir or hub_cache_dir())


Downloader = Callable[..., str]
"""``huggingface_hub.snapshot_download``'s signature (the seam tests replace)."""


def fetch(
    name: str,
    *,
    revision: str | None = None,
    cache_dir: Path | None = None,
    download: Downloader | None = None,
) -> DataSource:
    """Download dataset ``name``'s Hub repo into the HF cache (the user asked for it)."""
    if name not in HUB_DATASETS:
        raise DatasetNotAvailable(
            f"{name!r} is not a Hub dataset (valid: {', '.join(HUB_DATASETS)})"
        )
    if download is None:
        from huggingface_hub import snapshot_download

        download = snapshot_download
    cache = cache_dir or hub_cache_dir()
    hub_id = facts(name).hub_id
    log.info("fetching %s (%s) into %s", name, hub_id, cache)
    download(
        repo_id=hub_id,
        repo_type="dataset",
        revision=revision,
        cache_dir=str(cache),
        allow_patterns=list(DATA_PATTERNS),
    )
    return _cached(name, cache)
