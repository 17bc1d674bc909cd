"""Hugging Face Hub import and export, through one network seam.

*Import* registers existing Hub models on a run's ledger (architecture, task,
library, license, commit sha and per-file SHA-256), so that marketplace
experiments can price, license and vote on real models. *Export* writes a
run's model version as a Hub-format folder whose weights hash is checked
against the ledger and whose model card carries the DP guarantee, the
contributors' shares and an inclusion proof of the version entry.

All network access goes through :class:`HubClient` (one method,
``model_info``): :class:`HfApiHubClient` calls the Hub, while
:class:`RecordedHubClient` replays JSON responses recorded from the Hub API
(``GET /api/models/{repo_id}?blobs=true``), so tests and offline machines
never open a socket. Local model folders and the local HF cache need no
client at all.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simulation.outputs.plots import OutputsError

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ModelInfo

    from marketplace.keyring import Keyring

__all__ = [
    "EXPORT_EVENT",
    "FIXTURES_ENV",
    "IMPORT_EVENT",
    "ArtifactMismatchError",
    "ExportResult",
    "HfApiHubClient",
    "HubClient",
    "HubError",
    "HubFile",
    "HubModelRecord",
    "RecordedHubClient",
    "export_version",
    "fixture_name",
    "read_model_list",
    "record_from_cache",
    "record_from_local_dir",
    "record_from_model_info",
    "register_models",
    "resolve_record",
    "sample_ids",
    "write_records",
]

logger = logging.getLogger("fedmarket.outputs")

FIXTURES_ENV = "FEDMARKET_HF_FIXTURES"
IMPORT_EVENT = "hf_model_registered"
EXPORT_EVENT = "hf_model_exported"
WEIGHTS_FILE = "model.safetensors"

# Input shape and classes of the built-in datasets (mirrors simulation/fl/data.py,
# kept here so exporting needs neither torch nor the dataset download).
_DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "breast_cancer": ((30,), 2),
}


class HubError(OutputsError):
    """A Hub model could not be resolved (no fixture, no local folder, Hub error)."""


class ArtifactMismatchError(HubError):
    """The weights file's SHA-256 differs from the version's ``artifact_sha256``."""


# -- the seam ------------------------------------------------------------------------------


class HubClient(Protocol):
    """The one way this module reaches the Hub."""

    def model_info(self, repo_id: str) -> ModelInfo:
        """Model metadata including per-file sizes and LFS SHA-256 (``files_metadata``)."""
        ...


class HfApiHubClient:
    """The real client: :meth:`huggingface_hub.HfApi.model_info` with file metadata."""

    def __init__(self, token: str | None = None) -> None:
        from huggingface_hub import HfApi

        self._api = HfApi(token=token)

    def model_info(self, repo_id: str) -> ModelInfo:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return self._api.model_info(repo_id, files_metadata=True)
        except HfHubHTTPError as exc:
            raise HubError(f"{repo_id}: Hub request failed ({exc})") from None


def fixture_name(repo_id: str) -> str:
    """File name of a recorded response: ``owner__name.json``."""
    return repo_id.replace("/", "__") + ".json"


class RecordedHubClient:
    """Replays Hub API JSON responses recorded under ``directory``.

    Each file holds the JSON body of ``/api/models/{repo_id}?blobs=true``, the
    same payload :class:`~huggingface_hub.hf_api.ModelInfo` is built from, so
    the parsing path is the real one.
    """

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise HubError(f"{directory}: fixtures directory does not exist")
        self.directory = directory

    def model_info(self, repo_id: str) -> ModelInfo:
        from huggingface_hub.hf_api import ModelInfo

        path = self.directory / fixture_name(repo_id)
        if not path.is_file():
            raise HubError(f"{repo_id}: no recorded response ({path} missing)")
        payload = json.loads(path.read_text(encoding="utf-8"))
        return ModelInfo(**payload)  # type: ignore[no-untyped-call]


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file of a model repo; ``sha256`` is ``None`` when the Hub does not give it."""

    path: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class HubModelRecord:
    """What the ledger records about one Hub model."""

    repo_id: str
    source: str
    """``hub`` (API or recorded response), ``local`` (a folder) or ``cache`` (HF cache)."""
    sha: str | None
    architecture: str | None
    model_type: str | None
    task: str | None
    library: str | None
    license: str | None
    last_modified: str | None
    files: tuple[HubFile, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The ledger/JSON form (files as a list of objects)."""
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        return data

    def summary_row(self) -> dict[str, Any]:
        """A flat row for CSV and the CLI table."""
        hashed = sum(1 for f in self.files if f.sha256)
        return {
            "repo_id": self.repo_id,
            "source": self.source,
            "architecture": self.architecture,
            "task": self.task,
            "library": self.library,
            "license": self.license,
            "last_modified": self.last_modified,
            "sha": self.sha,
            "files": len(self.files),
            "files_sha256": hashed,
        }


_SUMMARY_FIELDS = (
    "repo_id",
    "source",
    "architecture",
    "task",
    "library",
    "license",
    "last_modified",
    "sha",
    "files",
    "files_sha256",
)


def _license_from(tags: Iterable[str] | None, card: Mapping[str, Any] | None) -> str | None:
    if card and card.get("license"):
        return str(card["license"])
    for tag in tags or ():
        if tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return None


def _architecture(config: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not config:
        return None, None
    arch = config.get("architectures")
    name = str(arch[0]) if isinstance(arch, list) and arch else None
    if name is None and isinstance(config.get("architecture"), str):
        name = str(config["architecture"])  # timm's config.json convention
    model_type = config.get("model_type")
    return name, str(model_type) if model_type else None


def record_from_model_info(info: ModelInfo) -> HubModelRecord:
    """Map a :class:`ModelInfo` (with ``files_metadata``) onto a ledger record."""
    card: dict[str, Any] | None = None
    if info.card_data is not None:
        card = info.card_data.to_dict()  # type: ignore[no-untyped-call]
    arch, model_type = _architecture(info.config)
    if arch is None and info.transformers_info is not None:
        arch = info.transformers_info.auto_model
    files = tuple(
        HubFile(
            s.rfilename, s.size if s.size is None else int(s.size), s.lfs.sha256 if s.lfs else None
        )
        for s in sorted(info.siblings or (), key=lambda s: s.rfilename)
    )
    return HubModelRecord(
        repo_id=info.id,
        source="hub",
        sha=info.sha,
        architecture=arch,
        model_type=model_type,
        task=info.pipeline_tag,
        library=info.library_name,
        license=_license_from(info.tags, card),
        last_modified=info.last_modified.isoformat() if info.last_modified else None,
        files=files,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _readme_meta(folder: Path) -> dict[str, Any]:
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    from huggingface_hub.repocard import metadata_load

    return dict(metadata_load(readme) or {})


def _folder_record(
    folder: Path, repo_id: str, source: str, sha: str | None, last_modified: str | None
) -> HubModelRecord:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    meta = _readme_meta(folder)
    arch, model_type = _architecture(config)
    files = tuple(
        HubFile(p.relative_to(folder).as_posix(), p.stat().st_size, _sha256(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    )
    return HubModelRecord(
        repo_id=repo_id,
        source=source,
        sha=sha,
        architecture=arch,
        model_type=model_type,
        task=meta.get("pipeline_tag"),
        library=meta.get("library_name"),
        license=_license_from(meta.get("tags"), meta),
        last_modified=last_modified,
        files=files,
    )


def record_from_local_dir(folder: Path, repo_id: str | None = None) -> HubModelRecord:
    """A record for a local model folder (``config.json`` + weights); hashes every file.

    The folder has no Hub commit, so ``sha`` is the SHA-256 of the sorted
    ``path:sha256`` list: it changes whenever any file does.
    """
    if not (folder / "config.json").is_file():
        raise HubError(f"{folder}: not a model folder (no config.json)")
    record = _folder_record(folder, repo_id or folder.name, "local", None, None)
    digest = hashlib.sha256(
        "\n".join(f"{f.path}:{f.sha256}" for f in record.files).encode()
    ).hexdigest()
    return replace(record, sha=digest)


def record_from_cache(repo_id: str, cache_dir: Path | None = None) -> HubModelRecord | None:
    """A record from the local HF cache (newest cached revision), or ``None`` if absent."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return None
    for repo in info.repos:
        if repo.repo_type != "model" or repo.repo_id != repo_id or not repo.revisions:
            continue
        revision = max(repo.revisions, key=lambda r: (r.last_modified, r.commit_hash))
        from datetime import UTC, datetime

        modified = datetime.fromtimestamp(revision.last_modified, tz=UTC).isoformat()
        return _folder_record(
            revision.snapshot_path, repo_id, "cache", revision.commit_hash, modified
        )
    return None


def resolve_record(
    ref: str, client: HubClient | None, *, cache_dir: Path | None = None
) -> HubModelRecord:
    """Resolve ``ref``: a local folder, else the HF cache, else the Hub client."""
    path = Path(ref)
    if path.is_dir():
        return record_from_local_dir(path)
    cached = record_from_cache(ref, cache_dir) if cache_dir is not None else None
    if cached is not None:
        return cached
    if client is None:
        raise HubError(f"{ref}: not a local folder, not in the cache, and no Hub client")
    return record_from_model_info(client.model_info(ref))


def read_model_list(path: Path) -> list[str]:
    """Repo ids, one per line; blank lines and ``#`` comments ignored."""
    if not path.is_file():
        raise HubError(f"{path}: model list not found")
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln]


