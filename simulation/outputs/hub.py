"""Hugging Face Hub import and export, through one network seam.

*Import* registers existing Hub models as versions of a run's model registry,
with everything the reference PoC (ericyoc/huggingface-model-metadata-
blockchain-poc) recorded — name, architecture, vocabulary size, special tokens,
category, task, last modified — plus licence, library, parameter count and
every file's size and SHA-256, so marketplace experiments can price, license,
vote on and search real models. *Export* writes a run's model version as a
Hub-format folder whose weights hash is checked against the ledger and whose
model card states the privacy guarantee the run actually had, the
contributors' shares and an inclusion proof of the version entry.

All network access goes through :class:`HubClient` (``model_info`` and
``file``): :class:`HfApiHubClient` calls the Hub, while
:class:`RecordedHubClient` replays recorded responses (the JSON body of
``GET /api/models/{repo_id}?blobs=true`` and the small files), so tests and
offline machines never open a socket. Local model folders and the local HF
cache need no client at all.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simulation.config.schema import DEFAULT_LICENSE, VERSIONS_DIR
from simulation.names import CLIENT_EPSILON
from simulation.outputs.hf_metadata import (
    category_of,
    infer_task,
    labels_of,
    library_of,
    safetensors_parameters,
    special_tokens,
    tensor_shapes,
)
from simulation.outputs.plots import OutputsError

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ModelInfo

    from marketplace import PriceTerms
    from marketplace.keyring import Keyring

__all__ = [
    "FIXTURES_ENV",
    "ArtifactMismatchError",
    "ExportResult",
    "HfApiHubClient",
    "HubClient",
    "HubError",
    "HubFile",
    "HubModelRecord",
    "PrivacyClaim",
    "RecordedHubClient",
    "Registered",
    "export_version",
    "fixture_name",
    "privacy_claim",
    "read_model_list",
    "record_from_cache",
    "record_from_local_dir",
    "record_from_model_info",
    "register_models",
    "resolve_record",
    "run_prices",
    "sample_ids",
    "table_rows",
    "write_records",
]

logger = logging.getLogger("fedmarket.outputs")

FIXTURES_ENV = "FEDMARKET_HF_FIXTURES"
WEIGHTS_FILE = "model.safetensors"

# Input shape and classes of the built-in datasets (mirrors simulation/fl/data.py,
# kept here so exporting needs neither torch nor the dataset download).


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

    def file(self, repo_id: str, filename: str, revision: str | None) -> bytes | None:
        """The bytes of one small repo file at ``revision``; ``None`` if the repo has none."""
        ...


class HfApiHubClient:
    """The real client: :meth:`huggingface_hub.HfApi.model_info` with file metadata,
    and :func:`huggingface_hub.hf_hub_download` (through the HF cache) for files."""

    def __init__(self, token: str | None = None) -> None:
        from huggingface_hub import HfApi

        self._api = HfApi(token=token)
        self._token = token

    def model_info(self, repo_id: str) -> ModelInfo:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return self._api.model_info(repo_id, files_metadata=True)
        except HfHubHTTPError as exc:
            raise HubError(f"{repo_id}: Hub request failed ({exc})") from None

    def file(self, repo_id: str, filename: str, revision: str | None) -> bytes | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

        try:
            path = hf_hub_download(repo_id, filename, revision=revision, token=self._token)
        except EntryNotFoundError:
            return None
        except HfHubHTTPError as exc:
            raise HubError(f"{repo_id}: downloading {filename} failed ({exc})") from None
        return Path(path).read_bytes()


def fixture_name(repo_id: str) -> str:
    """File name of a recorded response: ``owner__name.json``."""
    return repo_id.replace("/", "__") + ".json"


class RecordedHubClient:
    """Replays Hub API JSON responses recorded under ``directory``.

    ``owner__name.json`` holds the JSON body of ``/api/models/{repo_id}?blobs=true``,
    the payload :class:`~huggingface_hub.hf_api.ModelInfo` is built from, so the
    parsing path is the real one; ``owner__name/FILE`` holds the repo files a
    client downloads (``config.json``, ``tokenizer_config.json``, ...).
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

    def file(self, repo_id: str, filename: str, revision: str | None) -> bytes | None:
        path = self.directory / repo_id.replace("/", "__") / filename
        return path.read_bytes() if path.is_file() else None


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file of a model repo; ``sha256`` is ``None`` when neither the Hub (LFS)
    nor a download gave it."""

    path: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class HubModelRecord:
    """What the ledger records about one Hub model (``hf_metadata`` says where each
    field comes from)."""

    name: str
    """The repo id (``owner/name``), or a local folder's name."""
    source: str
    """``hub`` (API or recorded response), ``local`` (a folder) or ``cache`` (HF cache)."""
    sha: str | None
    """The Hub commit; a local folder's digest of its files (see record_from_local_dir)."""
    architecture: str | None
    model_type: str | None
    vocab_size: int | None
    special_tokens: Mapping[str, str | list[str]]
    category: str | None
    task: str | None
    task_source: str | None
    """``pipeline_tag``, ``architecture`` or ``id2label``: which rule gave ``task``."""
    labels: tuple[str, ...]
    library: str | None
    license: str | None
    last_modified: str | None
    """The Hub's last commit date; ``None`` for a folder or the cache (never a file mtime)."""
    parameters: int | None
    files: tuple[HubFile, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The ledger/JSON form (files as a list of objects)."""
        data = asdict(self)
        data["special_tokens"] = dict(self.special_tokens)
        data["labels"] = list(self.labels)
        data["files"] = [asdict(f) for f in self.files]
        return data

    def weights(self) -> tuple[HubFile, ...]:
        """The weight files (by extension), with or without a known SHA-256."""
        return tuple(f for f in self.files if f.path.endswith(WEIGHT_SUFFIXES))

    def artifact(self) -> tuple[str, str]:
        """``(sha256, what)``: the SHA-256 a registry version records for this model.

        The primary weights file's own hash when there is one (so ``registry
        verify-artifact RUN FOLDER`` matches a downloaded copy); else, for sharded
        weights, the SHA-256 of the sorted ``path:sha256`` lines of every weights file.
        """
        hashed = {f.path: f.sha256 for f in self.weights() if f.sha256}
        for name in PRIMARY_WEIGHTS:
            if name in hashed:
                return str(hashed[name]), name
        if not hashed or len(hashed) != len(self.weights()):
            raise HubError(f"{self.name}: no weights file with a known SHA-256 to register")
        lines = "\n".join(f"{p}:{h}" for p, h in sorted(hashed.items()))
        return hashlib.sha256(lines.encode()).hexdigest(), "weights-manifest"


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth")
PRIMARY_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
SMALL_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")
"""Files an import reads (downloaded from the Hub; at most a few kB each)."""

TABLE_COLUMNS = (
    ("Model Name", "name"),
    ("Architecture", "architecture"),
    ("Vocabulary Size", "vocab_size"),
    ("Special Tokens", "special_tokens"),
    ("Model Category", "category"),
    ("Model Type", "task"),
    ("Last Modified", "last_modified"),
)
"""The reference PoC's final table: header -> record field (its "Model Type" is the task)."""
EXTRA_COLUMNS = ("version", "license", "library", "parameters", "files", "files_sha256", "sha")


