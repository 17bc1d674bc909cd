"""``fedmarket reproduce RUN_DIR``: re-run a run from its manifest and compare.

The scenario (fully resolved) and seed come from ``manifest.json``. The
reproduction signs with *your* keyring, so its ledger head differs from the
original's unless the keyring is the same; what must match is the content
digest (every entry's content, no signatures or keys). On a mismatch the
first differing entry is printed. Package versions that differ from the
manifest's are listed first: ``constraints.txt`` pins the ones a result
depends on.

====  =====================================================
0     reproduced: the content digests match
2     no usable manifest in RUN_DIR, or a bad option
3     the run could not complete
6     not reproduced: names the first differing entry
====  =====================================================
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from simulation.cli.market import KeyringOption, run_keyring

__all__ = ["EXIT_NOT_REPRODUCED", "mount", "reproduce_command"]

EXIT_USAGE = 2
EXIT_RUN = 3
EXIT_NOT_REPRODUCED = 6


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(f"{path}: no manifest (was the run finished?)", EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise _fail(f"{path}: unreadable manifest: {exc}", EXIT_USAGE) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("ledger"), dict):
        raise _fail(f"{path}: the manifest records no ledger digests", EXIT_USAGE)
    return manifest


def _run_record(ledger: dict[str, Any]) -> tuple[int, str, str]:
    """``(size, content digest, head)`` the run itself produced (before any amendment)."""
    own = ledger["amendments"][0] if ledger.get("amendments") else ledger
    return int(own["size"]), str(own["content_digest"]), str(own["head"])


def _package_drift(recorded: dict[str, str]) -> list[str]:
    from simulation.results.write import package_versions

    now = package_versions()
    return [
        f"{name}: run had {recorded[name]}, installed {now.get(name, 'not installed')}"
        for name in sorted(recorded)
        if now.get(name) != recorded[name] and name != "fedmarket"
    ]


def reproduce_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory (manifest.json).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Keep the reproduction here (default: a temporary folder)."),
    ] = None,
    engine: Annotated[str, typer.Option(help="inprocess (default) or flower.")] = "inprocess",
    keyring: KeyringOption = None,
) -> None:
    """Re-run RUN_DIR's scenario and seed and compare content digests entry by entry."""
    from marketplace.content import content_digest, first_difference
    from simulation.engine.runner import run_scenario
    from simulation.errors import RunError, ScenarioError
    from simulation.scenario.load import validate_data

    manifest = _manifest(run_dir)
    if engine not in ("flower", "inprocess"):
        raise _fail(f"--engine: unknown engine {engine!r} (valid: flower, inprocess)", EXIT_USAGE)
    try:
        scenario = validate_data(manifest["scenario"], f"{run_dir / 'manifest.json'}:scenario")
    except ScenarioError as exc:
        raise _fail("; ".join(str(p) for p in exc.problems), EXIT_USAGE) from None
    size, digest, head = _run_record(manifest["ledger"])
    for line in _package_drift(manifest.get("packages", {})):
        typer.echo(f"warning: {line}", err=True)
    where = out if out is not None else Path(tempfile.mkdtemp(prefix="fm-reproduce-"))
    try:
        try:
            outcome = run_scenario(
                scenario, where, engine=engine, force=out is not None, keyring=run_keyring(keyring)
            )
        except RunError as exc:
            raise _fail(f"run failed: {exc}", EXIT_RUN) from None
        ledger = outcome.result.ledger
        assert ledger is not None
        if ledger.size == size and ledger.content_digest == digest:
            same_keyring = manifest["ledger"].get("keyring_id") == outcome.manifest["ledger"].get(
                "keyring_id"
            )
            typer.echo(f"reproduced: content digest {digest} over {size} entries matches")
            if same_keyring:
                verdict = "identical" if ledger.head == head else "DIFFERENT"
                typer.echo(f"same keyring: ledger head {verdict} ({ledger.head})")
            else:
                typer.echo("other keyring: ledger heads differ by design (signatures)")
            return
        if content_digest(run_dir, size) != digest:
            typer.echo(f"note: {run_dir}'s ledger no longer matches its manifest's digest")
        diff = first_difference(run_dir, where, size)
        where_note = f" (kept in {where})" if out is not None else ""
        if diff is None:  # the reproduction is longer than the run
            typer.echo(f"not reproduced: {ledger.size} entries, the run had {size}{where_note}")
        else:
            typer.echo(f"not reproduced: entry #{diff.seq} differs{where_note}")
            typer.echo(f"  run:        {diff.left or '(no such entry)'}")
            typer.echo(f"  reproduced: {diff.right or '(no such entry)'}")
        raise typer.Exit(EXIT_NOT_REPRODUCED)
    finally:
        if out is None:
            shutil.rmtree(where, ignore_errors=True)


def mount(app: typer.Typer) -> None:
    """Register ``reproduce`` on the main app."""
    app.command("reproduce")(reproduce_command)
