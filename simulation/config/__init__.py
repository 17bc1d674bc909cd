"""The typed scenario: every section a scenario file may hold, as frozen pydantic
models with unknown keys refused. Pure data; reading files is ``simulation.scenario``."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "StrictModel": "schema",
    "SyntheticConfig": "schema",
    "DatasetConfig": "schema",
    "IidPartition": "schema",
    "DirichletPartition": "schema",
    "PathologicalPartition": "schema",
    "NaturalPartition": "schema",
    "ModelConfig": "schema",
    "ClientsConfig": "schema",
    "TrainingConfig": "schema",
    "NoPrivacy": "schema",
    "DPSGDPrivacy": "schema",
    "AggregationConfig": "schema",
    "RewardsConfig": "schema",
    "LicenseTermsConfig": "schema",
    "MarketBehaviourConfig": "schema",
    "MarketConfig": "schema",
    "TimingConfig": "schema",
    "ResourcesConfig": "schema",
    "FaultConfig": "schema",
    "GroupConfig": "schema",
    "AttackEvent": "schema",
    "CoalitionEvent": "schema",
    "JoinEvent": "schema",
    "LeaveEvent": "schema",
    "DropoutEvent": "schema",
    "ContributionConfig": "schema",
    "OutputConfig": "schema",
    "Scenario": "schema",
    "Partition": "schema",
    "Privacy": "schema",
    "TimelineEvent": "schema",
    "SCHEMA_VERSION": "schema",
    "STRUCTURE_ONLY": "schema",
    "client_account": "schema",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