def sample_ids(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` distinct ids drawn with a seeded generator (same seed, same sample)."""
    if n < 1 or n > len(ids):
        raise HubError(f"--random {n}: must be between 1 and {len(ids)} (the list size)")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ids), size=n, replace=False)
    return [ids[int(i)] for i in picked]


def register_models(
    run_dir: Path, records: Sequence[HubModelRecord], *, keyring: Keyring
) -> list[int]:
    """Append one ``hf_model_registered`` event per record, signed with the run's
    ``keyring``, in a new block sealed with a signed checkpoint; the manifest's
    ledger head is amended (the earlier head kept). Returns the sequence numbers."""
    from marketplace import Market
    from simulation.results.write import amend_manifest

    seqs: list[int] = []
    with Market.open(run_dir, readonly=False, keyring=keyring) as market:
        market.end_block()  # entries after the run's last checkpoint stay in their own block
        for record in records:
            entry = market.record(IMPORT_EVENT, record.to_json())
            seqs.append(entry.seq)
        market.end_block()
        summary = market.summary()
    amend_manifest(run_dir, summary, reason=f"registry import-hf ({len(seqs)} models)")
    logger.info("registered %d Hub models on %s", len(seqs), run_dir)
    return seqs


def write_records(records: Sequence[HubModelRecord], out_dir: Path) -> tuple[Path, Path]:
    """Write ``hf_models.csv`` (one row per model) and ``hf_models.json`` (full records)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "hf_models.csv", out_dir / "hf_models.json"
    rows = [r.summary_row() for r in records]
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(_SUMMARY_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(
        json.dumps([r.to_json() for r in records], indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return csv_path, json_path


# -- export --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The exported folder and what it was checked against."""

    out_dir: Path
    version: str
    artifact_sha256: str
    files: tuple[Path, ...]


def _weights_for(run_dir: Path, version: str, final: str) -> Path:
    candidates = [run_dir / "versions" / f"{version}.safetensors"]
    if version == final:
        candidates.insert(0, run_dir / WEIGHTS_FILE)
    for path in candidates:
        if path.is_file():
            return path
    if version == final:
        raise HubError(f"{run_dir}: no {WEIGHTS_FILE} (was output.save_model off?)")
    raise HubError(
        f"{run_dir}: no weights for {version}; runs keep only the final version ({final}) "
        f"in {WEIGHTS_FILE}"
    )


def _tensor_shapes(weights: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as fh:
        return {k: list(fh.get_slice(k).get_shape()) for k in sorted(fh.keys())}


def _model_config(
    scenario: Mapping[str, Any], shapes: Mapping[str, list[int]], version: str
) -> dict[str, Any]:
    dataset = scenario.get("dataset", {})
    model = scenario.get("model", {})
    name = str(dataset.get("name", ""))
    if name in _DATASET_SHAPES:
        input_shape, num_classes = _DATASET_SHAPES[name]
    else:
        synthetic = dataset.get("synthetic", {})
        input_shape = (int(synthetic.get("dim", 0)),)
        num_classes = int(synthetic.get("num_classes", 0))
    return {
        "architectures": [f"FedMarket{str(model.get('name', 'model')).upper()}"],
        "model_type": f"fedmarket-{model.get('name')}",
        "model_name": f"{scenario.get('name')}-{version}",
        "hidden_sizes": list(model.get("hidden", [])),
        "channels": list(model.get("channels", [])),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "num_parameters": int(sum(int(np.prod(s)) for s in shapes.values())),
        "tensor_shapes": dict(shapes),
        "dataset": name,
        "fedmarket_version": version,
    }


def export_version(run_dir: Path, version: str, out_dir: Path) -> ExportResult:
    """Write ``version`` of the run as a Hub model folder into ``out_dir``.

    ``version`` is a ledger version id (``v0010``) or ``final``/``latest``.
    The weights are copied only after their SHA-256 equals the version's
    ``artifact_sha256``: an export must be the model the ledger vouches for.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from marketplace import Market
    from simulation.outputs.plots import load_run

    run = load_run(run_dir, ledger=False)
    with Market.open(run_dir, readonly=True) as market:
        versions = market.versions()
        if not versions:
            raise HubError(f"{run_dir}: the ledger has no model versions")
        final = versions[-1].version
        wanted = final if version in ("final", "latest") else version
        mv = market.version(wanted)
        head = market.head_hash
        proof = market.inclusion_proof(mv.seq)
    weights = _weights_for(run_dir, wanted, final)
    from marketplace import artifact_sha256

    digest = artifact_sha256(weights)
    if digest != mv.artifact_sha256:
        raise ArtifactMismatchError(
            f"{weights}: sha256 {digest} differs from {wanted}'s artifact_sha256 "
            f"{mv.artifact_sha256}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, out_dir / WEIGHTS_FILE)
    scenario = run.scenario
    config = _model_config(scenario, _tensor_shapes(weights), wanted)
    (out_dir / "config.json").write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    privacy = scenario.get("privacy", {})
    final_block = run.manifest.get("final", {})
    epsilon = final_block.get("epsilon_max") if isinstance(final_block, Mapping) else None
    delta = privacy.get("delta")
    proof_json = {
        "seq": proof.seq,
        "tree_size": proof.tree_size,
        "leaf_hash": proof.leaf_hash,
        "path": list(proof.path),
        "root": proof.root,
        "checkpoint_seq": proof.checkpoint_seq,
    }
    provenance = {
        "run": str(run_dir),
        "scenario_hash": run.manifest.get("scenario_hash"),
        "version": wanted,
        "round": mv.round,
        "artifact_sha256": mv.artifact_sha256,
        "ledger_head": head,
        "inclusion_proof": proof_json,
        "contributors": dict(sorted(mv.contributors.items())),
        "metrics": dict(mv.metrics),
        "epsilon": epsilon,
        "delta": delta,
    }
    (out_dir / "fedmarket_provenance.json").write_text(
        json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="fedmarket",
        datasets=[config["dataset"]],
        tags=["federated-learning", "differential-privacy", "fedmarket"],
        model_name=config["model_name"],
    )
    contributors = "\n".join(
        f"| {acc} | {share:.6f} |" for acc, share in sorted(mv.contributors.items())
    )
    metrics = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(mv.metrics.items()))
    eps_text = f"{epsilon:.4f}" if isinstance(epsilon, int | float) else "n/a"
    body = f"""
# {config["model_name"]}

A `{scenario.get("model", {}).get("name")}` model trained with federated learning in the
FedMarket simulator (scenario `{scenario.get("name")}`, seed {run.seed}), version `{wanted}`
(round {mv.round}) of the run's signed model registry.

## Differential privacy

Trained with DP-SGD (`{privacy.get("mode")}`, noise multiplier {privacy.get("noise_multiplier")},
clipping norm {privacy.get("max_grad_norm")}): **(ε = {eps_text}, δ = {delta})**-DP per client
(largest ε over clients at the end of the run).

## Evaluation

| metric | value |
|---|---|
{metrics}

## Contributors

Shares recorded on the ledger for this version:

| account | share |
|---|---|
{contributors}

## Provenance

* weights SHA-256: `{mv.artifact_sha256}`
* ledger head: `{head}`
* version entry: #{proof.seq}, included in the Merkle tree of {proof.tree_size} entries
  with root `{proof.root}` (checkpoint #{proof.checkpoint_seq})

```json
{json.dumps(proof_json, indent=2)}
```

Check the weights with `fedmarket registry verify-artifact RUN_DIR THIS_FOLDER`.
"""
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
    card.save(out_dir / "README.md")
    files = tuple(sorted(p for p in out_dir.iterdir() if p.is_file()))
    logger.info("exported %s of %s to %s", wanted, run_dir, out_dir)
    return ExportResult(out_dir, wanted, digest, files)
