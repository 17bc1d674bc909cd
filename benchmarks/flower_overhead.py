"""The Flower path versus a plain in-process loop, on one DP workload, in one run.

Both engines run the same ``World`` (same tasks, same seeds; the ledger heads
must match): only the transport differs. The Flower path is the product one: a
private ``flower-superlink --simulation`` with its own Ray head, the run
submitted through the Control API. Prints cold start (from the call to the end
of round 1: for Flower, the Ray head, the SuperLink, the simulation runtime and
the first ClientApp imports) and the CPU seconds every process of the run
spent until then (what a busy machine stretches the wall time by), steady-state
seconds per round (median of rounds
2..R as the world timed them), totals, and the ratios against the targets
(cold start ≤ 12 s, steady rounds ≤ 1.3×). The CPU seconds to round 1 are also
split by process (the driver, the ServerApp's ``flwr-simulation``, the ClientApp
actors, the SuperLink, its SuperExec, and Ray's head and helpers). ``--ref REF``
runs the Flower engine of git ``REF`` too, between the two, for a before/after
measured on the same load.

    .venv/bin/python benchmarks/flower_overhead.py [--clients 50] [--rounds 5] [--ref REF]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _proc  # benchmarks/_proc.py, beside this script

from simulation.engine.runner import quiet_environment, run_scenario
from simulation.fl.training import DataSpec
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[1]


KINDS = (
    ("flwr-simulation", "flwr-simulation (ServerApp)"),
    ("ClientAppActor", "ClientApp actors"),
    ("flower-superlink", "flower-superlink"),
    ("flower-superexec", "flower-superexec"),
)


def process_cpu() -> list[tuple[str, float]]:
    """``(kind, CPU seconds)`` of this process and every live process below it."""
    out = []
    for pid in _proc.tree(os.getpid()):
        seconds, cmd = _proc.cpu_seconds(pid), _proc.cmdline(pid)
        if seconds is None:
            continue
        kind = "driver" if pid == os.getpid() else "Ray head and helpers, watchdogs"
        kind = next((label for key, label in KINDS if key in cmd), kind)
        out.append((kind, seconds))
    return out


def measure(engine: str, clients: int, rounds: int) -> dict[str, Any]:
    """One run of ``engine`` on the workload: cold start, CPU to round 1, steady, total."""
    scenario = load_scenario(
        ROOT / "scenarios" / "quickstart.yaml",
        [
            f"clients.count={clients}",
            f"rounds={rounds}",
            "privacy.budget=null",
            "training.epochs=1",
        ],
    )
    DataSpec.of(scenario).build()  # the data, like the imports, is the driver's, not the engine's
    walls: list[float] = []
    at_round_1: list[list[tuple[str, float]]] = []

    def on_round(rec: object) -> None:
        walls.append(time.perf_counter())
        if not at_round_1:
            at_round_1.append(process_cpu())

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        cpu0 = sum(c for _, c in process_cpu())
        start = time.perf_counter()
        outcome = run_scenario(scenario, Path(tmp) / engine, engine=engine, on_round=on_round)  # type: ignore[arg-type]
        end = time.perf_counter()
    steady = [r.wall_seconds for r in outcome.result.rounds[2:]]
    per_kind: dict[str, float] = {}
    for kind, c in at_round_1[0]:
        per_kind[kind] = per_kind.get(kind, 0.0) + c
    per_kind["driver"] -= cpu0  # no child lives before the run
    actors = sum(1 for k, _ in at_round_1[0] if k == "ClientApp actors")
    return {
        "cold": walls[0] - start,
        "cold_cpu": sum(c for _, c in at_round_1[0]) - cpu0,
        "steady": statistics.median(steady) if steady else float("nan"),
        "total": end - start,
        "head": outcome.result.head_hash,
        "per_kind": per_kind,
        "actors": actors,
    }


def at_ref(ref: str, clients: int, rounds: int) -> dict[str, Any]:
    """``measure("flower")`` on the code of git ``ref`` (exported to a temporary folder),
    in a child process, so the two versions run side by side on the same load."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tree:
        _proc.export_ref(ROOT, ref, Path(tree))
        env = {**os.environ, "PYTHONPATH": tree}
        argv = [sys.executable, __file__, "--json", f"--clients={clients}", f"--rounds={rounds}"]
        proc = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=True)
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ref", help="also run the Flower engine of this git ref, side by side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # --ref's child
    args = parser.parse_args()
    quiet_environment()
    logging.getLogger("flwr").setLevel(logging.ERROR)
    # The driver's own imports are not the engine's.
    import simulation.results.write
    import simulation.world.core  # noqa: F401

    if args.json:
        print(json.dumps(measure("flower", args.clients, args.rounds)))
        return
    columns = {"in-process": measure("inprocess", args.clients, args.rounds)}
    if args.ref:
        columns[f"flower@{args.ref}"] = at_ref(args.ref, args.clients, args.rounds)
    columns["flower"] = measure("flower", args.clients, args.rounds)
    ip, fl = columns["in-process"], columns["flower"]
    print(
        f"workload: digits, {args.clients} clients, {args.rounds} rounds, MLP, DP-SGD "
        f"(σ=1.5), 1 local epoch; ratios against in-process"
    )
    print(f"{'':30s}" + "".join(f"{name:>16s}" for name in columns))
    for key, label in (
        ("cold", "cold start (round 1) s"),
        ("cold_cpu", "  CPU s to round 1"),
        ("steady", "steady round s"),
        ("total", "total s"),
    ):
        cells = "".join(
            f"{c[key]:9.2f} {c[key] / ip[key]:5.2f}x" if name != "in-process" else f"{c[key]:16.2f}"
            for name, c in columns.items()
        )
        print(f"{label:30s}{cells}")
    kinds = sorted({k for c in columns.values() for k in c["per_kind"]})
    print("CPU s to round 1 by process (live at round 1):")
    for kind in kinds:
        cells = "".join(f"{c['per_kind'].get(kind, 0.0):16.2f}" for c in columns.values())
        print(f"  {kind:28s}{cells}")
    print(
        f"  {'ClientApp actors (count)':28s}"
        + "".join(f"{c['actors']:16d}" for c in columns.values())
    )
    heads = {name: c["head"] == ip["head"] for name, c in columns.items()}
    print(f"same ledger head as in-process: {heads}")
    print(
        f"targets: cold start {fl['cold']:.2f} s <= 12 s: {fl['cold'] <= 12.0}; "
        f"steady {fl['steady'] / ip['steady']:.2f}x <= 1.3x: {fl['steady'] <= 1.3 * ip['steady']}"
    )
    print(f"load average after measuring: {os.getloadavg()} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