def _license_from(tags: Iterable[str] | None, card: Mapping[str, Any] | None) -> str | None:
    if card and card.get("license"):
        return str(card["license"])
    for tag in tags or ():
        if tag.startswith("license:"):
            return tag.split(":", 1)[1]
    return None


def _architecture(config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    arch = config.get("architectures")
    name = str(arch[0]) if isinstance(arch, list) and arch else None
    if name is None and isinstance(config.get("architecture"), str):
        name = str(config["architecture"])  # timm's config.json convention
    model_type = config.get("model_type")
    return name, str(model_type) if model_type else None


def _json_or_empty(data: bytes | None, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HubError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise HubError(f"{where}: expected a JSON object")
    return parsed


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a repo's small files and card say, wherever they were read from."""

    config: Mapping[str, Any]
    tokenizer: Mapping[str, Any]
    special_map: Mapping[str, Any]
    card: Mapping[str, Any]


def _record(
    name: str,
    source: str,
    sha: str | None,
    last_modified: str | None,
    facts: _Facts,
    files: tuple[HubFile, ...],
    *,
    pipeline_tag: str | None = None,
    tags: Iterable[str] | None = None,
    hub_tokenizer: Mapping[str, Any] | None = None,
    library: str | None = None,
    parameters: int | None = None,
) -> HubModelRecord:
    arch, model_type = _architecture(facts.config)
    names = [f.path for f in files]
    labels = labels_of(facts.config)
    task, task_source = infer_task(
        pipeline_tag or facts.card.get("pipeline_tag"), arch, labels, names
    )
    vocab = facts.config.get("vocab_size")
    return HubModelRecord(
        name=name,
        source=source,
        sha=sha,
        architecture=arch,
        model_type=model_type,
        vocab_size=int(vocab) if isinstance(vocab, int) else None,
        special_tokens=special_tokens(facts.special_map, facts.tokenizer, hub_tokenizer),
        category=category_of(task),
        task=task,
        task_source=task_source,
        labels=labels,
        library=library or library_of(facts.card, facts.config, names),
        license=_license_from(tags, facts.card),
        last_modified=last_modified,
        parameters=parameters,
        files=files,
    )


def _git_blob_id(data: bytes) -> str:
    """Git's object id of a blob (what the Hub lists as a file's ``blobId``)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _fetch(
    client: HubClient, info: ModelInfo, name: str, blob_ids: Mapping[str, str | None]
) -> bytes | None:
    """Download one small file and check it is the blob the Hub listed for the commit."""
    if name not in blob_ids:
        return None
    data = client.file(info.id, name, info.sha)
    if data is None:
        raise HubError(f"{info.id}: the Hub lists {name} but it could not be downloaded")
    expected = blob_ids[name]
    if expected is not None and _git_blob_id(data) != expected:
        raise HubError(f"{info.id}: downloaded {name} is not blob {expected} of {info.sha}")
    return data


def record_from_model_info(info: ModelInfo, client: HubClient) -> HubModelRecord:
    """A record from the Hub API's answer (with ``files_metadata``) and the small
    files downloaded through ``client``, each checked against its listed git blob."""
    siblings = sorted(info.siblings or (), key=lambda s: s.rfilename)
    blob_ids = {s.rfilename: s.blob_id for s in siblings}
    fetched = {n: _fetch(client, info, n, blob_ids) for n in SMALL_FILES}
    card: dict[str, Any] = {}
    if info.card_data is not None:
        card = info.card_data.to_dict()  # type: ignore[no-untyped-call]
    config = _json_or_empty(fetched["config.json"], f"{info.id}/config.json") or dict(
        info.config or {}
    )
    facts = _Facts(
        config=config,
        tokenizer=_json_or_empty(fetched["tokenizer_config.json"], f"{info.id}/tokenizer_config"),
        special_map=_json_or_empty(fetched["special_tokens_map.json"], f"{info.id}/special"),
        card=card,
    )

    def sha256_of(s: Any) -> str | None:
        if s.lfs is not None:
            return str(s.lfs.sha256)
        data = fetched.get(s.rfilename)
        return hashlib.sha256(data).hexdigest() if data is not None else None

    files = tuple(
        HubFile(s.rfilename, None if s.size is None else int(s.size), sha256_of(s))
        for s in siblings
    )
    hub_tok = (info.config or {}).get("tokenizer_config")
    return _record(
        info.id,
        "hub",
        info.sha,
        info.last_modified.isoformat() if info.last_modified else None,
        facts,
        files,
        pipeline_tag=info.pipeline_tag,
        tags=info.tags,
        hub_tokenizer=hub_tok if isinstance(hub_tok, Mapping) else None,
        library=info.library_name,
        parameters=int(info.safetensors.total) if info.safetensors else None,
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


def _read_json_file(path: Path) -> dict[str, Any]:
    return _json_or_empty(path.read_bytes() if path.is_file() else None, str(path))


def _folder_record(folder: Path, name: str, source: str, sha: str | None) -> HubModelRecord:
    files = tuple(
        HubFile(p.relative_to(folder).as_posix(), p.stat().st_size, _sha256(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    )
    facts = _Facts(
        config=_read_json_file(folder / "config.json"),
        tokenizer=_read_json_file(folder / "tokenizer_config.json"),
        special_map=_read_json_file(folder / "special_tokens_map.json"),
        card=_readme_meta(folder),
    )
    weights = [folder / f.path for f in files if f.path.endswith(".safetensors")]
    parameters = sum(safetensors_parameters(p) for p in weights) if weights else None
    # A folder has no commit date; its files' mtimes would make heads machine-dependent.
    return _record(name, source, sha, None, facts, files, parameters=parameters)


def record_from_local_dir(folder: Path, name: str | None = None) -> HubModelRecord:
    """A record for a local model folder (``config.json`` + weights); hashes every file.

    The folder has no Hub commit, so ``sha`` is the SHA-256 of the sorted
    ``path:sha256`` list: it changes whenever any file does.
    """
    if not (folder / "config.json").is_file():
        raise HubError(f"{folder}: not a model folder (no config.json)")
    record = _folder_record(folder, name or folder.name, "local", None)
    digest = hashlib.sha256(
        "\n".join(f"{f.path}:{f.sha256}" for f in record.files).encode()
    ).hexdigest()
    return replace(record, sha=digest)


def record_from_cache(repo_id: str, cache_dir: Path | None = None) -> HubModelRecord | None:
    """A record from the local HF cache (newest cached revision), or ``None`` if absent.

    The cache keeps the commit but not its date, so ``last_modified`` is ``None``.
    """
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
        return _folder_record(revision.snapshot_path, repo_id, "cache", revision.commit_hash)
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
    return record_from_model_info(client.model_info(ref), client)


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


# -- registration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    """An imported model as the registry holds it."""

    record: HubModelRecord
    version: str
    seq: int
    """Sequence number of its ``model_version`` entry."""
    artifact_sha256: str


def run_prices(run_dir: Path) -> dict[str, PriceTerms]:
    """The run's licence price list for imported models: ``market.prices`` of its
    ``scenario.yaml``, the terms its own versions are sold under; none (not for sale)
    when the run prices from demand, since an imported model has no measured accuracy
    to price (:class:`simulation.config.prices.DemandPricing`)."""
    import yaml

    from simulation.config.prices import pricing_for
    from simulation.config.schema import MarketConfig

    path = run_dir / "scenario.yaml"
    if not path.is_file():
        raise HubError(f"{run_dir}: no scenario.yaml, so no price list for imported models")
    scenario = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    market = MarketConfig.model_validate(scenario.get("market", {}))
    prices = pricing_for(market)({})
    if not prices:
        logger.info("%s: no market.prices; imported models are not for sale", run_dir)
    return prices


def _registry_metrics(record: HubModelRecord) -> dict[str, float]:
    """What an imported model's files prove of the registry's footprint metrics."""
    out: dict[str, float] = {}
    if record.parameters is not None:
        out["parameters"] = float(record.parameters)
    sizes = [f.size for f in record.weights()]
    if sizes and all(s is not None for s in sizes):
        out["size_bytes"] = float(sum(s for s in sizes if s is not None))
    return out


def register_models(
    run_dir: Path, records: Sequence[HubModelRecord], *, keyring: Keyring
) -> list[Registered]:
    """Register each record as a model version of the run's registry (priced with the
    run's price list; no contributors, so licence revenue goes to the treasury), signed
    with the run's ``keyring``, in a block of their own sealed with a signed checkpoint;
    the manifest's ledger head is amended (the earlier head kept)."""
    from marketplace import Market
    from simulation.results.write import amend_manifest

    out: list[Registered] = []
    with Market.open(run_dir, readonly=False, keyring=keyring) as market:
        prices = run_prices(run_dir)  # after the keyring is known to be the ledger's
        market.end_block()  # anything the run left open is not sealed with the imports
        for record in records:
            digest, what = record.artifact()
            imported = record.to_json() | {"artifact": what}
            version = market.register_model_version(
                round=0,
                parent=None,
                artifact_sha256=digest,
                metrics=_registry_metrics(record),
                contributors={},
                prices=prices or None,
                imported=imported,
            )
            out.append(Registered(record, version, market.version(version).seq, digest))
        market.end_block()
        summary = market.summary()
    amend_manifest(run_dir, summary, reason=f"registry import-hf ({len(out)} models)")
    logger.info("registered %d Hub models on %s", len(out), run_dir)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, ensure_ascii=False)
    return str(value)


def table_rows(registered: Sequence[Registered]) -> list[dict[str, str]]:
    """One row per model: the PoC's columns (its headers), then ours."""
    rows = []
    for r in registered:
        rec = r.record
        row = {header: _cell(getattr(rec, attr)) for header, attr in TABLE_COLUMNS}
        row |= {
            "version": r.version,
            "license": _cell(rec.license),
            "library": _cell(rec.library),
            "parameters": _cell(rec.parameters),
            "files": str(len(rec.files)),
            "files_sha256": str(sum(1 for f in rec.files if f.sha256)),
            "sha": _cell(rec.sha),
        }
        rows.append(row)
    return rows


def write_records(registered: Sequence[Registered], out_dir: Path) -> tuple[Path, Path]:
    """Write ``models_metadata.csv`` (the PoC's table, one row per model) and
    ``models_metadata.json`` (full records with their version, entry and artifact)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "models_metadata.csv", out_dir / "models_metadata.json"
    header = [h for h, _ in TABLE_COLUMNS] + list(EXTRA_COLUMNS)
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(table_rows(registered))
    docs = [
        {"version": r.version, "entry": r.seq, "artifact_sha256": r.artifact_sha256}
        | r.record.to_json()
        for r in registered
    ]
    json_path.write_text(
        json.dumps(docs, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
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


@dataclass(frozen=True, slots=True)
class PrivacyClaim:
    """The differential-privacy guarantee an exported version may claim.

    ``epsilon`` is the largest per-data-owner ε after the version's round (DP-SGD's
    accountant), or the client-level ε of user-level DP-FedAvg after that round.
    """

    mechanism: str
    """``dp_sgd`` (per-example DP-SGD on each client) or the client-level mode."""
    epsilon: float | None
    delta: float | None
    round: int
    section: str
    """The model card's privacy section (Markdown)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "round": self.round,
        }


