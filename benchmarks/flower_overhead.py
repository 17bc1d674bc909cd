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
(cold start ≤ 12 s, steady rounds ≤ 1.3×).

    .venv/bin/python benchmarks/flower_overhead.py [--clients 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from simulation.engine.runner import quiet_environment, run_scenario
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """CPU time of this process and every live process below it (the engine's)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    quiet_environment()
    logging.getLogger("flwr").setLevel(logging.ERROR)
    scenario = load_scenario(
        ROOT / "scenarios" / "quickstart.yaml",
        [
            f"clients.count={args.clients}",
            f"rounds={args.rounds}",
            "privacy.budget=null",
            "training.epochs=1",
        ],
    )
    import simulation.world.core  # noqa: F401  (the driver's own imports are not the engine's)

    results = {}
    for engine in ("inprocess", "flower"):
        walls: list[float] = []
        cpu: list[float] = []

        def on_round(rec: object, w: list[float] = walls, c: list[float] = cpu) -> None:
            w.append(time.perf_counter())
            if not c:
                c.append(cpu_seconds())

        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            cpu0 = cpu_seconds()
            start = time.perf_counter()
            outcome = run_scenario(
                scenario,
                Path(tmp) / engine,
                engine=engine,  # type: ignore[arg-type]
                on_round=on_round,
            )
            end = time.perf_counter()
        steady = [r.wall_seconds for r in outcome.result.rounds[2:]]
        results[engine] = {
            "cold": walls[0] - start,
            "cold_cpu": cpu[0] - cpu0,
            "steady": statistics.median(steady) if steady else float("nan"),
            "total": end - start,
            "head": outcome.result.head_hash,
        }
    ip, fl = results["inprocess"], results["flower"]
    print(
        f"workload: digits, {args.clients} clients, {args.rounds} rounds, MLP, DP-SGD "
        f"(σ=1.5), 1 local epoch"
    )
    print(f"{'':24s}{'in-process':>12s}{'flower':>12s}{'ratio':>9s}")
    for key, label in (
        ("cold", "cold start (round 1) s"),
        ("cold_cpu", "  CPU s to round 1"),
        ("steady", "steady round s"),
        ("total", "total s"),
    ):
        print(f"{label:24s}{ip[key]:12.2f}{fl[key]:12.2f}{fl[key] / ip[key]:8.2f}x")
    print(f"same ledger head on both paths: {ip['head'] == fl['head']}")
    print(
        f"targets: cold start {fl['cold']:.2f} s <= 12 s: {fl['cold'] <= 12.0}; "
        f"steady {fl['steady'] / ip['steady']:.2f}x <= 1.3x: {fl['steady'] <= 1.3 * ip['steady']}"
    )
    print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
