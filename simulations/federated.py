"""A federated run on Flower's simulation engine (Ray): one SuperNode per platform."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from flwr.clientapp.typing import Mod

from client.client_app import build_app as build_client_app
from server.server_app import build_app as build_server_app
from shared.config import RunConfig
from shared.results import read_summary

logger = logging.getLogger(__name__)

FLOWER_ENVIRONMENT = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_DISABLE_USAGE_STATS": "1",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
}


def run_federated(config: RunConfig, cpus: int | None = None, client_mods: Sequence[Mod] = ()) -> dict[str, Any]:
    """Simulate ``num-platforms`` platforms; returns the run's ``summary.json`` content.

    Each simulated platform gets one CPU, so at most ``cpus`` train at once. Ray is
    started and shut down by Flower inside this call: nothing keeps running after it.
    """
    for key, value in FLOWER_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    from flwr.simulation import run_simulation  # after the environment is set

    cpus = cpus or os.cpu_count() or 1
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": logging.ERROR,
                      "log_to_driver": False},
    }
    run_simulation(
        server_app=build_server_app(config.to_flat()),
        client_app=build_client_app(client_mods),
        num_supernodes=config.num_platforms,
        backend_config=backend_config,
    )
    return read_summary(config.run_dir)
