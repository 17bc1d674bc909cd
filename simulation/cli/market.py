"""``fedmarket ledger ...`` and ``fedmarket registry ...`` (typer sub-apps).

Mounted by ``simulation/cli/main.py``. Kept free of torch/flwr imports so these
commands start fast and work on any machine that has the ledger file. Every
marketplace error becomes one line on stderr and a distinct exit code:

====  =====================================================
0     success
1     a refused transaction or other marketplace error (no keyring, ...)
2     bad usage (unknown entry, bad option)
3     the ledger failed verification (names the first bad entry), or a
      proof or checkpoint does not verify (names the reason)
4     no ledger in the run directory
5     the artifact matches no registered version
====  =====================================================

What each check guarantees, and against whom, is the "Threat model" section
of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from marketplace import AuditReport, Keyring, Market, SignedCheckpoint

__all__ = [
    "KeyringOption",
    "exit_code",
    "ledger_app",
    "load_keyring",
    "registry_app",
    "run_keyring",
]

ledger_app = typer.Typer(
    help="Inspect and verify a run's signed ledger.", no_args_is_help=True, rich_markup_mode=None
)
registry_app = typer.Typer(
    help="Query a run's model registry.", no_args_is_help=True, rich_markup_mode=None
)

EXIT_USAGE = 2
EXIT_NO_MATCH = 5

T = TypeVar("T")
RunDir = Annotated[Path, typer.Argument(help="Run directory holding ledger.db (or the .db file).")]
KeyringOption = Annotated[
    Path | None,
    typer.Option(
        "--keyring",
        help="Keyring file (default: $FEDMARKET_KEYRING, else ~/.config/fedmarket/keyring).",
    ),
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint", help="A signed checkpoint held elsewhere (from `ledger checkpoint`)."
    ),
]


def load_keyring(path: Path | None) -> Keyring:
    """The existing keyring at ``path`` or the default location (appending to a ledger
    needs the keyring it was made with, so none is created)."""
    from marketplace.keyring import Keyring, default_keyring_path

    return Keyring.load(path if path is not None else default_keyring_path())


def run_keyring(path: Path | None) -> Keyring:
    """The keyring a new run signs with: ``path`` or the default, created on first use."""
    from marketplace.keyring import Keyring

    return Keyring.load_or_create(path)


def exit_code(exc: Exception) -> int:
    """The exit code of a marketplace error (the ledger is imported only by the commands
    that open one, so ``fedmarket --help`` stays fast)."""
    from marketplace.errors import LedgerIntegrityError, LedgerNotFoundError, ProofError

    if isinstance(exc, LedgerIntegrityError | ProofError):
        return 3
    if isinstance(exc, LedgerNotFoundError):
        return 4
    return 1


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Map marketplace errors to one clear line and an exit code, no traceback."""
    import sqlite3

    from marketplace.errors import MarketplaceError

    try:
        yield
    except MarketplaceError as exc:
        code = exit_code(exc)
        prefix = "ledger verification failed: " if code == 3 else ""
        raise _fail(f"{prefix}{exc}", code) from None
    except sqlite3.Error as exc:  # a database the ledger code did not expect to fail
        raise _fail(f"ledger verification failed: unreadable ledger database: {exc}", 3) from None
    except (IndexError, ValueError, KeyError) as exc:
        raise _fail(str(exc).strip("'\""), EXIT_USAGE) from None


def _open(run_dir: Path) -> Market:
    from marketplace import Market

    return Market.open(run_dir, readonly=True)


def _with_market(run_dir: Path, fn: Callable[[Market], T]) -> T:
    with _errors():
        market = _open(run_dir)
        try:
            return fn(market)
        finally:
            market.close()


def _read_checkpoint(path: Path) -> SignedCheckpoint:
    from marketplace import SignedCheckpoint

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    return SignedCheckpoint.parse(text)


