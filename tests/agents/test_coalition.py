"""Server-side coalition attacks against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from agents import (
    ALIEAttack,
    StaleReplayAttack,
    UpdateCopyingAttack,
    alie_z_max,
    create_coalition_attack,
)
from agents.coalition import ALIEParams, StaleReplayParams, UpdateCopyingParams


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- ALIE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m", "z"),
    [
        # s = floor(10/2 + 1) - 2 = 4 ; Phi^-1(6/10)
        (10, 2, 0.2533471031357998),
        # s = floor(20/2 + 1) - 5 = 6 ; Phi^-1(14/20)
        (20, 5, 0.5244005127080407),
        # s = floor(5/2 + 1) - 2 = 1 ; Phi^-1(4/5)
        (5, 2, 0.8416212335729143),
    ],
)
def test_alie_z_max_formula(n: int, m: int, z: float) -> None:
    assert alie_z_max(n, m) == pytest.approx(z, abs=1e-12)


def test_alie_z_max_rejects_majority() -> None:
    with pytest.raises(ValueError, match="s = "):
        alie_z_max(10, 6)  # s = 6 - 6 = 0
    with pytest.raises(ValueError):
        alie_z_max(3, 0)


def test_alie_submits_mu_plus_z_sigma_of_the_deltas() -> None:
    # Prepare: global [0, 0, 1]; colluder deltas [1, 2, 0] and [3, 2, 0]
    # -> mu = [2, 2, 0], sigma (ddof=0) = [1, 0, 0]; n = 10, m = 2 -> z = 0.25334710313579978.
    # A delta is minus a gradient, so the paper's gradient mu - z*sigma is delta mu + z*sigma.
    attack = ALIEAttack(ALIEParams(members=("client-001", "client-002"), num_clients=10))
    global_weights = [np.array([0.0, 0.0, 1.0])]
    subs = {
        "client-000": [np.array([9.0, 9.0, 9.0])],
        "client-001": [np.array([1.0, 2.0, 1.0])],
        "client-002": [np.array([3.0, 2.0, 1.0])],
    }
    # Execute
    out = attack.apply(1, subs, global_weights, rng())
    # Assert
    z = 0.2533471031357998
    expected = np.array([2.0 + z, 2.0, 1.0])
    np.testing.assert_allclose(out["client-001"][0], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out["client-002"][0], expected, rtol=0, atol=1e-15)
    assert out["client-000"][0] is subs["client-000"][0]


def test_alie_defaults_n_to_replies() -> None:
    # 5 replies, 2 colluders -> z = Phi^-1(0.8)
    attack = create_coalition_attack("alie", {"members": ["client-003", "client-004"]})
    g = [np.zeros(1)]
    subs = {f"client-00{i}": [np.array([float(i)])] for i in range(5)}
    out = attack.apply(2, subs, g, rng())
    # deltas 3, 4 -> mu 3.5, sigma 0.5
    assert out["client-003"][0][0] == pytest.approx(3.5 + 0.8416212335729143 * 0.5, abs=1e-12)


def test_alie_z_is_fixed_by_n_and_m_whoever_answers() -> None:
    """With n and m set (the run's expected participants and attackers), z does not
    move when fewer clients or colluders reply: today's partial-participation crash
    (s = ⌊n/2+1⌋ − m ≤ 0 from this round's replies) cannot happen."""
    params = {"members": ["client-001", "client-002"], "num_clients": 10, "num_attackers": 2}
    attack = create_coalition_attack("alie", params)
    g = [np.zeros(1)]
    # Only 3 replies, both colluders: from replies alone s = ⌊2.5⌋ − 2 = 0 would raise.
    subs = {"client-000": [np.array([9.0])], "client-001": [np.array([1.0])],
            "client-002": [np.array([3.0])]}  # fmt: skip
    out = attack.apply(1, subs, g, rng())
    assert out["client-001"][0][0] == pytest.approx(2.0 + 0.2533471031357998 * 1.0, abs=1e-12)


def test_alie_params_refuse_an_infeasible_setting() -> None:
    with pytest.raises(ValueError, match="s = "):
        create_coalition_attack(
            "alie", {"members": ["a", "b"], "num_clients": 4, "num_attackers": 3}
        )


# -- update copying ------------------------------------------------------------------------


def test_copying_returns_the_victims_arrays() -> None:
    # Prepare
    attack = UpdateCopyingAttack(UpdateCopyingParams(members=("client-009",)))
    g = [np.zeros(2)]
    subs = {
        "client-000": [np.array([1.0, 1.0])],
        "client-001": [np.array([2.0, 2.0])],
        "client-002": [np.array([3.0, 3.0])],
        "client-009": [np.array([-5.0, -5.0])],
    }
    expected_victim = ["client-000", "client-001", "client-002"][
        int(np.random.default_rng(7).integers(3))
    ]
    # Execute
    out = attack.apply(1, subs, g, rng(7))
    # Assert
    assert attack.last_victims == {"client-009": expected_victim}
    np.testing.assert_array_equal(out["client-009"][0], subs[expected_victim][0])
    assert out["client-009"][0] is not subs[expected_victim][0]
    for c in ("client-000", "client-001", "client-002"):
        assert out[c][0] is subs[c][0]


def test_copying_without_victims_passes_through() -> None:
    attack = create_coalition_attack("update_copying", {"members": ["client-001"]})
    subs = {"client-001": [np.array([4.0])]}
    out = attack.apply(1, subs, [np.zeros(1)], rng())
    np.testing.assert_array_equal(out["client-001"][0], [4.0])


# -- stale replay --------------------------------------------------------------------------


def _round_subs(r: int) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Global 10·r; client-001 sends global + r (delta r); client-000 sends global."""
    g = [np.array([10.0 * r])]
    return g, {"client-000": [g[0].copy()], "client-001": [g[0] + r]}


def test_stale_replay_is_lin_et_als_delta_weights_free_rider() -> None:
    """Lin et al. 2019: the free-rider submits w_g^t + (w_g^t − w_g^{t−lag}); until that
    difference exists, w_g^t itself. What the member sent is ignored (it did not train)."""
    attack = StaleReplayAttack(StaleReplayParams(members=("client-001",), lag=2))
    got = []
    for r in range(1, 6):
        g, subs = _round_subs(r)  # global 10·r
        got.append(float(attack.apply(r, subs, g, rng())["client-001"][0][0]))
    # r = 1, 2: no global from r − 2 yet → 10r; r ≥ 3: 10r + (10r − 10(r − 2)) = 10r + 20
    assert got == [10.0, 20.0, 50.0, 60.0, 70.0]
    assert StaleReplayAttack.members_train is False


def test_stale_replay_keeps_the_global_history_when_no_member_replied() -> None:
    attack = create_coalition_attack("stale_replay", {"members": ["client-001"], "lag": 1})
    g1, subs1 = _round_subs(1)
    attack.apply(1, {"client-000": subs1["client-000"]}, g1, rng())  # the member is absent
    g2, subs2 = _round_subs(2)
    # Round 2 replays the round-1 global it saw although no member replied then: 20 + 10.
    assert float(attack.apply(2, subs2, g2, rng())["client-001"][0][0]) == 30.0


def test_stale_replay_rejects_non_increasing_rounds() -> None:
    attack = create_coalition_attack("stale_replay", {"members": ["client-001"]})
    g, subs = _round_subs(2)
    attack.apply(2, subs, g, rng())
    with pytest.raises(ValueError, match="after round 2"):
        attack.apply(2, subs, g, rng())


# -- Sybil duplicate -----------------------------------------------------------------------


def test_sybil_duplicate_copies_the_source_update() -> None:
    attack = create_coalition_attack(
        "sybil_duplicate",
        {
            "groups": [
                {"owner": "mallory", "identities": ["client-003", "client-004", "client-005"]}
            ]
        },
    )
    g = [np.zeros(3)]
    subs = {
        "client-000": [np.array([1.0, 1.0, 1.0])],
        "client-004": [np.array([2.0, 3.0, 4.0])],  # client-003 did not reply: 004 is source
        "client-005": [np.array([9.0, 9.0, 9.0])],
    }
    out = attack.apply(1, subs, g, rng())
    np.testing.assert_array_equal(out["client-005"][0], [2.0, 3.0, 4.0])
    assert out["client-004"][0] is subs["client-004"][0]
    assert attack.members == frozenset({"client-003", "client-004", "client-005"})


def test_sybil_duplicate_with_noise() -> None:
    attack = create_coalition_attack(
        "sybil_duplicate",
        {"groups": [{"owner": "o", "identities": ["client-001", "client-002"]}], "noise_std": 0.01},
    )
    subs = {"client-001": [np.ones(100_000)], "client-002": [np.zeros(100_000)]}
    out = attack.apply(1, subs, [np.zeros(100_000)], rng())
    diff = out["client-002"][0] - 1.0
    assert diff.std() == pytest.approx(0.01, rel=0.02)


def test_sybil_groups_must_be_disjoint() -> None:
    with pytest.raises(ValueError, match="several groups"):
        create_coalition_attack(
            "sybil_duplicate",
            {
                "groups": [
                    {"owner": "a", "identities": ["client-001", "client-002"]},
                    {"owner": "b", "identities": ["client-002"]},
                ]
            },
        )


# -- common --------------------------------------------------------------------------------


def test_submission_shape_mismatch_names_the_client() -> None:
    attack = create_coalition_attack("alie", {"members": ["client-001", "client-002"]})
    with pytest.raises(ValueError, match="client-002"):
        attack.apply(
            1, {"client-001": [np.zeros(2)], "client-002": [np.zeros(3)]}, [np.zeros(2)], rng()
        )


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("update_copying", {"members": ["client-003"]}),
        (
            "sybil_duplicate",
            {
                "groups": [{"owner": "o", "identities": ["client-001", "client-002"]}],
                "noise_std": 0.1,
            },
        ),
    ],
)
def test_same_seed_same_rewrite(name: str, params: dict[str, object]) -> None:
    g = [np.zeros(4)]
    subs = {f"client-00{i}": [np.full(4, float(i))] for i in range(6)}
    a = create_coalition_attack(name, params).apply(3, subs, g, rng(11))
    b = create_coalition_attack(name, params).apply(3, subs, g, rng(11))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0])