def _epsilon_at(rounds: Any, round_: int, column: str = "epsilon_max") -> float | None:
    """``column`` of ``rounds.parquet``'s row for ``round_`` (``None`` if absent)."""
    if rounds is None or column not in getattr(rounds, "columns", ()):
        return None
    rows = rounds[rounds["round"] == round_]
    return float(rows[column].iloc[0]) if len(rows) else None


def privacy_claim(scenario: Mapping[str, Any], rounds: Any, round_: int) -> PrivacyClaim | None:
    """What the run's privacy settings let a card claim for the version of ``round_``:
    nothing without DP; (ε, δ) at that round for DP-SGD, or for client-level DP
    (``rounds.parquet``'s ``client_epsilon``)."""
    privacy = scenario.get("privacy", {}) or {}
    client_dp = (scenario.get("aggregation", {}) or {}).get("client_dp")
    if privacy.get("mode") == "dp_sgd":
        eps, delta = _epsilon_at(rounds, round_), privacy.get("delta")
        if eps is None:
            raise HubError(f"rounds.parquet has no epsilon_max for round {round_}")
        noise = privacy.get("noise_multiplier")
        section = (
            f"Each client trained with DP-SGD (noise multiplier {noise}, clipping norm "
            f"{privacy.get('max_grad_norm')}), so every client's data is protected by "
            f"**(ε = {eps:.4f}, δ = {delta})**-DP: the largest ε over clients after "
            f"round {round_}, the round this version was registered in."
        )
        return PrivacyClaim("dp_sgd", eps, delta, round_, section)
    if client_dp:
        mode = str(client_dp.get("mode"))
        eps = _epsilon_at(rounds, round_, CLIENT_EPSILON)
        if eps is None or math.isnan(eps):
            raise HubError(f"rounds.parquet has no {CLIENT_EPSILON} for round {round_}")
        delta = client_dp.get("delta", 1e-5)
        section = (
            f"The server aggregated with user-level DP-FedAvg (`{mode}`: noise multiplier "
            f"{client_dp.get('noise_multiplier')}, clipping norm {client_dp.get('clipping_norm')}),"
            f" so every client's whole contribution is protected by **(ε = {eps:.4f}, "
            f"δ = {delta})**-DP after round {round_}, the round this version was registered "
            "in. The ledger's per-client entries are outside this guarantee."
        )
        return PrivacyClaim(mode, eps, delta, round_, section)
    return None


