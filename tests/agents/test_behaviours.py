"""Training behaviours against hand-computed values (Prepare / Execute / Assert)."""

from __future__ import annotations

import numpy as np
import pytest

from agents import (
    BackdoorBehaviour,
    DisguisedFreeRiderBehaviour,
    FreeRiderBehaviour,
    GaussianNoiseBehaviour,
    HonestBehaviour,
    LabelFlipBehaviour,
    RoundContext,
    ScalingBehaviour,
    SignFlipBehaviour,
    apply_trigger,
    create_behaviour,
)
from agents.poisoning import BackdoorParams, LabelFlipParams, ScalingParams, SignFlipParams
from tests.agents.conftest import ctx

GLOBAL = [np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), np.array([0.5], dtype=np.float32)]
LOCAL = [np.array([[1.5, 1.0], [3.0, 6.0]], dtype=np.float32), np.array([0.25], dtype=np.float32)]
# delta = LOCAL - GLOBAL = [[0.5, -1.0], [0.0, 2.0]], [-0.25]


def test_sign_flip_negates_the_delta_exactly() -> None:
    # Prepare
    behaviour = SignFlipBehaviour()
    # Execute
    out = behaviour.transform_update(GLOBAL, LOCAL, ctx())
    # Assert: w_g - delta
    np.testing.assert_array_equal(out[0], np.array([[0.5, 3.0], [3.0, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(out[1], np.array([0.75], dtype=np.float32))
    assert out[0].dtype == np.float32


def test_sign_flip_with_scale() -> None:
    behaviour = SignFlipBehaviour(SignFlipParams(scale=2.0))
    out = behaviour.transform_update(GLOBAL, LOCAL, ctx())
    np.testing.assert_array_equal(out[0], np.array([[0.0, 4.0], [3.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(out[1], np.array([1.0], dtype=np.float32))


def test_scaling_multiplies_the_delta() -> None:
    behaviour = ScalingBehaviour(ScalingParams(factor=3.0))
    out = behaviour.transform_update(GLOBAL, LOCAL, ctx())
    np.testing.assert_array_equal(out[0], np.array([[2.5, -1.0], [3.0, 10.0]], dtype=np.float32))
    np.testing.assert_array_equal(out[1], np.array([-0.25], dtype=np.float32))


def test_integer_buffers_are_left_alone() -> None:
    counter_g, counter_l = np.array(7, dtype=np.int64), np.array(9, dtype=np.int64)
    out = SignFlipBehaviour().transform_update([*GLOBAL, counter_g], [*LOCAL, counter_l], ctx())
    assert out[2] == 9
    assert out[2].dtype == np.int64


def test_transforms_do_not_mutate_inputs() -> None:
    g_before = [a.copy() for a in GLOBAL]
    l_before = [a.copy() for a in LOCAL]
    for name in ("sign_flip", "scaling", "gaussian_noise", "disguised_free_rider", "honest"):
        create_behaviour(name).transform_update(GLOBAL, LOCAL, ctx())
    for a, b in zip(GLOBAL + LOCAL, g_before + l_before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="array 1"):
        SignFlipBehaviour().transform_update(GLOBAL, [LOCAL[0], np.zeros(2)], ctx())


def test_plain_free_rider_returns_global_unchanged() -> None:
    behaviour = FreeRiderBehaviour()
    out = behaviour.transform_update(GLOBAL, LOCAL, ctx())
    assert behaviour.trains is False
    for got, want in zip(out, GLOBAL, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got is not want


@pytest.mark.parametrize("round_", [1, 4])
def test_disguised_free_rider_noise_scale(round_: int) -> None:
    # Prepare: sigma * t^-gamma = 0.1 * t^-0.5 -> 0.1 at t=1, 0.05 at t=4
    behaviour = create_behaviour("disguised_free_rider", {"sigma": 0.1, "gamma": 0.5})
    global_weights = [np.full((400, 500), 3.0)]
    expected = 0.1 * round_**-0.5
    assert isinstance(behaviour, DisguisedFreeRiderBehaviour)
    # Execute
    out = behaviour.transform_update(global_weights, global_weights, ctx(round_))
    # Assert
    noise = out[0] - global_weights[0]
    assert behaviour.trains is False
    assert behaviour.noise_std(round_) == pytest.approx(expected)
    assert abs(noise.mean()) < 0.01 * expected
    assert noise.std() == pytest.approx(expected, rel=0.02)


def test_gaussian_noise_replace_and_add() -> None:
    g = [np.zeros(200_000)]
    w = [np.full(200_000, 5.0)]
    replace = GaussianNoiseBehaviour()
    add = create_behaviour("gaussian_noise", {"sigma": 2.0, "mode": "add"})
    out_r = replace.transform_update(g, w, ctx())[0]
    out_a = add.transform_update(g, w, ctx())[0]
    assert replace.trains is False and add.trains is True
    assert out_r.mean() == pytest.approx(0.0, abs=0.02)
    assert out_r.std() == pytest.approx(1.0, rel=0.02)
    assert out_a.mean() == pytest.approx(5.0, abs=0.03)
    assert out_a.std() == pytest.approx(2.0, rel=0.02)


def test_label_flip_default_map_on_exact_fraction() -> None:
    # Prepare: 20 samples, labels 0..9 twice, 10 classes; 30 % -> 6 flipped via y -> 9 - y
    y = np.tile(np.arange(10), 2)
    x = np.arange(20.0).reshape(20, 1)
    behaviour = LabelFlipBehaviour(LabelFlipParams(fraction=0.3))
    # Execute
    x_out, y_out = behaviour.prepare_data(x, y, ctx(num_classes=10))
    # Assert
    changed = np.flatnonzero(y_out != y)
    assert changed.size == 6
    np.testing.assert_array_equal(y_out[changed], 9 - y[changed])
    np.testing.assert_array_equal(y, np.tile(np.arange(10), 2))  # input untouched
    assert x_out is x


def test_label_flip_source_target_map() -> None:
    # 10 samples of label 1, 10 of label 3, 5 of label 7; map 1->7, 3->0 at 50 %:
    # eligible 20 samples -> 10 flipped, label 7 never touched.
    y = np.array([1] * 10 + [3] * 10 + [7] * 5)
    behaviour = create_behaviour("label_flip", {"fraction": 0.5, "mapping": {"1": 7, "3": 0}})
    _, y_out = behaviour.prepare_data(np.zeros((25, 2)), y, ctx(num_classes=8))
    changed = np.flatnonzero(y_out != y)
    assert changed.size == 10
    assert set(changed.tolist()) <= set(range(20))
    for i in changed:
        assert y_out[i] == {1: 7, 3: 0}[int(y[i])]
    np.testing.assert_array_equal(y_out[20:], 7)


def test_label_flip_full_fraction_flips_all() -> None:
    y = np.array([0, 1, 2, 3])
    _, y_out = LabelFlipBehaviour().prepare_data(np.zeros((4, 1)), y, ctx(num_classes=4))
    np.testing.assert_array_equal(y_out, [3, 2, 1, 0])


def test_label_flip_rejects_out_of_range_map() -> None:
    behaviour = create_behaviour("label_flip", {"mapping": {0: 12}})
    with pytest.raises(ValueError, match="num_classes"):
        behaviour.prepare_data(np.zeros((2, 1)), np.array([0, 1]), ctx(num_classes=10))


def test_apply_trigger_sets_last_k_pixels() -> None:
    # Prepare: 2 images 1x3x3 of zeros
    x = np.zeros((2, 1, 3, 3), dtype=np.float32)
    # Execute
    out = apply_trigger(x, trigger_size=4, trigger_value=1.0)
    # Assert: flattened features 5..8 are 1 -> row 1 col 2, and row 2 entirely
    expected = np.zeros((1, 3, 3), dtype=np.float32)
    expected[0, 1, 2] = 1.0
    expected[0, 2, :] = 1.0
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out[1], expected)
    assert x.sum() == 0.0
    with pytest.raises(ValueError, match="exceeds"):
        apply_trigger(x, trigger_size=10)


def test_backdoor_stamps_and_relabels_a_fraction() -> None:
    # Prepare: 10 samples of 6 features valued 0.5, labels 1; 40 % -> 4 poisoned
    x = np.full((10, 6), 0.5)
    y = np.ones(10, dtype=np.int64)
    behaviour = BackdoorBehaviour(BackdoorParams(target_label=7, fraction=0.4, trigger_size=2))
    # Execute
    x_out, y_out = behaviour.prepare_data(x, y, ctx(num_classes=10))
    # Assert
    poisoned = np.flatnonzero(y_out == 7)
    clean = np.flatnonzero(y_out == 1)
    assert poisoned.size == 4 and clean.size == 6
    np.testing.assert_array_equal(x_out[poisoned][:, -2:], 1.0)
    np.testing.assert_array_equal(x_out[poisoned][:, :-2], 0.5)
    np.testing.assert_array_equal(x_out[clean], 0.5)
    np.testing.assert_array_equal(x, 0.5)
    np.testing.assert_array_equal(behaviour.apply_trigger(x)[:, -2:], 1.0)


def test_backdoor_target_out_of_range() -> None:
    behaviour = create_behaviour("backdoor", {"target_label": 10})
    with pytest.raises(ValueError, match="target_label"):
        behaviour.prepare_data(np.zeros((4, 8)), np.zeros(4, dtype=int), ctx(num_classes=10))


def test_honest_heterogeneity_knobs() -> None:
    behaviour = create_behaviour(
        "honest",
        {
            "data_fraction": 0.25,
            "local_epoch_multiplier": 0.5,
            "compute_speed": 2.0,
            "dropout_prob": 0.0,
        },
    )
    x = np.arange(40.0).reshape(20, 2)
    y = np.arange(20)
    x_out, y_out = behaviour.prepare_data(x, y, ctx())
    assert y_out.size == 5
    assert np.all(np.diff(y_out) > 0)  # original order kept
    np.testing.assert_array_equal(x_out[:, 0], 2.0 * y_out)
    assert behaviour.local_epochs(3) == 2  # round(1.5) banker's -> 2
    assert behaviour.local_epochs(1) == 1
    assert behaviour.heterogeneity.compute_speed == 2.0
    assert behaviour.drops_out(ctx()) is False
    assert HonestBehaviour().transform_update(GLOBAL, LOCAL, ctx())[1][0] == np.float32(0.25)


def test_dropout_rate() -> None:
    behaviour = create_behaviour("honest", {"dropout_prob": 0.3})
    rng_ctx = ctx(seed=5)
    drops = sum(behaviour.drops_out(rng_ctx) for _ in range(10_000))
    assert drops / 10_000 == pytest.approx(0.3, abs=0.02)


def test_round_context_validation() -> None:
    with pytest.raises(ValueError, match="round"):
        RoundContext(round=0, client="client-000", num_classes=10, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="rng"):
        RoundContext(round=1, client="client-000", num_classes=10, rng=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("honest", {"data_fraction": 0.5}),
        ("disguised_free_rider", {"sigma": 0.5, "gamma": 1.0}),
        ("label_flip", {"fraction": 0.5}),
        ("gaussian_noise", {"sigma": 0.3, "mode": "add"}),
        ("backdoor", {"fraction": 0.5, "target_label": 2}),
    ],
)
def test_same_seed_same_output(name: str, params: dict[str, object]) -> None:
    x = np.random.default_rng(1).random((30, 8))
    y = np.arange(30) % 10
    runs = []
    for _ in range(2):
        behaviour = create_behaviour(name, params)
        c = ctx(3, seed=42)
        x_out, y_out = behaviour.prepare_data(x, y, c)
        update = behaviour.transform_update(GLOBAL, LOCAL, c)
        runs.append((x_out, y_out, update))
    (x1, y1, u1), (x2, y2, u2) = runs
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(u1, u2, strict=True):
        np.testing.assert_array_equal(a, b)


def test_label_flip_skips_fixed_points_of_odd_class_count() -> None:
    # 5 classes: y -> 4 - y leaves class 2 alone, so 8 of 10 samples are eligible; 50 % -> 4
    y = np.tile(np.arange(5), 2)
    behaviour = create_behaviour("label_flip", {"fraction": 0.5})
    assert isinstance(behaviour, LabelFlipBehaviour)
    np.testing.assert_array_equal(behaviour.eligible(y, 5), [0, 1, 3, 4, 5, 6, 8, 9])
    _, y_out = behaviour.prepare_data(np.zeros((10, 1)), y, ctx(num_classes=5))
    changed = np.flatnonzero(y_out != y)
    assert changed.size == 4
    np.testing.assert_array_equal(y_out[changed], 4 - y[changed])


def test_backdoor_boost_scales_the_delta() -> None:
    behaviour = BackdoorBehaviour(BackdoorParams(boost=2.0))
    out = behaviour.transform_update(GLOBAL, LOCAL, ctx())
    np.testing.assert_array_equal(out[0], np.array([[2.0, 0.0], [3.0, 8.0]], dtype=np.float32))
    unboosted = BackdoorBehaviour().transform_update(GLOBAL, LOCAL, ctx())
    np.testing.assert_array_equal(unboosted[0], LOCAL[0])


def test_backdoor_attacker_trains_its_own_local_epochs() -> None:
    """Bagdasaryan et al. 2020 train the backdoored model on their own schedule."""
    assert BackdoorBehaviour(BackdoorParams(local_epochs=5)).local_epochs(1) == 5
    assert BackdoorBehaviour(BackdoorParams()).local_epochs(2) == 2
    with pytest.raises(ValueError):
        BackdoorParams(local_epochs=0)
