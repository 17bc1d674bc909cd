"""Files between ``fedmarket run`` and the ServerApp it submitted to a SuperLink.

The ServerApp runs in a process the SuperLink starts (``flwr-simulation``), so
the scenario goes in, and rounds, logs and the result come back, as files in
one directory of the run's temporary folder:

    scenario.json     the resolved scenario (written by the driver)
    rounds.jsonl      one RoundRecord per line, as each round ends
    log.jsonl         the ServerApp's ``fedmarket`` log records
    keyring           a copy of the run's keyring (mode 0600), when it has no file
    stop              present once the driver asks for a clean stop
    result.pickle     the WorldResult, written last, atomically
    failure.json      why the ServerApp did not finish: {"kind", "message"}

The result is pickled: it is a tree of typed records (metric rows, ground truth,
market statistics, the federated data, version weights), and pickle round-trips
every one of them, floats and arrays bit for bit, with no second schema to keep
in step. Both ends are this user's processes and the directory is a private
``mkdtemp`` folder (mode 0700) deleted after the run, never the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simulation.errors import RunError, RunInterrupted

if TYPE_CHECKING:
    from marketplace.keyring import Keyring
    from simulation.world.records import RoundRecord, WorldResult

FailureKind = Literal["interrupted", "error"]
RESULT = "result.pickle"


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
        result = self.path / RESULT
        if not result.exists():
            raise RunError("the ServerApp finished without a result (see the log above)")
        outcome: WorldResult = pickle.loads(result.read_bytes())
        return outcome

    @property
    def keyring(self) -> Path:
        return self.path / "keyring"

    def hand_keyring(self, keyring: Keyring) -> Path:
        """The keyring file the ServerApp signs with: the user's own file, or a
        private copy in this directory for an in-memory keyring."""
        if keyring.path is not None:
            return keyring.path
        return keyring.save(self.keyring).path or self.keyring

    # ------------------------------------------------------------ ServerApp side

    def stop_requested(self) -> bool:
        return (self.path / "stop").exists()

    def write_round(self, record: RoundRecord) -> None:
        _append_line(self.path / "rounds.jsonl", dataclasses.asdict(record))

    def write_result(self, result: WorldResult) -> None:
        _atomic_write_bytes(self.path / RESULT, pickle.dumps(result, protocol=5))

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
    _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
