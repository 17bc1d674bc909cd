"""``fedmarket plot``, ``report``, ``export-hf`` and ``registry import-hf``.

:func:`mount` registers them on the main app and the registry sub-app (called
by ``simulation/cli/main.py``). They read saved results only, so they start fast
and work on any past run. Errors are one line on stderr and an exit code:

====  =====================================================
0     success
1     a marketplace error (refused transaction, ...)
2     bad usage: missing run/study directory, missing file, bad option,
      unresolvable Hub model
3     the ledger failed verification
4     no ledger in the run directory
5     exported weights do not match the version's artifact_sha256
====  =====================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from simulation.cli.market import KeyringOption, load_keyring

if TYPE_CHECKING:
    from simulation.outputs.hub import Registered

__all__ = ["mount"]

T = TypeVar("T")

EXIT_USAGE = 2
EXIT_MISMATCH = 5

PathArg = Annotated[Path, typer.Argument(help="A run directory, or a study directory of runs.")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Map every expected failure to one line on stderr and an exit code."""
    from marketplace import LedgerIntegrityError, LedgerNotFoundError, MarketplaceError
    from simulation.outputs.hub import ArtifactMismatchError
    from simulation.outputs.plots import OutputsError

    try:
        yield
    except ArtifactMismatchError as exc:
        raise _fail(str(exc), EXIT_MISMATCH) from None
    except OutputsError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except LedgerIntegrityError as exc:
        raise _fail(f"ledger verification failed: {exc}", 3) from None
    except LedgerNotFoundError as exc:
        raise _fail(str(exc), 4) from None
    except MarketplaceError as exc:
        raise _fail(str(exc), 1) from None
    except (KeyError, ValueError, OSError) as exc:
        raise _fail(str(exc).strip("'\""), EXIT_USAGE) from None


def _guard(fn: Callable[[], T]) -> T:
    with _errors():
        return fn()


def _require_dir(path: Path) -> None:
    if not path.exists():
        raise _fail(f"{path}: no such run or study directory", EXIT_USAGE)
    if not path.is_dir():
        raise _fail(f"{path}: not a directory", EXIT_USAGE)


def plot_command(
    path: PathArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Figure directory (default: PATH/plots).")
    ] = None,
    formats: Annotated[
        str, typer.Option("--format", help="Comma-separated formats: pdf, png, svg.")
    ] = "pdf,png",
) -> None:
    """Re-draw a saved run's or study's figures (PDF and PNG) from its files."""
    from simulation.outputs.plots import plot

    _require_dir(path)
    wanted = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    written = _guard(lambda: plot(path, out, wanted))
    typer.echo(f"wrote {len(written)} files to {written[0].parent if written else out}")


def report_command(
    path: PathArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default: PATH/report).")
    ] = None,
) -> None:
    """Write a self-contained HTML report and a Markdown twin for a run or study."""
    from simulation.outputs.report import write_report

    _require_dir(path)
    paths = _guard(lambda: write_report(path, out))
    typer.echo(f"wrote {paths.html} and {paths.markdown}")


def export_hf_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding ledger.db.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the Hub model into.")],
    version: Annotated[
        str, typer.Option("--version", help="Model version id (v0003) or 'final'.")
    ] = "final",
) -> None:
    """Export a model version as a Hub folder (weights, config.json, model card)."""
    from simulation.outputs.hub import export_version

    _require_dir(run_dir)
    result = _guard(lambda: export_version(run_dir, version, out))
    typer.echo(f"exported {result.version} (sha256 {result.artifact_sha256}) to {result.out_dir}")


def _print_table(registered: Sequence[Registered], run_dir: Path) -> None:
    """The reference PoC's final table (its seven columns) plus the registry version."""
    from rich.console import Console
    from rich.table import Table

    from simulation.outputs.hub import TABLE_COLUMNS, table_rows

    table = Table(title=f"{len(registered)} Hub models registered on {run_dir}", show_lines=True)
    headers = ["Version"] + [h for h, _ in TABLE_COLUMNS] + ["License", "Files (SHA-256)"]
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in table_rows(registered):
        cells = [row["version"]] + [row[h] for h, _ in TABLE_COLUMNS]
        cells += [row["license"], f"{row['files_sha256']}/{row['files']}"]
        table.add_row(*cells)
    Console(width=200).print(table)


def import_hf_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding ledger.db.")],
    repo_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Hub repo ids (owner/name) or local model folders."),
    ] = None,
    random: Annotated[
        int | None, typer.Option("--random", help="Sample N ids from the model list.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --random sample.")] = 0,
    from_list: Annotated[
        Path | None,
        typer.Option(
            "--from-list", help="Model list (one id per line; default: FIXTURES/models.txt)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write models_metadata.csv and models_metadata.json here (default: RUN)."
        ),
    ] = None,
    offline_fixtures: Annotated[
        Path | None,
        typer.Option(
            "--offline-fixtures",
            envvar="FEDMARKET_HF_FIXTURES",
            help="Replay recorded Hub responses from this folder instead of the network.",
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Look in this HF cache before asking the Hub."),
    ] = None,
    keyring: KeyringOption = None,
) -> None:
    """Register Hugging Face models as registry versions (metadata, per-file SHA-256),
    signed with the run's keyring (the manifest's ledger head is amended); print the
    PoC's final table and write it as CSV and JSON."""
    from simulation.outputs.hub import (
        HfApiHubClient,
        HubClient,
        RecordedHubClient,
        read_model_list,
        register_models,
        resolve_record,
        sample_ids,
        write_records,
    )

    _require_dir(run_dir)
    if not (run_dir / "ledger.db").is_file():
        raise _fail(f"{run_dir}: no ledger.db", 4)

    def work() -> None:
        client: HubClient
        client = (
            RecordedHubClient(offline_fixtures)
            if offline_fixtures is not None
            else HfApiHubClient(token=os.environ.get("HF_TOKEN"))
        )
        ids = list(repo_ids or [])
        if random is not None:
            list_file = from_list
            if list_file is None and offline_fixtures is not None:
                list_file = offline_fixtures / "models.txt"
            if list_file is None:
                raise _fail("--random needs --from-list FILE (or --offline-fixtures)", EXIT_USAGE)
            ids += sample_ids(read_model_list(list_file), random, seed)
        if not ids:
            raise _fail("give REPO_ID... or --random N", EXIT_USAGE)
        records = [resolve_record(i, client, cache_dir=cache_dir) for i in ids]
        registered = register_models(run_dir, records, keyring=load_keyring(keyring))
        _print_table(registered, run_dir)
        csv_path, json_path = write_records(registered, out if out is not None else run_dir)
        typer.echo(f"wrote {csv_path} and {json_path}")

    _guard(work)


def mount(app: typer.Typer, registry_app: typer.Typer) -> None:
    """Register ``plot``, ``report`` and ``export-hf`` on ``app``, ``import-hf`` on the registry."""
    app.command("plot")(plot_command)
    app.command("report")(report_command)
    app.command("export-hf")(export_hf_command)
    registry_app.command("import-hf")(import_hf_command)