def _manifest_ledger(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        block = json.loads(path.read_text(encoding="utf-8")).get("ledger")
    except (OSError, ValueError, AttributeError):
        raise _fail(f"{path}: not a readable manifest", EXIT_USAGE) from None
    return block if isinstance(block, dict) else None


def _check_manifest(block: dict[str, Any], report: AuditReport) -> str:
    """Compare the audited ledger with manifest.json's head (and earlier heads)."""
    size, head = int(block["size"]), str(block["head"])
    if report.entries < size:
        raise _verification_failed(
            f"ledger truncated: manifest.json records {size} entries (head {head[:16]}…), "
            f"the ledger has {report.entries}"
        )
    if report.entries > size:
        raise _verification_failed(
            f"the ledger has {report.entries - size} entries after manifest.json's head "
            f"(#{size - 1}) that no amendment records"
        )
    if report.head_hash != head:
        raise _verification_failed(
            f"head {report.head_hash[:16]}… differs from manifest.json's {head[:16]}…"
        )
    for earlier in block.get("amendments", []):
        if report.heads_found.get(str(earlier["head"])) != int(earlier["size"]) - 1:
            raise _verification_failed(
                f"manifest.json's earlier head #{int(earlier['size']) - 1} "
                f"{str(earlier['head'])[:16]}… is not in the chain"
            )
    return f"manifest: head matches manifest.json ({size} entries)"


def _verification_failed(reason: str) -> typer.Exit:
    return _fail(f"ledger verification failed: {reason}", 3)


@ledger_app.command("verify")
def ledger_verify(
    run_dir: RunDir,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            help="Threads verifying signatures beside the auditing one (1: inline; default "
            "marketplace.audit.VERIFY_WORKERS, 2, as the run report's audit). Same result and "
            "first bad entry for any N.",
        ),
    ] = None,
    checkpoint: CheckpointOption = None,
    expect_head: Annotated[
        str | None,
        typer.Option(help="An entry hash published earlier that the ledger must still hold."),
    ] = None,
) -> None:
    """Audit everything from scratch (hashes, signatures, ledger ids, nonces, balances,
    Merkle roots, signed checkpoints, every contribution's ε re-derived with
    dp-accounting from its recorded mechanism), then compare with manifest.json's
    head and with any checkpoint or head held elsewhere (consistency proof)."""
    from marketplace import PrivacyAudit, audit_ledger
    from marketplace.audit import VERIFY_WORKERS

    with _errors():
        witness = _read_checkpoint(checkpoint) if checkpoint is not None else None
        block = _manifest_ledger(run_dir) if run_dir.is_dir() else None
        heads = [str(a["head"]) for a in (block or {}).get("amendments", [])]
        heads += [expect_head] if expect_head else []
        privacy = PrivacyAudit()
        report = audit_ledger(
            run_dir,
            workers=VERIFY_WORKERS if workers is None else workers,
            witness=witness,
            heads=heads,
            checks=privacy.checks(),
        )
    typer.echo(
        f"ok: {report.entries} entries, {report.sealed_blocks} sealed blocks "
        f"(+{report.open_block_entries} in the open block), {report.accounts} accounts, "
        f"supply {report.supply}, root {report.root}, head {report.head_hash}"
    )
    typer.echo(f"ledger id {report.ledger_id}, content digest {report.content_digest}")
    typer.echo(
        f"privacy: {privacy.checked} recorded ε re-derived with dp-accounting "
        f"({len(privacy.histories)} identities, max relative difference "
        f"{privacy.max_rel_error:.2g})"
    )
    if block is not None:
        typer.echo(_check_manifest(block, report))
    else:
        typer.echo("manifest: none with a ledger head here (not compared)")
    if expect_head:
        if expect_head not in report.heads_found:
            raise _verification_failed(
                f"expected head {expect_head[:16]}… is not in this ledger "
                "(truncated, or rewritten since it was published)"
            )
        typer.echo(f"expected head: entry #{report.heads_found[expect_head]}")
    if witness is not None:
        assert report.consistency is not None
        size = witness.checkpoint.tree_size
        typer.echo(
            f"checkpoint: signature ok; the ledger extends its {size} entries "
            f"(consistency proof {size} -> {report.entries}, {len(report.consistency)} hashes)"
        )
        for i, h in enumerate(report.consistency):
            typer.echo(f"proof[{i}]   {h}")


@ledger_app.command("checkpoint")
def ledger_checkpoint(
    run_dir: RunDir,
    out: Annotated[Path | None, typer.Option("--out", help="Write it to this file.")] = None,
    verifier_key: Annotated[
        bool, typer.Option("--verifier-key", help="Print the treasury's verifier key instead.")
    ] = False,
) -> None:
    """Export the latest signed checkpoint (C2SP signed note) for a witness to keep."""
    from marketplace.proofs import latest_signed_checkpoint

    with _errors():
        _, note, key = latest_signed_checkpoint(run_dir)
    text = key.verifier_key() + "\n" if verifier_key else note.text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out} ({note.checkpoint.tree_size} entries)")


@ledger_app.command("show")
def ledger_show(
    run_dir: RunDir,
    kind: Annotated[str | None, typer.Option(help="Only entries of this kind.")] = None,
    start: Annotated[int, typer.Option(help="First sequence number.")] = 0,
    limit: Annotated[int | None, typer.Option(help="At most this many entries.")] = None,
) -> None:
    """Print entries: number, time, kind, sender, data, previous hash, hash."""

    from marketplace.canonical import canonical_json

    def show(market: Market) -> None:
        shown = 0
        for e in market.entries(start):
            if kind is not None and e.kind != kind:
                continue
            if limit is not None and shown >= limit:
                break
            typer.echo(
                f"#{e.seq:<6} t={e.time:<10g} block={e.block:<4} {e.kind:<22} "
                f"{e.sender}#{e.nonce}  {canonical_json(e.data)}\n"
                f"        prev={e.prev_hash}  hash={e.hash}"
            )
            shown += 1

    _with_market(run_dir, show)


