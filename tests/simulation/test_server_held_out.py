"""``dataset.test_rows`` / ``dataset.validation_rows``: a fixed-size server held-out set,
drawn from Synthetic-IID's law apart from the clients' rows, whatever the population."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.config.schema import DatasetConfig, NaturalPartition, Scenario, SyntheticConfig
from simulation.errors import ScenarioError
from simulation.fl.data import _build_cached, build_federated_data
from simulation.fl.training import DataSpec, scored
from simulation.rng import SeedTree
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["dataset.test_rows=500", "dataset.validation_rows=50"]
NO_FRACTIONS = ["dataset.test_fraction=null", "dataset.validation_fraction=null"]
LAW = SyntheticConfig(iid=True, dim=5, num_classes=3, samples_per_client=10)


def _fixed(test: int = 300, validation: int = 40) -> DatasetConfig:
    return DatasetConfig(
        name="synthetic", test_rows=test, validation_rows=validation, synthetic=LAW
    )


@pytest.mark.parametrize("clients", [100, 10_000])
def test_the_server_sets_have_their_size_at_any_population(clients: int) -> None:
    data = build_federated_data(_fixed(), NaturalPartition(), clients, seed=5)
    assert (len(data.test.y), len(data.val.y)) == (300, 40)
    # Every generated row stays with its client: the same sizes as the generator's.
    sizes = SeedTree(5).child("data").numpy("generate").lognormal(np.log(10), 0.5, clients)
    own = np.maximum(sizes.astype(np.int64), 10)
    assert sorted(data.sizes()) == sorted(own.tolist())


def test_the_server_rows_are_fresh_draws_of_the_shared_law() -> None:
    # Recomputed from the definition: W, b are the generator's first normals after the
    # client sizes; a server row is x = σz from data/server-test, y = argmax(Wx + b).
    data = build_federated_data(_fixed(test=200), NaturalPartition(), 50, seed=8)
    tree = SeedTree(8).child("data")
    gen = tree.numpy("generate")
    gen.lognormal(np.log(10), 0.5, 50)
    w, b = gen.normal(0.0, 1.0, (3, 5)), gen.normal(0.0, 1.0, 3)
    x = np.sqrt(np.arange(1, 6, dtype=np.float64) ** -1.2) * tree.numpy(
        "server-test"
    ).standard_normal((200, 5))
    assert np.array_equal(data.test.x(), x.astype(np.float32))
    assert np.array_equal(data.test.y, np.argmax(x @ w.T + b, axis=1))
    assert len(np.unique(data.test.y)) == 3


def test_the_server_sets_are_seeded_and_each_from_its_own_draw() -> None:
    a = build_federated_data(_fixed(validation=40), NaturalPartition(), 30, seed=2)
    _build_cached.cache_clear()
    again = build_federated_data(_fixed(validation=40), NaturalPartition(), 30, seed=2)
    other = build_federated_data(_fixed(validation=60), NaturalPartition(), 30, seed=2)
    assert again is not a
    for split in ("test", "val"):
        assert np.array_equal(getattr(a, split).x(), getattr(again, split).x())
        assert np.array_equal(getattr(a, split).y, getattr(again, split).y)
    # Another validation size moves neither the test rows nor the clients' rows; its
    # first 40 rows are the same draws.
    assert np.array_equal(a.test.x(), other.test.x()) and np.array_equal(a.x_train, other.x_train)
    assert np.array_equal(a.val.x(), other.val.x()[:40])


FIXED_SET = "a fixed-size server held-out set is drawn from the data's law"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ([*ROWS, *NO_FRACTIONS], rf"dataset.test_rows -> {FIXED_SET}.*digits is a fixed set"),
        ([ROWS[0], NO_FRACTIONS[0]], "dataset.validation_rows -> .*give validation_rows too"),
        ([ROWS[1], NO_FRACTIONS[1]], "dataset.test_rows -> .*give test_rows too"),
        ([*ROWS, "dataset.test_rows=0"], "dataset.test_rows -> .*greater than or equal to 1"),
        # The fraction form: shares that leave the clients almost nothing (a traceback
        # from scikit-learn's split before).
        (
            ["dataset.test_fraction=0.6", "dataset.validation_fraction=0.4"],
            "dataset.validation_fraction -> test and validation leave < 10% for training",
        ),
    ],
)
def test_a_fixed_size_the_data_cannot_give_is_a_scenario_error(
    overrides: list[str], problem: str
) -> None:
    with pytest.raises(ScenarioError, match=problem):
        load_scenario(ROOT / "scenarios" / "quickstart.yaml", overrides)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (["dataset.synthetic.iid=false"], rf"dataset.test_rows -> {FIXED_SET}.*one law per client"),
        (["dataset.test_fraction=0.1"], r"dataset.test_fraction -> test_rows \(10000\) replaces"),
        (["dataset.validation_fraction=0.05"], "dataset.validation_fraction -> validation_rows"),
        (  # 1,000,000 rows × 200 features: 1.6 GB in float64
            ["dataset.test_rows=1000000", "dataset.synthetic.dim=200"],
            r"dataset.test_rows -> 200,000,000 values \(test_rows × synthetic.dim\)",
        ),
    ],
)
def test_cross_device_refuses_what_its_held_out_set_cannot_honour(
    overrides: list[str], problem: str
) -> None:
    with pytest.raises(ScenarioError, match=problem):
        load_scenario(ROOT / "scenarios" / "cross_device.yaml", overrides)


def test_a_dumped_fixed_size_scenario_validates_again_with_its_hash() -> None:
    # The Flower apps, ClientApps and study workers re-validate a dump, where every
    # field is set.
    sc = load_scenario(ROOT / "scenarios" / "cross_device.yaml")
    assert (sc.dataset.test_rows, sc.dataset.test_fraction) == (10_000, None)
    again = Scenario.model_validate(sc.resolved())
    assert again == sc and again.sha256() == sc.sha256()
    spec = DataSpec.of(sc)  # what a ClientApp rebuilds its data from
    assert DataSpec.model_validate_json(spec.model_dump_json()) == spec


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from([0.0, 1.0, 2.0, float("nan"), float("inf"), -float("inf")]),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_scored_predicts_what_numpy_argmax_predicts(rows: list[list[float]]) -> None:
    # Ties, NaN and ±inf: torch's argmax (used for accuracy and class scores) picks
    # the class numpy's first-maximum rule picks, as int64.
    logits = np.asarray(rows, dtype=np.float32)
    _, _, pred = scored(logits, np.zeros(len(rows), dtype=np.int64))
    assert pred.dtype == np.int64
    assert pred.tolist() == logits.argmax(axis=1).tolist()
