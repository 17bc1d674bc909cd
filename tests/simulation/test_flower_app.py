"""The ServerApp and ClientApp are an ordinary Flower App, loadable the way `flwr run` does."""

from __future__ import annotations

import tomllib
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.supercore.object_ref import load_app

ROOT = Path(__file__).resolve().parents[2]


def test_components_declared_in_pyproject_load_with_flowers_loader() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    components = config["tool"]["flwr"]["app"]["components"]
    server = load_app(components["serverapp"], RuntimeError, ROOT)
    client = load_app(components["clientapp"], RuntimeError, ROOT)
    assert isinstance(server, ServerApp)
    assert isinstance(client, ClientApp)
    run_config = config["tool"]["flwr"]["app"]["config"]
    assert (ROOT / run_config["scenario"]).exists()


def test_console_script_points_at_the_cli() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["scripts"]["fedmarket"] == "simulation.cli:main"
    assert set(config["project"]["optional-dependencies"]) >= {"dev"}