@ledger_app.command("prove")
def ledger_prove(
    run_dir: RunDir,
    entry: Annotated[int, typer.Argument(help="Sequence number of the entry.")],
    checkpoint: CheckpointOption = None,
) -> None:
    """Print an RFC 9162 inclusion proof of ENTRY and check it against the latest
    signed checkpoint that covers it (or --checkpoint), its signature included."""
    from marketplace.proofs import prove_inclusion

    with _errors():
        witness = _read_checkpoint(checkpoint) if checkpoint is not None else None
        proof = prove_inclusion(run_dir, entry, checkpoint=witness)
    signed = (
        f"signed checkpoint entry #{proof.checkpoint_seq}"
        if proof.checkpoint_seq is not None
        else f"signed checkpoint {checkpoint}"
    )
    typer.echo(f"entry      #{proof.seq}")
    typer.echo(f"leaf hash  {proof.leaf_hash}")
    typer.echo(f"tree size  {proof.tree_size}  ({signed})")
    typer.echo(f"root       {proof.root}")
    for i, h in enumerate(proof.path):
        typer.echo(f"path[{i}]    {h}")
    typer.echo("verified: ok (against the signed root)")


def _version_line(v: object) -> str:
    from marketplace import ModelVersion

    assert isinstance(v, ModelVersion)
    metrics = " ".join(f"{k}={v.metrics[k]:g}" for k in sorted(v.metrics))
    name = f" name={v.imported['name']}" if v.imported is not None else ""
    return f"{v.version} round={v.round} parent={v.parent or '-'}{name} {metrics}"


Bound = Annotated[float | None, typer.Option()]
Match = Annotated[str | None, typer.Option()]


@registry_app.command("search")
def registry_search(
    run_dir: RunDir,
    min_accuracy: Bound = None,
    min_precision: Bound = None,
    min_recall: Bound = None,
    min_f1: Bound = None,
    max_loss: Bound = None,
    max_recall_gap: Bound = None,
    max_equalized_odds_difference: Bound = None,
    max_modelled_latency_ms: Bound = None,
    max_params: Annotated[float | None, typer.Option(help="Most trainable parameters.")] = None,
    max_size_bytes: Bound = None,
    contributor: Annotated[str | None, typer.Option(help="Versions this account helped.")] = None,
    min_round: Annotated[int | None, typer.Option()] = None,
    task: Annotated[str | None, typer.Option(help="Imported models with this task.")] = None,
    architecture: Match = None,
    library: Match = None,
    license: Match = None,
) -> None:
    """List model versions whose validation results and footprint meet every bound
    (names in marketplace/model_registry.py) and whose imported metadata matches."""
    lows = {"accuracy": min_accuracy, "precision": min_precision}
    lows |= {"recall": min_recall, "f1": min_f1}
    highs = {"loss": max_loss, "recall_gap": max_recall_gap}
    highs |= {"equalized_odds_difference": max_equalized_odds_difference}
    highs |= {"modelled_latency_ms": max_modelled_latency_ms}
    highs |= {"parameters": max_params, "size_bytes": max_size_bytes}
    fields = {"task": task, "architecture": architecture, "library": library, "license": license}

    from marketplace import search_versions

    def search(market: Market) -> None:
        found = search_versions(
            market.versions(),
            minimum={k: v for k, v in lows.items() if v is not None},
            maximum={k: v for k, v in highs.items() if v is not None},
            contributor=contributor,
            round_min=min_round,
            imported={k: v for k, v in fields.items() if v is not None},
        )
        for v in found:
            typer.echo(_version_line(v))
        typer.echo(f"{len(found)} version(s) match")

    _with_market(run_dir, search)


@registry_app.command("show")
def registry_show(
    run_dir: RunDir, version: Annotated[str, typer.Argument(help="Version id, e.g. v0003.")]
) -> None:
    """Print one version: lineage, artifact hash, contributors, metrics, prices, rating."""

    def show(market: Market) -> None:
        v = market.version(version)
        prices = {k: t.to_json() for k, t in market.state.prices.get(version, {}).items()}
        rating = market.rating(version)
        doc = {
            "version": v.version,
            "round": v.round,
            "parent": v.parent,
            "artifact_sha256": v.artifact_sha256,
            "registered_at": v.time,
            "entry": v.seq,
            "contributors": dict(v.contributors),
            "metrics": dict(v.metrics),
            "imported": v.imported,
            "prices": prices,
            "votes": len(market.state.votes.get(version, {})),
            "rating_mean": rating,
        }
        typer.echo(json.dumps(doc, indent=2, sort_keys=True))

    _with_market(run_dir, show)


@registry_app.command("verify-artifact")
def registry_verify_artifact(
    run_dir: RunDir,
    file: Annotated[
        Path, typer.Argument(help="Weights file, or a directory holding model.safetensors.")
    ],
) -> None:
    """Say whether FILE's SHA-256 matches a registered version (exit 5 if not)."""

    from marketplace import artifact_sha256

    def check(market: Market) -> None:
        try:
            digest = artifact_sha256(file)
        except OSError as exc:
            raise _fail(f"cannot read {file}: {exc.strerror}", EXIT_USAGE) from None
        found = market.find_artifact(digest)
        if not found:
            raise _fail(f"{file} (sha256 {digest}) matches no registered version", EXIT_NO_MATCH)
        typer.echo(f"match: {file} is {', '.join(v.version for v in found)} (sha256 {digest})")

    _with_market(run_dir, check)
