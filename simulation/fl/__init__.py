"""Federated learning: datasets, models, local DP-SGD training, privacy accounting,
aggregation strategies and the Flower ClientApp."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "FederatedData": "data",
    "RawData": "data",
    "build_federated_data": "data",
    "partition_indices": "data",
    "synthetic_fedprox": "data",
    "PartitionError": "data",
    "build_model": "models",
    "state_to_numpy": "models",
    "load_numpy": "models",
    "flops_per_example": "models",
    "parameter_count": "models",
    "ClientTask": "training",
    "DataSpec": "training",
    "DPSpec": "training",
    "TrainResult": "training",
    "run_client_task": "training",
    "local_train": "training",
    "evaluate": "training",
    "predict": "training",
    "choose_grad_sample_mode": "training",
    "PrivacyLedger": "privacy",
    "calibrate_noise": "privacy",
    "poisson_schedule": "privacy",
    "epsilon": "privacy",
    "create_strategy": "aggregation",
    "FoolsGold": "strategies",
    "FLTrust": "strategies",
    "NeedsGlobal": "strategies",
    "wrap_client_dp": "strategies",
    "validation_results": "evaluation",
    "ReplyMetrics": "messages",
    "aggregation_reply": "messages",
    "arrays_sha256": "weights",
    "flatten": "weights",
    "unflatten": "weights",
    "safetensors_bytes": "weights",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
