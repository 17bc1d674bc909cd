"""FedMarket agents: training behaviours, coalition attacks, Sybil specs and market intents.

Depends on numpy, pydantic and the standard library only. Behaviours transform data and
updates or emit intents; they never write the ledger (docs/ARCHITECTURE.md).
"""

from agents.coalition import (
    COALITION_ATTACKS,
    ALIEAttack,
    CoalitionAttack,
    StaleReplayAttack,
    SybilDuplicateAttack,
    UpdateCopyingAttack,
    alie_z_max,
    attack_from_config,
    attack_to_config,
    create_coalition_attack,
)
from agents.free_riding import DisguisedFreeRiderBehaviour, FreeRiderBehaviour
from agents.honest import HonestBehaviour
from agents.intents import (
    Bid,
    BuyLicense,
    Contribute,
    Intent,
    Join,
    Leave,
    Stake,
    Unstake,
    UseLicense,
    Vote,
)
from agents.poisoning import (
    BackdoorBehaviour,
    GaussianNoiseBehaviour,
    LabelFlipBehaviour,
    ScalingBehaviour,
    SignFlipBehaviour,
    apply_trigger,
)
from agents.sybil import SybilGroup, sybil_indices
from agents.training import (
    TRAINING_BEHAVIOURS,
    Heterogeneity,
    RoundContext,
    TrainingBehaviour,
    behaviour_from_config,
    behaviour_to_config,
    create_behaviour,
)

__all__ = [
    "COALITION_ATTACKS",
    "TRAINING_BEHAVIOURS",
    "ALIEAttack",
    "BackdoorBehaviour",
    "Bid",
    "BuyLicense",
    "CoalitionAttack",
    "Contribute",
    "DisguisedFreeRiderBehaviour",
    "FreeRiderBehaviour",
    "GaussianNoiseBehaviour",
    "Heterogeneity",
    "HonestBehaviour",
    "Intent",
    "Join",
    "LabelFlipBehaviour",
    "Leave",
    "RoundContext",
    "ScalingBehaviour",
    "SignFlipBehaviour",
    "Stake",
    "StaleReplayAttack",
    "SybilDuplicateAttack",
    "SybilGroup",
    "TrainingBehaviour",
    "Unstake",
    "UpdateCopyingAttack",
    "UseLicense",
    "Vote",
    "alie_z_max",
    "apply_trigger",
    "attack_from_config",
    "attack_to_config",
    "behaviour_from_config",
    "behaviour_to_config",
    "create_behaviour",
    "create_coalition_attack",
    "sybil_indices",
]
