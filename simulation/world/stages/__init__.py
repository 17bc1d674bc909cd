"""The stages of a round, each a small class with a name and ``run(ctx)``.

See :func:`simulation.world.setup.default_stages` for their order.
"""

from simulation.world.stages.aggregate import Aggregate
from simulation.world.stages.base import Clock, Stage
from simulation.world.stages.close import (
    AttackMetrics,
    CloseRound,
    SignalRoundClosed,
    attacker_identities,
)
from simulation.world.stages.dispatch import ApplyCoalitions, Dispatch
from simulation.world.stages.economy import Reward, SettleRevenue
from simulation.world.stages.model import EvaluateModel, RegisterVersion, price_list
from simulation.world.stages.participation import SampleClients, StopExhausted
from simulation.world.stages.precision import CheckReferencePrecision
from simulation.world.stages.scoring import ScoreContributions
from simulation.world.stages.screen import (
    AccountPrivacy,
    AdvanceClock,
    ChargeCosts,
    RecordContributions,
    Screen,
)

__all__ = [
    "AccountPrivacy",
    "AdvanceClock",
    "Aggregate",
    "ApplyCoalitions",
    "AttackMetrics",
    "ChargeCosts",
    "CheckReferencePrecision",
    "Clock",
    "CloseRound",
    "Dispatch",
    "EvaluateModel",
    "RecordContributions",
    "RegisterVersion",
    "Reward",
    "SampleClients",
    "ScoreContributions",
    "Screen",
    "SettleRevenue",
    "SignalRoundClosed",
    "Stage",
    "StopExhausted",
    "attacker_identities",
    "price_list",
]
