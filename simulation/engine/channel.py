"""Files between ``fedmarket run`` and the ServerApp it submitted to a SuperLink.

The ServerApp runs in a process the SuperLink starts (``flwr-simulation``), so
the scenario goes in, and rounds, logs and the result come back, as files in
one directory of the run's temporary folder:

    scenario.json     the resolved scenario (written by the driver)
    rounds.jsonl      one RoundRecord per line, as each round ends
    log.jsonl         the ServerApp's ``fedmarket`` log records
    stop              present once the driver asks for a clean stop
    result.json       the WorldResult (weights aside), written last, atomically
    weights.safetensors
    failure.json      why the ServerApp did not finish: {"kind", "message"}

JSON keeps ints and floats apart and round-trips every float exactly, so the
result is the one the world computed, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from simulation.errors import RunError, RunInterrupted

if TYPE_CHECKING:
    from simulation.world.records import RoundRecord, WorldResult

FailureKind = Literal["interrupted", "error"]


class RunChannel:
    """One run's exchange directory; both sides open it by path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def scenario(self) -> Path:
        return self.path / "scenario.json"

    # ---------------------------------------------------------------- driver side

    def create(self, scenario_json: str) -> None:
        """Lay out the directory with the scenario the ServerApp will run."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.scenario.write_text(scenario_json, encoding="utf-8")

    def request_stop(self) -> None:
        """Ask the ServerApp to stop after the client it is waiting for."""
        (self.path / "stop").touch()

    def read_lines(self, name: str, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Complete JSON lines of ``name`` after byte ``offset``, and the new offset."""
        try:
            with open(self.path / name, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        lines = [json.loads(line) for line in data[:end].splitlines() if line]
        return lines, offset + end

    def rounds(self, offset: int) -> tuple[list[RoundRecord], int]:
        """Rounds finished since ``offset``."""
        from simulation.world.records import RoundRecord

        lines, offset = self.read_lines("rounds.jsonl", offset)
        return [RoundRecord(**d) for d in lines], offset

    def outcome(self) -> WorldResult:
        """The ServerApp's result, or the error it stopped with."""
        failure = self.path / "failure.json"
        if failure.exists():
            data = json.loads(failure.read_text(encoding="utf-8"))
            cls = RunInterrupted if data["kind"] == "interrupted" else RunError
            raise cls(str(data["message"]))
        result = self.path / "result.json"
        if not result.exists():
            raise RunError("the ServerApp finished without a result (see the log above)")
        from safetensors.numpy import load_file

        from simulation.world.records import RoundRecord, WorldResult

        data = json.loads(result.read_text(encoding="utf-8"))
        loaded = load_file(str(self.path / "weights.safetensors"))
        weights = {k: loaded[k] for k in data.pop("weight_order")}
        data["rounds"] = [RoundRecord(**r) for r in data["rounds"]]
        data["client_rows"] = [tuple(r) for r in data["client_rows"]]
        return WorldResult(final_weights=weights, **data)

    # ------------------------------------------------------------ ServerApp side

    def stop_requested(self) -> bool:
        return (self.path / "stop").exists()

    def write_round(self, record: RoundRecord) -> None:
        _append_line(self.path / "rounds.jsonl", dataclasses.asdict(record))

    def write_result(self, result: WorldResult) -> None:
        from safetensors.numpy import save_file

        weights = {k: np.ascontiguousarray(v) for k, v in result.final_weights.items()}
        save_file(weights, str(self.path / "weights.safetensors"))
        data = dataclasses.asdict(dataclasses.replace(result, final_weights={}))
        del data["final_weights"]
        data["weight_order"] = list(weights)
        _atomic_write(self.path / "result.json", json.dumps(data))

    def write_failure(self, kind: FailureKind, message: str) -> None:
        _atomic_write(self.path / "failure.json", json.dumps({"kind": kind, "message": message}))

    def log_handler(self) -> logging.Handler:
        """A handler that sends log records to the driver (``log.jsonl``)."""
        return _JsonLinesHandler(self.path / "log.jsonl")


class _JsonLinesHandler(logging.Handler):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            _append_line(
                self.path, {"level": record.levelno, "name": record.name, "message": message}
            )
        except Exception:
            self.handleError(record)


def _append_line(path: Path, data: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(data) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
