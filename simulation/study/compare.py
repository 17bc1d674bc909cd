"""Running a study (scenario variants x seeds) and tabulating what each design did.

A study directory holds::

    STUDY_DIR/
      study.json                the resolved sweep: designs, seeds, every run's overrides
      runs/<run_id>/            one ordinary run directory per variant and seed
      study.parquet, study.csv  one tidy row per run (see :data:`METRICS`)
      summary.parquet, .csv     per design: mean, 95% interval and per-seed values of
                                each metric, and its paired difference to the first
                                design (see :func:`summarize`)

Runs are isolated (own directory, own ledger, own Ray session in its own
spawned process) so that one crashing run cannot take the study down, and
so that a killed study resumes: a run whose ``manifest.json`` is complete is
reused, a partial one is re-run. Metrics are computed from the run files only
(:func:`run_metrics`), never from live objects, so a study table can be
rebuilt from any past runs.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from simulation.results.groups import run_group_outcomes, study_columns
from simulation.results.metrics import METRICS, gini, run_metrics
from simulation.scenario.sweep import Engine, Study, Variant
from simulation.study.stats import (
    IntervalMethod,
    PairedDifference,
    PairedTest,
    estimate,
    paired_difference,
)

if TYPE_CHECKING:
    from marketplace.keyring import Keyring

NAN = float("nan")
NAN_DIFF = PairedDifference(0, NAN, NAN, NAN, NAN, "wilcoxon")

__all__ = [
    "METRICS",
    "RunExecutor",
    "RunStatus",
    "RunTask",
    "StudyOutcome",
    "default_workers",
    "gini",
    "run_metrics",
    "run_study",
    "summarize",
]

log = logging.getLogger("fedmarket.compare")


# ----------------------------------------------------------------------- summary


def _by_seed(ok: pd.DataFrame, metric: str) -> dict[int, float]:
    if "seed" not in ok.columns:
        return {}
    return {int(seed): float(v) for seed, v in zip(ok["seed"], ok[metric], strict=True)}


def _points(values: Sequence[float]) -> str:
    """Per-seed values as ``a;b;c`` (repr, so the CSV keeps every digit)."""
    return ";".join(repr(float(v)) for v in values)


def summarize(
    table: pd.DataFrame,
    design_columns: Sequence[str],
    *,
    interval: IntervalMethod = "bootstrap",
    test: PairedTest = "wilcoxon",
    seed: int = 0,
) -> pd.DataFrame:
    """Per design: run counts and, per metric over its ok runs (see :mod:`simulation.study.stats`):

    * ``<metric>_mean``, ``_n`` (seeds where it is defined), ``_points`` (their values);
    * ``_lo`` / ``_hi``: the 95% interval (percentile bootstrap, or t with
      ``interval="t"``) clipped to the metric's range, NaN with fewer than
      :data:`~simulation.study.stats.MIN_SEEDS` seeds; ``_ci95`` is its half-width
      ``(hi - lo) / 2``, kept for older readers;
    * paired against the first design (``paired_reference``) on shared seeds:
      ``_diff`` (mean of design - reference), ``_diff_lo`` / ``_diff_hi``,
      ``_diff_n`` and ``_p`` (two-sided, ``paired_test``); NaN on the reference row.
    """
    rows: list[dict[str, Any]] = []
    groups = [(str(d), g[g["status"] == "ok"], g) for d, g in table.groupby("design", sort=False)]
    reference = groups[0] if groups else None
    for design, ok, group in groups:
        row: dict[str, Any] = {"design": design}
        for col in design_columns:
            row[col] = group[col].iloc[0]
        row["runs"] = len(group)
        row["failed"] = int((group["status"] != "ok").sum())
        row["interval"] = interval
        row["paired_reference"] = reference[0] if reference else ""
        row["paired_test"] = test
        # The study metrics, then the per-group outcomes (``<set>:<name>:<column>``).
        grouped = [c for c in table.columns if c.count(":") == 2]
        for metric in (*METRICS, *grouped):
            if metric not in ok.columns:  # a table written before the metric existed
                continue
            est = estimate(
                ok[metric].astype(float).tolist(), metric, method=interval, key=(design,), seed=seed
            )
            row[f"{metric}_mean"] = est.mean
            row[f"{metric}_ci95"] = (est.hi - est.lo) / 2.0
            row[f"{metric}_lo"], row[f"{metric}_hi"] = est.lo, est.hi
            row[f"{metric}_n"] = est.n
            row[f"{metric}_points"] = _points(est.points)
            diff = NAN_DIFF
            if reference is not None and design != reference[0]:
                diff = paired_difference(
                    _by_seed(ok, metric),
                    _by_seed(reference[1], metric),
                    metric,
                    test=test,
                    method=interval,
                    key=(design, reference[0]),
                    seed=seed,
                )
            row[f"{metric}_diff"], row[f"{metric}_diff_n"] = diff.mean, diff.n
            row[f"{metric}_diff_lo"], row[f"{metric}_diff_hi"] = diff.lo, diff.hi
            row[f"{metric}_p"] = diff.p_value
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------- running


@dataclass(frozen=True)
class RunTask:
    """What a worker process needs to run one variant (plain, picklable data)."""

    run_id: str
    base: str
    overrides: tuple[str, ...]
    seed: int
    out_dir: str
    engine: Engine


@dataclass(frozen=True)
class RunStatus:
    """How one run ended: ``ok`` or ``failed`` (with the error), and its wall time."""

    run_id: str
    status: str
    error: str
    wall_seconds: float


def execute_run(task: RunTask, keyring: Keyring | None = None) -> RunStatus:
    """Run one variant, signing with ``keyring`` (default: the user's keyring); never
    raises, so one failure cannot stop the study.

    Runs in a spawned worker process, inline with one inprocess worker, or in a
    Ray task (:mod:`simulation.study.ray_sweep`).
    """
    from simulation.engine.runner import quiet_environment, run_scenario
    from simulation.scenario.load import load_scenario

    quiet_environment()
    started = time.perf_counter()
    try:
        scenario = load_scenario(task.base, task.overrides, task.seed)
        run_scenario(scenario, task.out_dir, engine=task.engine, force=True, keyring=keyring)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
        return RunStatus(task.run_id, "failed", message[:500], time.perf_counter() - started)
    return RunStatus(task.run_id, "ok", "", time.perf_counter() - started)


RunExecutor = Callable[[Sequence[RunTask], Callable[[RunStatus], None]], None]
"""Runs the pending tasks somewhere else, calling the callback once per finished run
(e.g. :class:`simulation.study.ray_sweep.RayExecutor`)."""


class BelowWarning(logging.Filter):
    """Drops INFO/DEBUG records (Flower resets its logger's level, so a level is not enough)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def quiet_flower() -> None:
    """Silence Flower's per-round chatter, which would interleave across parallel runs."""
    flwr = logging.getLogger("flwr")
    if not any(isinstance(f, BelowWarning) for f in flwr.filters):
        flwr.addFilter(BelowWarning())


def _worker_init() -> None:
    """Keep spawned workers quiet: their logs would interleave on the console."""
    logging.getLogger("fedmarket").setLevel(logging.WARNING)
    quiet_flower()


def default_workers(engine: Engine) -> int:
    """Half the CPUs for Flower runs (each Ray session uses CPUs itself), all for inprocess."""
    cpus = os.cpu_count() or 1
    return max(1, cpus // 2) if engine == "flower" else cpus


def _complete(run_dir: Path, scenario_hash: str) -> bool:
    """A run is reusable when its manifest parses, holds the ``final`` block and ran
    the same resolved scenario (an edited base file must not resume stale results)."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (isinstance(manifest, dict) and isinstance(manifest.get("final"), dict)):
        return False
    if scenario_hash and manifest.get("scenario_hash") != scenario_hash:
        log.warning("run %s: ran a different scenario (base edited?); re-running", run_dir.name)
        return False
    return True


@dataclass(frozen=True)
class StudyOutcome:
    """A finished study: its tables and how many runs were run, reused and failed."""

    study_dir: Path
    table: pd.DataFrame
    summary: pd.DataFrame
    ran: int
    reused: int
    failed: int


def _column(values: list[Any]) -> list[Any]:
    """Keep a parameter column typed when it is homogeneous scalars; else JSON text."""
    kinds = {type(v) for v in values}
    if len(kinds) == 1 and kinds <= {bool, int, float, str}:
        return values
    if kinds <= {int, float}:
        return [float(v) for v in values]
    return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values]


def _row(variant: Variant, status: RunStatus, reused: bool, run_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"run_id": variant.run_id, "design": variant.design}
    row.update(dict(variant.params))
    row["seed"] = variant.seed
    row["status"] = status.status
    row["reused"] = reused
    row["error"] = status.error
    values = dict.fromkeys(METRICS, NAN)
    if status.status == "ok":
        try:
            values = run_metrics(run_dir) | study_columns(run_group_outcomes(run_dir))
        except (OSError, ValueError, KeyError) as exc:
            row["status"], row["error"] = "failed", f"unreadable results: {exc}"
    if math.isnan(values["wall_seconds"]):
        values["wall_seconds"] = status.wall_seconds
    row.update(values)
    return row


def run_study(
    study: Study,
    study_dir: Path | str,
    *,
    workers: int | None = None,
    force: bool = False,
    on_done: Callable[[RunStatus], None] | None = None,
    interval: IntervalMethod = "bootstrap",
    test: PairedTest = "wilcoxon",
    executor: RunExecutor | None = None,
) -> StudyOutcome:
    """Run every variant of ``study`` under ``study_dir`` and write the study tables.

    Complete runs are reused unless ``force``; failed runs are recorded with
    their error and do not stop the others. ``workers`` defaults to
    :func:`default_workers`; one worker with the inprocess engine runs inline
    (no process start-up, handy for tests), anything else uses a
    ``ProcessPoolExecutor`` with the *spawn* start method because Ray is not
    fork-safe, and Flower runs get a fresh process each. ``interval`` and ``test``
    choose the summary's statistics (:func:`summarize`). An ``executor`` (a Ray
    cluster) runs the pending runs instead of local workers; resuming and the
    tables stay here, so they are the same wherever the runs ran.
    """
    out = Path(study_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(
        json.dumps(study.resolved(), indent=2, sort_keys=True, default=str) + "\n",
        encoding="utf-8",
    )
    n_workers = max(1, workers if workers is not None else default_workers(study.engine))
    statuses: dict[str, RunStatus] = {}
    reused: set[str] = set()
    todo: list[RunTask] = []
    for v in study.variants:
        run_dir = out / "runs" / v.run_id
        if not force and _complete(run_dir, v.scenario_hash):
            log.info("run %s: complete, skipped", v.run_id)
            statuses[v.run_id] = RunStatus(v.run_id, "ok", "", NAN)
            reused.add(v.run_id)
            continue
        if run_dir.exists():
            log.info("run %s: partial or forced, re-running", v.run_id)
        todo.append(
            RunTask(v.run_id, str(study.base), v.overrides, v.seed, str(run_dir), study.engine)
        )
    log.info(
        "study %s: %d runs to do, %d reused, %d workers (%s)",
        study.name,
        len(todo),
        len(reused),
        n_workers,
        study.engine,
    )

    def finished(status: RunStatus) -> None:
        statuses[status.run_id] = status
        if status.status == "ok":
            log.info("run %s: ok (%.1f s)", status.run_id, status.wall_seconds)
        else:
            log.warning("run %s: failed: %s", status.run_id, status.error)
        if on_done is not None:
            on_done(status)

    if todo and executor is not None:
        executor(todo, finished)
    elif todo and n_workers == 1 and study.engine == "inprocess":
        for task in todo:
            finished(execute_run(task))
    elif todo:
        context = multiprocessing.get_context("spawn")
        per_child = 1 if study.engine == "flower" else None
        with ProcessPoolExecutor(
            max_workers=min(n_workers, len(todo)),
            mp_context=context,
            initializer=_worker_init,
            max_tasks_per_child=per_child,
        ) as pool:
            futures: dict[Future[RunStatus], RunTask] = {
                pool.submit(execute_run, task): task for task in todo
            }
            try:
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        finished(future.result())
                    except Exception as exc:
                        finished(RunStatus(task.run_id, "failed", f"worker died: {exc}", NAN))
            except BaseException:
                # Ctrl-C: start nothing new; finished runs are kept and the
                # study resumes from them next time.
                log.warning("study %s interrupted; pending runs cancelled", study.name)
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    rows = [
        _row(v, statuses[v.run_id], v.run_id in reused, out / "runs" / v.run_id)
        for v in study.variants
    ]
    table = pd.DataFrame(rows)
    for key in study.swept_keys:
        table[key] = _column(table[key].tolist())
    table.to_parquet(out / "study.parquet", index=False)
    table.to_csv(out / "study.csv", index=False)
    summary = summarize(table, study.swept_keys, interval=interval, test=test)
    summary.to_parquet(out / "summary.parquet", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    failed = int((table["status"] != "ok").sum())
    log.info(
        "study %s: %d ran, %d reused, %d failed; tables in %s",
        study.name,
        len(todo),
        len(reused),
        failed,
        out,
    )
    return StudyOutcome(out, table, summary, len(todo), len(reused), failed)
