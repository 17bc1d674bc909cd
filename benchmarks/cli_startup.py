"""CLI start-up: ``fedmarket --help`` and ``fedmarket validate`` against bare Python,
measured side by side in one run (median wall time of repeated runs, interleaved so
that machine load hits every command alike).

Targets (``[architecture]``): ``--help`` ≤ 0.3 s and ``validate`` ≤ 1.0 s above
``python -c pass``; neither may import torch, ray, ``datasets`` or
``flwr_datasets`` (printed from ``-X importtime``).

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLI = str(Path(PY).with_name("fedmarket"))
COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    "fedmarket --help": [CLI, "--help"],
    "fedmarket validate quickstart": [CLI, "validate", "scenarios/quickstart.yaml"],
}
HEAVY = ("torch", "ray", "datasets", "flwr_datasets", "opacus", "matplotlib")
TARGETS = {"fedmarket --help": 0.3, "fedmarket validate quickstart": 1.0}


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def heavy_imports(cmd: list[str]) -> list[str]:
    """Top-level heavy packages a command imports (from ``python -X importtime``)."""
    args = [PY, "-X", "importtime", "-m", "simulation.cli.main", *cmd[1:]]
    err = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stderr
    names = {line.split("|")[-1].strip() for line in err.splitlines() if "|" in line}
    return sorted(n for n in names if n in HEAVY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for cmd in COMMANDS.values():  # warm the OS file cache once
        _time(cmd)
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd))
    bare = statistics.median(times["python -c pass"])
    print(f"{'command':<32}{'median s':>10}{'above bare':>12}{'target':>9}  heavy imports")
    for name, cmd in COMMANDS.items():
        med = statistics.median(times[name])
        target = TARGETS.get(name)
        heavy = ", ".join(heavy_imports(cmd)) if name != "python -c pass" else ""
        verdict = "" if target is None else ("ok" if med - bare <= target else "MISSED")
        tgt = f"≤{target:.1f}" if target is not None else ""
        print(f"{name:<32}{med:>10.3f}{med - bare:>12.3f}{tgt:>7} {verdict:<3} {heavy or '-'}")


if __name__ == "__main__":
    main()
