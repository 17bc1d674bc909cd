"""A study table with one more column derived from each run's own files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = ["with_run_column"]


def with_run_column(
    study_dir: Path | str, column: str, derive: Callable[[Path], float]
) -> pd.DataFrame:
    """``study.parquet``'s rows with ``column`` = ``derive(run_dir)`` for each run that
    finished (``status == "ok"``) and NaN for the others, whose files may be missing."""
    p = Path(study_dir)
    table = pd.read_parquet(p / "study.parquet")
    table[column] = [
        derive(p / "runs" / str(run)) if status == "ok" else float("nan")
        for run, status in zip(table["run_id"], table["status"], strict=True)
    ]
    return table