def _weights_for(run_dir: Path, version: str, final: str) -> Path:
    candidates = [run_dir / VERSIONS_DIR / f"{version}.safetensors"]
    if version == final:
        candidates.insert(0, run_dir / WEIGHTS_FILE)
    for path in candidates:
        if path.is_file():
            return path
    if version == final:
        raise HubError(f"{run_dir}: no {WEIGHTS_FILE} (was output.save_model off?)")
    raise HubError(
        f"{run_dir}: no weights for {version} ({VERSIONS_DIR}/{version}.safetensors); "
        f"only runs with output.keep_versions: true keep versions other than the final "
        f"one ({final})"
    )


MODEL_FIELDS: dict[str, dict[str, str]] = {
    "logreg": {},
    "mlp": {"hidden_sizes": "hidden"},
    "cnn": {"channels": "channels"},
    "lenet5": {},
    "fedavg_cnn": {},
    "resnet8": {},
    "resnet20": {},
    "char_lstm": {k: k for k in ("embedding_dim", "lstm_hidden", "lstm_layers")},
}
"""Per model name: ``config.json`` key -> the ``model`` field it is rebuilt from
(``simulation/fl/models.py`` reads exactly these)."""


def _input_spec(
    dataset: Mapping[str, Any], data: Mapping[str, Any] | None
) -> tuple[tuple[int, ...], int]:
    """The model's input shape and class count: as the run's manifest recorded them,
    else the dataset's known shape (runs from before the manifest had them)."""
    if data and data.get("input_shape"):
        return tuple(int(d) for d in data["input_shape"]), int(data["num_classes"])
    from simulation.config.catalog import DATASETS

    known = DATASETS.get(str(dataset.get("name", "")))
    if known is not None and known.input_shape is not None and known.num_classes is not None:
        return known.input_shape, known.num_classes
    synthetic = dataset.get("synthetic", {})
    return (int(synthetic.get("dim", 0)),), int(synthetic.get("num_classes", 0))


