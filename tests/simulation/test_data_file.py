"""The run's data file: the federated data the driver built, read back bit for bit by
the ServerApp and the clients, and refused for another scenario's spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulation.engine.flower import ray_cpus
from simulation.fl import training
from simulation.fl.data_file import load_federated, save_federated, shareable
from simulation.fl.federated import FederatedData, Split
from simulation.fl.training import DataSpec
from simulation.scenario.load import load_scenario

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def _same(a: FederatedData, b: FederatedData) -> None:
    for x, y in [
        (a.x_train, b.x_train),
        (a.y_train, b.y_train),
        (a.x_val, b.x_val),
        (a.y_val, b.y_val),
        (a.x_test, b.x_test),
        (a.y_test, b.y_test),
        *zip(a.partitions, b.partitions, strict=True),
    ]:
        assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    assert (a.num_classes, a.input_shape, a.class_names, a.source, a.client_ids) == (
        b.num_classes,
        b.input_shape,
        b.class_names,
        b.source,
        b.client_ids,
    )


def test_the_file_holds_the_built_data_bit_for_bit_and_build_returns_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DataSpec.of(load_scenario(QUICKSTART, ["clients.count=7"]))
    built = spec.build()
    path = save_federated(built, spec.model_dump_json(), tmp_path / "data.npz")
    _same(load_federated(path, spec.model_dump_json()), built)

    monkeypatch.setattr(training, "_PRELOADED", {})
    spec.preload(path)
    preloaded = spec.build()
    assert preloaded is not built  # read from the file, not the per-process memo
    _same(preloaded, built)


def test_another_specs_file_is_refused(tmp_path: Path) -> None:
    spec = DataSpec.of(load_scenario(QUICKSTART, ["clients.count=3"]))
    path = save_federated(spec.build(), spec.model_dump_json(), tmp_path / "data.npz")
    other = spec.model_copy(update={"seed": spec.seed + 1})
    with pytest.raises(ValueError, match="holds the data of"):
        load_federated(path, other.model_dump_json())


class _Decoded:
    """Rows decoded on demand, as a Hub dataset's are."""

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        return np.zeros((len(index), 2))

    def __len__(self) -> int:
        return 4


def test_rows_decoded_on_demand_are_not_written(tmp_path: Path) -> None:
    y = np.zeros(4, dtype=np.int64)
    split = Split(np.zeros((4, 2)), y)
    data = FederatedData(_Decoded(), y, (np.arange(4),), split, split, 2, (2,))
    assert not shareable(data)
    with pytest.raises(ValueError, match="decoded on demand"):
        save_federated(data, "{}", tmp_path / "data.npz")


@pytest.mark.parametrize(
    ("overrides", "cpus"),
    [
        (["clients.count=3", "resources.num_cpus=16"], 3),  # one actor per client at most
        (["clients.count=3", "resources.num_cpus=16", "resources.client_cpus=2"], 6),
        (["clients.count=50", "resources.num_cpus=16"], 16),
        (["clients.count=50", "resources.num_cpus=2"], 2),
    ],
)
def test_ray_gets_no_more_cpus_than_the_clients_can_use(overrides: list[str], cpus: int) -> None:
    assert ray_cpus(load_scenario(QUICKSTART, overrides)) == cpus


class _Process:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_close(self) -> None:
        self.calls.append("begin_close")

    def close(self) -> None:
        self.calls.append("close")


class _Launcher:
    """Starts one (fake) process; the run's data then turns out unavailable."""

    prefix = "fm-test-"

    def __init__(self) -> None:
        self.process = _Process()
        self.workdir: Path | None = None

    def start(self, run: Any) -> Any:
        from types import SimpleNamespace

        from simulation.engine.run_dir import Started

        self.workdir = run.workdir
        run.processes.append(self.process)
        link = SimpleNamespace(client=SimpleNamespace(close=lambda: None))
        return Started(link, link, None)  # type: ignore[arg-type]

    def keep_logs(self, workdir: Path, out_dir: Path) -> Path:
        raise AssertionError("a data error is not an engine failure: no engine logs")


def test_a_dataset_that_cannot_be_had_is_one_line_after_the_processes_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulation.engine import run_dir
    from simulation.engine.stop import StopRequest
    from simulation.errors import RunError
    from simulation.fl.sources import DataError
    from tests.keyring import KEYRING

    def unavailable(self: DataSpec) -> None:
        raise DataError("partition: 3 shards of 2 rows cannot be cut from 5 rows")

    monkeypatch.setattr(DataSpec, "build", unavailable)
    launcher = _Launcher()
    with pytest.raises(RunError) as exc:
        run_dir.run_on_superlink(
            load_scenario(QUICKSTART),
            tmp_path / "out",
            launcher,
            on_round=None,
            stop=StopRequest(),
            keyring=KEYRING,
        )
    assert str(exc.value) == "dataset: partition: 3 shards of 2 rows cannot be cut from 5 rows"
    assert launcher.process.calls == ["begin_close", "close"]
    assert launcher.workdir is not None and not launcher.workdir.exists()
