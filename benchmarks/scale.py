"""Cross-device scale: start-up, seconds per round and memory from 100 to 100,000 clients.

Runs ``scenarios/cross_device.yaml`` at each population size with 100 clients per
round at every size (``clients.fraction = 100 / count``), each size in a fresh
child process (so start-up, the dataset cache and peak RSS are that size's own),
and prints, side by side:

* start-up s: from the call to ``run_scenario`` to the start of round 1 (the end of
  round 1 minus round 1's own wall time), i.e. the data, the world's parts and the
  ledger's genesis;
* s/round: the median wall time of rounds 2..R as the world timed them;
* driver peak RSS (the child's ``ru_maxrss``) and the peak total RSS of every
  process of the run (the child and all its descendants: a Flower run's SuperLink,
  Ray and its actors), sampled every 0.2 s from ``/proc``;
* the driver's CPU seconds to round 1 and per round (a shared machine stretches
  wall time; CPU time much less, so its growth and ratio are the load-fair check);

and the ratios against the targets: start-up(100k) − start-up(100) ≤ 30 s,
s/round ≤ 1.5× from the smallest to the largest size, total RSS ≤ 6 GB.

    .venv/bin/python benchmarks/scale.py [--sizes 100,1000,10000,100000]
        [--rounds 10] [--engine inprocess|flower] [--ref REF]

``--ref REF`` also runs git REF's code (exported to a temporary folder), each size
with REF's tree and then this tree's before the next size, so that both see the
same load; ``post s`` is the wall time after the last round (``write_results``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _proc  # benchmarks/_proc.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
PER_ROUND = 100
GB = 1024**3


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every live process below it."""
    return sum(_proc.rss(pid) for pid in _proc.tree(root))


def child(count: int, rounds: int, engine: str) -> None:
    """One size's run; prints one JSON line."""
    import resource

    from simulation.engine.runner import quiet_environment, run_scenario
    from simulation.scenario.load import load_scenario

    quiet_environment()
    import simulation

    tree = Path(simulation.__file__).resolve().parents[1]  # this tree's or --ref's
    scenario = load_scenario(
        tree / "scenarios" / "cross_device.yaml",
        [f"clients.count={count}", f"clients.fraction={PER_ROUND / count!r}", f"rounds={rounds}"],
    )
    import simulation.world.core  # imports are not start-up

    ends: list[float] = []
    cpus: list[float] = []

    def on_round(rec: object) -> None:
        ends.append(time.perf_counter())
        cpus.append(time.process_time())

    with tempfile.TemporaryDirectory(dir="/tmp", prefix="fm-scale-") as tmp:
        start, cpu0 = time.perf_counter(), time.process_time()
        out = run_scenario(
            scenario,
            Path(tmp) / "run",
            engine=engine,  # type: ignore[arg-type]
            on_round=on_round,
        )
        # After the last round: the baseline (none here) and ``write_results``, in
        # ``run_scenario``'s own path.
        post, post_cpu = time.perf_counter() - ends[-1], time.process_time() - cpus[-1]
    rounds_ = out.result.rounds[1:]
    first = ends[0] - start
    cpu_round = statistics.median(b - a for a, b in itertools.pairwise(cpus))
    print(
        json.dumps(
            {
                "startup": first - rounds_[0].wall_seconds,
                # The driver's CPU seconds (less stretched by a busy machine than wall
                # time): to the end of round 1 less one median round, and per round.
                "startup_cpu": cpus[0] - cpu0 - cpu_round,
                "cpu_round": cpu_round,
                "post": post,
                "post_cpu": post_cpu,
                "per_round": statistics.median(r.wall_seconds for r in rounds_[1:]),
                "sampled": rounds_[0].sampled,
                "driver_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "accuracy": rounds_[-1].test_accuracy,
            }
        )
    )


def measure(count: int, rounds: int, engine: str, tree: Path) -> dict[str, float]:
    """One size's run in a fresh child importing ``simulation`` from ``tree``."""
    cmd = [sys.executable, __file__, "--child", str(count), "--rounds", str(rounds)]
    cmd += ["--engine", engine]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    assert proc.stdout is not None
    lines = proc.stdout.read().decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{count} clients: the run failed (exit {proc.returncode})")
    result: dict[str, float] = json.loads(lines[-1])
    result["total_rss"] = max(peak, result["driver_rss"])
    return result


def report(label: str, res: dict[int, dict[str, float]]) -> None:
    """The targets and the driver-CPU ratios of one tree's sizes."""
    sizes = list(res)
    lo, hi = res[sizes[0]], res[sizes[-1]]
    grow = hi["startup"] - lo["startup"]
    ratio = hi["per_round"] / lo["per_round"]
    peak = max(r["total_rss"] for r in res.values()) / GB
    print(
        f"{label}targets: start-up({sizes[-1]}) - start-up({sizes[0]}) = {grow:.1f} s <= 30 s: "
        f"{grow <= 30}; s/round {ratio:.2f}x <= 1.5x: {ratio <= 1.5}; "
        f"total RSS {peak:.2f} GB <= 6 GB: {peak <= 6}"
    )
    cpu_grow = hi["startup_cpu"] - lo["startup_cpu"]
    print(
        f"{label}driver CPU: start-up grows {cpu_grow:.1f} s, CPU s/round "
        f"{hi['cpu_round'] / lo['cpu_round']:.2f}x (the same ratios, less stretched by load); "
        f"after the rounds {hi['post']:.2f} s ({hi['post_cpu']:.2f} CPU-s) at {sizes[-1]} "
        f"against {lo['post']:.2f} s ({lo['post_cpu']:.2f} CPU-s) at {sizes[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--engine", choices=("inprocess", "flower"), default="inprocess")
    parser.add_argument("--ref", help="also run git REF's code, each size beside this tree's")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.rounds, args.engine)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"cross_device.yaml, {PER_ROUND} clients per round, {args.rounds} rounds, "
        f"engine {args.engine}; post s: after the last round (write_results)"
    )
    print(f"{'tree':>8s}{'clients':>9s}{'start-up s':>12s}{'s/round':>10s}{'post s':>9s}"
          f"{'driver GB':>11s}{'total GB':>10s}{'accuracy':>10s}{'start CPU s':>13s}"
          f"{'CPU s/round':>13s}{'post CPU s':>12s}")  # fmt: skip
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="fm-scale-ref-") as tmp:
        trees = {"this": ROOT}
        if args.ref:
            trees[args.ref[:8]] = _proc.export_ref(ROOT, args.ref, Path(tmp))
        res: dict[str, dict[int, dict[str, float]]] = {label: {} for label in trees}
        for n in sizes:  # each size with every tree before the next: the same load
            for label, tree in trees.items():
                r = res[label][n] = measure(n, args.rounds, args.engine, tree)
                print(
                    f"{label:>8s}{n:9d}{r['startup']:12.2f}{r['per_round']:10.3f}"
                    f"{r['post']:9.2f}{r['driver_rss'] / GB:11.2f}"
                    f"{r['total_rss'] / GB:10.2f}{r['accuracy']:10.3f}"
                    f"{r['startup_cpu']:13.2f}{r['cpu_round']:13.3f}{r['post_cpu']:12.2f}",
                    flush=True,
                )
    for label, per_size in res.items():
        report(f"[{label}] ", per_size)
    print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