def _model_config(
    scenario: Mapping[str, Any],
    shapes: Mapping[str, list[int]],
    version: str,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The chosen model's fields and what rebuilding it needs: model name, its own
    size fields, input shape and number of classes (no other model's fields)."""
    dataset = scenario.get("dataset", {})
    model = scenario.get("model", {})
    name = str(dataset.get("name", ""))
    model_name = str(model.get("name", ""))
    if model_name not in MODEL_FIELDS:
        raise HubError(f"model.name {model_name!r}: no Hub config for it")
    input_shape, num_classes = _input_spec(dataset, data)
    config: dict[str, Any] = {
        "architectures": [f"FedMarket{model_name.upper()}"],
        "model_type": f"fedmarket-{model_name}",
        "fedmarket_model": model_name,
        "model_name": f"{scenario.get('name')}-{version}",
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "num_parameters": int(sum(int(np.prod(s)) for s in shapes.values())),
        "tensor_shapes": dict(shapes),
        "dataset": name,
        "fedmarket_version": version,
    }
    for key, field_name in MODEL_FIELDS[model_name].items():
        value = model.get(field_name)
        config[key] = list(value) if isinstance(value, list | tuple) else value
    return config


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _card_body(
    config: Mapping[str, Any],
    run: Any,
    mv: Any,
    head: str,
    proof_json: Mapping[str, Any],
    claim: PrivacyClaim | None,
) -> str:
    scenario = run.scenario
    contributors = "\n".join(
        f"| {acc} | {share:.6f} |" for acc, share in sorted(mv.contributors.items())
    )
    metrics = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(mv.metrics.items()))
    privacy = (
        f"\n## Differential privacy\n\n{claim.section}\n"
        if claim is not None
        else "\n## Privacy\n\nThis run used no differential privacy; no privacy guarantee "
        "is claimed.\n"
    )
    return f"""
# {config["model_name"]}

A `{config["fedmarket_model"]}` model trained with federated learning in the
FedMarket simulator (scenario `{scenario.get("name")}`, seed {run.seed}), version
`{config["fedmarket_version"]}` (round {mv.round}) of the run's signed model registry.
{privacy}
## Evaluation

Validation-split results (plain names) and test-split results (`test_*`), as the
ledger records them:

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
* version entry: #{proof_json["seq"]}, included in the Merkle tree of
  {proof_json["tree_size"]} entries with root `{proof_json["root"]}`
  (checkpoint #{proof_json["checkpoint_seq"]})

```json
{json.dumps(proof_json, indent=2)}
```

Check the weights with `fedmarket registry verify-artifact RUN_DIR THIS_FOLDER`.
"""


def export_version(run_dir: Path, version: str, out_dir: Path) -> ExportResult:
    """Write ``version`` of the run as a Hub model folder into ``out_dir``.

    ``version`` is a ledger version id (``v0010``) or ``final``/``latest``.
    The weights are copied only after their SHA-256 equals the version's
    ``artifact_sha256``: an export must be the model the ledger vouches for.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from marketplace import Market, artifact_sha256
    from simulation.outputs.plots import load_run

    run = load_run(run_dir, ledger=False)
    with Market.open(run_dir, readonly=True) as market:
        versions = [v for v in market.versions() if v.imported is None]
        if not versions:
            raise HubError(f"{run_dir}: the ledger has no model versions")
        final = versions[-1].version
        wanted = final if version in ("final", "latest") else version
        mv = market.version(wanted)
        head = market.head_hash
        proof = market.inclusion_proof(mv.seq)
    if mv.imported is not None:
        raise HubError(f"{wanted} was imported, not trained in this run: nothing to export")
    weights = _weights_for(run_dir, wanted, final)
    digest = artifact_sha256(weights)
    if digest != mv.artifact_sha256:
        raise ArtifactMismatchError(
            f"{weights}: sha256 {digest} differs from {wanted}'s artifact_sha256 "
            f"{mv.artifact_sha256}"
        )
    scenario = run.scenario
    claim = privacy_claim(scenario, run.rounds, mv.round)
    data = run.manifest.get("data")
    config = _model_config(
        scenario, tensor_shapes(weights), wanted, data if isinstance(data, Mapping) else None
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, out_dir / WEIGHTS_FILE)
    _write_json(out_dir / "config.json", config)
    proof_json = {
        "seq": proof.seq,
        "tree_size": proof.tree_size,
        "leaf_hash": proof.leaf_hash,
        "path": list(proof.path),
        "root": proof.root,
        "checkpoint_seq": proof.checkpoint_seq,
    }
    _write_json(
        out_dir / "fedmarket_provenance.json",
        {
            "run": str(run_dir),
            "scenario_hash": run.manifest.get("scenario_hash"),
            "version": wanted,
            "round": mv.round,
            "artifact_sha256": mv.artifact_sha256,
            "ledger_head": head,
            "inclusion_proof": proof_json,
            "contributors": dict(sorted(mv.contributors.items())),
            "metrics": dict(mv.metrics),
            "privacy": claim.to_json() if claim is not None else None,
        },
    )
    license_id = str((scenario.get("output", {}) or {}).get("license") or DEFAULT_LICENSE)
    tags = ["federated-learning", "fedmarket"]
    if claim is not None:
        tags.insert(1, "differential-privacy")
    card_data = ModelCardData(
        license=license_id,
        library_name="fedmarket",
        datasets=[config["dataset"]],
        tags=tags,
        model_name=config["model_name"],
    )
    body = _card_body(config, run, mv, head, proof_json, claim)
    ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}").save(out_dir / "README.md")
    files = tuple(sorted(p for p in out_dir.iterdir() if p.is_file()))
    logger.info("exported %s of %s to %s", wanted, run_dir, out_dir)
    return ExportResult(out_dir, wanted, digest, files)
