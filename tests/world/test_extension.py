"""Adding a defence, an incentive mechanism and an attack touches one registry each:
all three are registered here, from tests/ only, and a 2-round scenario names them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import Field

from agents import TRAINING_BEHAVIOURS, TrainingBehaviour
from agents._params import BaseParams
from marketplace import Market
from marketplace.incentives import MECHANISMS, IncentiveMechanism, RoundOutcome
from simulation.engine.runner import run_scenario
from simulation.fl.aggregation import AGGREGATORS, AggregatorSpec, StrategyParams
from simulation.fl.weights import arrays_sha256
from simulation.rng import SeedTree
from simulation.scenario.load import validate_data
from simulation.world.server_model import ServerModel

CALLS: list[int] = []


class ClippedMeanParams(StrategyParams):
    clip: float = Field(gt=0.0, description="largest L2 norm of an update kept as is")


class ClippedMean:
    """A defence: the unweighted mean of updates clipped to ``clip`` in L2."""

    def __init__(self, clip: float) -> None:
        self.clip = clip
        self.global_: dict[str, np.ndarray] | None = None

    def set_global(self, arrays: Any) -> None:
        self.global_ = {k: v.numpy() for k, v in arrays.items()}

    def aggregate_train(self, server_round: int, replies: Any) -> tuple[Any, None]:
        from flwr.app import Array, ArrayRecord

        CALLS.append(server_round)
        assert self.global_ is not None
        keys = list(self.global_)
        base = np.concatenate([self.global_[k].ravel() for k in keys]).astype(np.float64)
        steps = []
        for msg in replies:
            arrays = msg.content["arrays"]
            flat = np.concatenate([arrays[k].numpy().ravel() for k in keys]) - base
            norm = float(np.linalg.norm(flat))
            steps.append(flat * min(1.0, self.clip / norm) if norm > 0 else flat)
        new = base + np.mean(steps, axis=0)
        out, pos = {}, 0
        for k in keys:
            n = self.global_[k].size
            out[k] = Array(new[pos : pos + n].reshape(self.global_[k].shape).astype(np.float32))
            pos += n
        return ArrayRecord(out), None


# The world recognises strategies that want the global model by this mixin.
def _needs_global() -> type:
    from simulation.fl.strategies import NeedsGlobal

    return type("ClippedMeanStrategy", (ClippedMean, NeedsGlobal), {})


class LowestAccountTakesAll(IncentiveMechanism):
    """A mechanism: the accepted contributor with the smallest account id gets everything."""

    name = "lowest_takes_all"

    def score(self, outcome: RoundOutcome) -> dict[str, float]:
        accepted = sorted(c.account for c in outcome.contributions if c.accepted)
        return {accepted[0]: 1.0} if accepted else {}


class ReplayGlobalParams(BaseParams):
    pass


class ReplayGlobal(TrainingBehaviour):
    """An attack: send the global model back unchanged (a zero update)."""

    name: ClassVar[str] = "replay_global"
    Params: ClassVar[type[BaseParams]] = ReplayGlobalParams

    def transform_update(self, global_weights: Any, local_weights: Any, ctx: Any) -> Any:
        return [np.array(w, copy=True) for w in global_weights]


@pytest.fixture
def registered() -> Iterator[None]:
    cls = _needs_global()
    AGGREGATORS.register(
        "clipped_mean", AggregatorSpec(ClippedMeanParams, lambda p: cls(**p.model_dump()))
    )
    MECHANISMS.register(LowestAccountTakesAll.name, LowestAccountTakesAll)
    TRAINING_BEHAVIOURS.register(ReplayGlobal.name, ReplayGlobal)
    CALLS.clear()
    yield
    AGGREGATORS.unregister("clipped_mean")
    MECHANISMS.unregister(LowestAccountTakesAll.name)
    TRAINING_BEHAVIOURS.unregister(ReplayGlobal.name)


def test_new_defence_mechanism_and_attack_run_by_name(registered: None, tmp_path: Path) -> None:
    data = {
        "name": "extension",
        "seed": 5,
        "dataset": {"name": "digits"},
        "clients": {"count": 4},
        "rounds": 2,
        "training": {"epochs": 1, "batch_size": 32, "lr": 0.1},
        "aggregation": {"strategy": "clipped_mean", "params": {"clip": 0.5}},
        "rewards": {"mechanism": "lowest_takes_all"},
        "population": [{"group": "replayers", "clients": [0], "behaviour": "replay_global"}],
        "market": {"initial_grant": 0, "stake": 0},
    }
    scenario = validate_data(data, "extension")
    outcome = run_scenario(scenario, tmp_path, engine="inprocess")

    assert CALLS == [1, 2]  # the defence aggregated both rounds
    rewards = [e for e in Market.open(tmp_path).entries() if e.kind == "reward"]
    assert [(e.data["round"], e.data["to"], e.data["mechanism"]) for e in rewards] == [
        (1, "client-000", "lowest_takes_all"),
        (2, "client-000", "lowest_takes_all"),
    ]
    # The attacker replayed the initial global model in round 1.
    from simulation.fl.device import resolve_device

    device = resolve_device(scenario.training, scenario.resources)
    parts_data = ServerModel(scenario, _data(scenario), SeedTree(scenario.seed), device)
    first = next(
        e for e in Market.open(tmp_path).entries()
        if e.kind == "contribution" and e.sender == "client-000"
    )  # fmt: skip
    assert first.data["update_hash"] == arrays_sha256(parts_data.initial_weights())
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["attackers"] == ["client-000"]
    assert outcome.result.rounds[-1].round == 2


def test_a_typo_in_a_registered_components_params_lists_its_keys(registered: None) -> None:
    from simulation.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        validate_data({"aggregation": {"strategy": "clipped_mean", "params": {"clp": 1}}}, "x")
    reasons = {(p.field, p.reason) for p in info.value.problems}
    assert ("aggregation.params.clp", "unknown parameter (valid: clip)") in reasons
    assert ("aggregation.params.clip", "required parameter missing") in reasons


def _data(scenario: Any) -> Any:
    from simulation.fl.training import DataSpec

    return DataSpec.of(scenario).build()
