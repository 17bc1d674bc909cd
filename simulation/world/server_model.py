"""The server's own use of the model: evaluation on its test and validation splits,
the backdoor success rate, and FLTrust's root-set training."""

from __future__ import annotations

import numpy as np

from simulation.config.schema import Scenario
from simulation.fl.device import DeviceChoice
from simulation.fl.evaluation import (
    GROUP_ATTRIBUTES,
    Footprint,
    LatencyMeasurement,
    SplitMetrics,
    footprint,
    measure_latency,
    split_metrics,
)
from simulation.fl.federated import FederatedData
from simulation.fl.models import build_model, flops_per_example, load_numpy, state_to_numpy
from simulation.fl.training import evaluate, local_train, predict
from simulation.fl.weights import unflatten
from simulation.rng import SeedTree
from simulation.world.population import Population
from simulation.world.records import Weights

__all__ = ["ServerModel"]


class ServerModel:
    """The global model's architecture on the server, with the data it evaluates on."""

    def __init__(
        self, scenario: Scenario, data: FederatedData, tree: SeedTree, device: DeviceChoice
    ) -> None:
        self.scenario = scenario
        self.data = data
        self.tree = tree
        self.device = device
        shape, classes, on = data.input_shape, data.num_classes, device.used
        self.model = build_model(scenario.model, shape, classes, tree.torch("init"), on)
        self.eval_model = build_model(scenario.model, shape, classes, tree.torch("eval"), on)
        self.flops = flops_per_example(self.model, shape)
        self.footprint: Footprint = footprint(self.model, self.flops)
        name = scenario.dataset.name
        self.groups = GROUP_ATTRIBUTES.get(name).of if name in GROUP_ATTRIBUTES else None

    def initial_weights(self) -> Weights:
        return state_to_numpy(self.model)

    def _split(self, weights: Weights, x: np.ndarray, y: np.ndarray) -> SplitMetrics:
        load_numpy(self.model, weights)
        d = self.data
        groups = self.groups(x) if self.groups is not None else None
        return split_metrics(self.model, x, y, d.input_shape, d.num_classes, groups)

    def test_results(self, weights: Weights) -> SplitMetrics:
        """Quality of ``weights`` on the held-out test split (the researcher's truth)."""
        return self._split(weights, self.data.x_test, self.data.y_test)

    def validation_results(self, weights: Weights) -> SplitMetrics:
        """Quality of ``weights`` on the validation split (what the registry publishes)."""
        return self._split(weights, self.data.x_val, self.data.y_val)

    def measured_latency(self, weights: Weights) -> LatencyMeasurement:
        """Timed single-example inference of ``weights`` (machine-dependent: results only)."""
        load_numpy(self.model, weights)
        return measure_latency(self.model, self.data.input_shape)

    def validation_utility(self, flat: np.ndarray, like: Weights) -> float:
        """A coalition model's utility: minus its validation cross-entropy.

        Continuous, unlike accuracy on ~180 validation rows, which moves in steps of
        1/180 and depends more on which rows are in the split (exact Shapley on the
        two halves of the split agrees with Spearman 0.85 under loss, 0.75 under
        accuracy) and never lets a prefix come near U(N) (at |S| = 9 of 10,
        |U(N) − U(S)| is 10 % of the round's gain under loss, 57 % under accuracy),
        so truncated estimators can stop early. Measured by benchmarks/shapley.py;
        see docs/contribution.md.
        """
        load_numpy(self.eval_model, unflatten(flat, like))
        d = self.data
        return -evaluate(self.eval_model, d.x_val, d.y_val, d.input_shape)[0]

    def backdoor_success(self, weights: Weights, population: Population) -> float:
        """Share of triggered test inputs (true label ≠ target) classified as the target."""
        found = population.backdoor()
        if found is None:
            return float("nan")
        behaviour, _ = found
        target = int(behaviour.params.target_label)  # type: ignore[attr-defined]
        keep = self.data.y_test != target
        if not keep.any():
            return float("nan")
        x = behaviour.apply_trigger(self.data.x_test[keep])  # type: ignore[attr-defined]
        load_numpy(self.model, weights)
        pred = predict(self.model, x, self.data.input_shape).argmax(axis=1)
        return float((pred == target).mean())

    def root_update(self, round_: int, global_weights: Weights) -> Weights:
        """FLTrust's server update: one round of local training on the root set."""
        sc, d = self.scenario, self.data
        gen = self.tree.torch("root", round_)
        model = build_model(sc.model, d.input_shape, d.num_classes, gen, self.device.used)
        load_numpy(model, global_weights)
        gen = self.tree.torch("root-train", round_)
        local_train(model, d.x_val, d.y_val, d.input_shape, sc.training, None, gen)
        return state_to_numpy(model)
