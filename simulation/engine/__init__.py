"""How a world is driven: as a Flower run on a private SuperLink (ServerApp and
Grid) or in process, and the runner that picks one and writes the results."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "run_scenario": "runner",
    "RunOutcome": "runner",
    "baseline_of": "runner",
    "prepare_out_dir": "runner",
    "owned_out_dir": "runner",
    "quiet_environment": "env",
    "in_process_transport": "inprocess",
    "serve": "server_app",
    "run_flower": "flower",
    "LocalSuperLink": "superlink",
    "Supervised": "watchdog",
    "StopRequest": "stop",
    "discover_nodes": "server_app",
    "GridTransport": "server_app",
    "NodeDiscovery": "server_app",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
