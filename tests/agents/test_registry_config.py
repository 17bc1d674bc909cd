"""Registries, factories and the JSON encoding sent through Flower ConfigRecords."""

from __future__ import annotations

import json

import pytest

from agents import (
    COALITION_ATTACKS,
    TRAINING_BEHAVIOURS,
    attack_from_config,
    attack_to_config,
    behaviour_from_config,
    behaviour_to_config,
    create_behaviour,
    create_coalition_attack,
)
from agents._registry import Registry

BEHAVIOUR_PARAMS: dict[str, dict[str, object]] = {
    "honest": {
        "data_fraction": 0.5,
        "local_epoch_multiplier": 2.0,
        "compute_speed": 0.5,
        "dropout_prob": 0.1,
    },
    "free_rider": {},
    "disguised_free_rider": {"sigma": 0.01, "gamma": 0.5},
    "label_flip": {"fraction": 0.25, "mapping": {"1": 7, "2": 0}},
    "sign_flip": {"scale": 2.0},
    "scaling": {"factor": 5.0},
    "gaussian_noise": {"sigma": 0.2, "mode": "add"},
    "backdoor": {
        "target_label": 3,
        "fraction": 0.1,
        "trigger_size": 9,
        "trigger_value": 2.5,
        "boost": 4.0,
    },
}


def test_registry_keys_are_pinned() -> None:
    assert TRAINING_BEHAVIOURS.names() == tuple(sorted(BEHAVIOUR_PARAMS))
    assert COALITION_ATTACKS.names() == (
        "alie",
        "stale_replay",
        "sybil_duplicate",
        "update_copying",
    )


def test_typo_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        create_behaviour("sign_flp", None)
    message = str(info.value)
    assert "'sign_flp'" in message
    for name in TRAINING_BEHAVIOURS.names():
        assert name in message
    with pytest.raises(ValueError, match="alie, stale_replay, sybil_duplicate, update_copying"):
        create_coalition_attack("aile", {})


def test_bad_params_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"sign_flip.*scale"):
        create_behaviour("sign_flip", {"scale": -1.0})
    with pytest.raises(ValueError, match="sclae"):
        create_behaviour("sign_flip", {"sclae": 2.0})
    with pytest.raises(ValueError, match="lag"):
        create_coalition_attack("stale_replay", {"members": ["client-001"], "lag": 0})
    with pytest.raises(ValueError, match="members"):
        create_coalition_attack("alie", {})


def test_duplicate_registration_fails() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)


@pytest.mark.parametrize("name", sorted(BEHAVIOUR_PARAMS))
def test_behaviour_params_round_trip_through_json(name: str) -> None:
    # Prepare
    behaviour = create_behaviour(name, BEHAVIOUR_PARAMS[name])
    # Execute
    config = behaviour_to_config(behaviour)
    rebuilt = behaviour_from_config(json.loads(json.dumps(config)))
    # Assert
    assert type(rebuilt) is type(behaviour)
    assert rebuilt.params == behaviour.params
    assert behaviour_to_config(rebuilt) == config
    assert json.loads(config)["name"] == name


def test_label_flip_mapping_survives_string_keys() -> None:
    config = behaviour_to_config(create_behaviour("label_flip", {"mapping": {1: 7}}))
    assert config == '{"name":"label_flip","params":{"fraction":1.0,"mapping":{"1":7}}}'
    rebuilt = behaviour_from_config(config)
    assert rebuilt.params.model_dump() == {"fraction": 1.0, "mapping": {1: 7}}


@pytest.mark.parametrize(
    "params",
    [
        ("stale_replay", {"members": ["client-001"], "lag": 3}),
        ("update_copying", {"members": ["client-001", "client-002"]}),
        ("alie", {"members": ["client-001"], "num_clients": 20, "z": 1.5}),
        (
            "sybil_duplicate",
            {
                "groups": [{"owner": "o", "identities": ["client-1", "client-2"], "mode": "split"}],
                "noise_std": 0.1,
            },
        ),
    ],
)
def test_attack_params_round_trip(params: tuple[str, dict[str, object]]) -> None:
    name, values = params
    attack = create_coalition_attack(name, values)
    rebuilt = attack_from_config(attack_to_config(attack))
    assert type(rebuilt) is type(attack)
    assert rebuilt.params == attack.params


@pytest.mark.parametrize(
    "config",
    [
        "not json",
        "[]",
        '{"name": "honest"}',
        '{"name": 3, "params": {}}',
        '{"name": "honest", "params": {}, "extra": 1}',
    ],
)
def test_malformed_config_is_a_value_error(config: str) -> None:
    with pytest.raises(ValueError):
        behaviour_from_config(config)


def test_nan_params_rejected() -> None:
    with pytest.raises(ValueError, match="sigma"):
        create_behaviour("gaussian_noise", {"sigma": float("nan")})
