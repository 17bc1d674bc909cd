"""Reading a run's tables: Parquet, or the CSV copy a run may have written instead."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["read_table"]


def read_table(path: Path) -> pd.DataFrame:
    """``path`` (Parquet), or its ``.csv`` sibling when only that was written."""
    if path.is_file():
        return pd.read_parquet(path)
    csv = path.with_suffix(".csv")
    if csv.is_file():
        return pd.read_csv(csv)
    raise FileNotFoundError(f"{path}: missing (no {csv.name} either)")
