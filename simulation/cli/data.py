"""``fedmarket data``: the Hub datasets on this machine, and fetching one when asked.

``fetch`` is the only FedMarket command that downloads data: validation and
runs read the local Hugging Face cache (or ``dataset.path``) and fail fast,
naming this command, when the data is not there.

====  =====================================================
0     success
2     not a Hub dataset
3     the download failed (network, offline mode, unknown revision)
====  =====================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Hub datasets (mnist, fashion_mnist, cifar10, femnist, shakespeare): list, fetch.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

CacheOption = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Hugging Face Hub cache (default: $HF_HUB_CACHE / HF_HOME)."),
]


@data_app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. cifar10.")],
    revision: Annotated[
        str | None, typer.Option("--revision", help="Hub revision (branch, tag or commit).")
    ] = None,
    cache_dir: CacheOption = None,
) -> None:
    """Download a dataset's Hub repo into the local HF cache, so scenarios can use it."""
    from simulation.fl.sources import DatasetNotAvailable, fetch

    try:
        source = fetch(name, revision=revision, cache_dir=cache_dir)
    except DatasetNotAvailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # network, offline mode, bad revision: one line, no traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: could not download {name}: {first}", err=True)
        raise typer.Exit(3) from None
    typer.echo(f"{name}: {source.describe()} ({source.location})")


@data_app.command("list")
def list_command(cache_dir: CacheOption = None) -> None:
    """Each Hub dataset, its repo, and the cached snapshot a run would load."""
    from simulation.config.catalog import HUB_DATASETS, facts
    from simulation.config.schema import HubDatasetConfig
    from simulation.fl.sources import DatasetNotAvailable, locate

    for name in HUB_DATASETS:
        test = None if facts(name).official_test else 0.1
        try:
            where = locate(HubDatasetConfig(name=name, test_fraction=test), cache_dir).describe()
        except DatasetNotAvailable:
            where = f"not cached (fedmarket data fetch {name})"
        typer.echo(f"{name:<14} {facts(name).hub_id:<32} {where}")
