"""A federated run on Flower's simulation engine (Ray): one SuperNode per platform."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from flwr.clientapp.typing import Mod

from crossfed.client.client_app import build_app as build_client_app
from crossfed.client.local_metrics import LOCAL_METRICS_FILE, read_locally
from crossfed.server.server_app import build_app as build_server_app
from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import check_platforms_fit
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.evaluation.progress import RoundReport
from crossfed.shared.evaluation.results import (
    PlatformMetrics,
    build_summary,
    platform_dir,
    read_summary,
    write_summary,
)
from crossfed.simulations.local_first import local_first_block

FLOWER_ENVIRONMENT = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_DISABLE_USAGE_STATS": "1",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
}


def run_federated(
    config: RunConfig, cpus: int | None = None, client_mods: Sequence[Mod] = (), inner_client_mods: Sequence[Mod] = ()
) -> dict[str, Any]:
    """Simulate ``num-platforms`` platforms; returns the run's ``summary.json`` content.

    ``client_mods`` and ``inner_client_mods`` are the ClientApp's mods outside and inside secure
    aggregation (:func:`crossfed.client.client_app.build_app`).

    Each simulated platform gets one CPU, so at most ``cpus`` train at once. Ray is
    started and shut down by Flower inside this call: nothing keeps running after it.
    """
    for key, value in FLOWER_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    from flwr.simulation import run_simulation  # after the environment is set

    if not config.data.operator_data:  # platforms with their own files check themselves
        check_platforms_fit(config.privacy, all_platforms(config))  # before Ray starts or any round runs
    backend_config = ray_backend_config(cpus)
    run_simulation(
        server_app=build_server_app(config.to_flat()),
        client_app=build_client_app(config.to_flat(), client_mods, inner_client_mods),
        num_supernodes=config.data.num_platforms,
        backend_config=backend_config,
    )
    summary = read_summary(config.experiment.run_dir)
    if summary["metrics"] is None:
        summary = with_platform_reported_metrics(summary, config)
        write_summary(config.experiment.run_dir, summary)
    test = [e for lines in platform_entries(config).values() for e in lines if e["stage"] == "test"]
    local_first = local_first_block(config, config.experiment.run_dir, test)
    if local_first is not None:
        summary = {**summary, "local_first": local_first}
        write_summary(config.experiment.run_dir, summary)
    return summary


#: Ray's shared-memory object store holds the messages in flight (a few hundred KiB each); by
#: default Ray may claim 30 % of RAM for it, so a simulation bounds it.
OBJECT_STORE_BYTES = 512 * 2**20


def ray_backend_config(cpus: int | None = None) -> dict[str, Any]:
    """Ray settings for Flower's simulation engine; every simulated platform asks for one CPU.

    With ``RAY_ADDRESS`` set (a running cluster's head, e.g. ``ray start --head``), the
    simulation joins that cluster and its CPUs decide how many platforms train at once:
    Ray refuses sizing arguments when it connects, and shutting down only disconnects.
    Otherwise Flower starts a private Ray instance with ``cpus`` CPUs (default: all) and a
    bounded object store, and stops it at the end of the run.
    """
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    address = os.environ.get("RAY_ADDRESS", "")
    init_args = (
        {"address": address, **quiet}
        if address
        else {"num_cpus": cpus or os.cpu_count() or 1, "object_store_memory": OBJECT_STORE_BYTES, **quiet}
    )
    return {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": init_args}


def platform_entries(config: RunConfig) -> dict[int, list[dict[str, Any]]]:
    """Every simulated platform's own metrics log, by platform."""
    return {
        platform: read_locally(platform_dir(config.experiment.run_dir, platform) / LOCAL_METRICS_FILE, platform)
        for platform in range(config.data.num_platforms)
    }


def with_platform_reported_metrics(summary: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """Fill in the metrics each platform kept to itself (under DP none are sent).

    Only a simulation can do this - the researcher owns every platform's disk here. In a
    deployment each operator reads their own ``metrics.jsonl``.
    """
    entries = platform_entries(config)
    test = [e for lines in entries.values() for e in lines if e["stage"] == "test"]
    rebuilt = build_summary(
        mode=summary["mode"],
        config=config,
        wall_seconds=summary["wall_seconds"],
        startup_seconds=summary["startup_seconds"],
        test=[PlatformMetrics.from_flat(e) for e in test],
        global_test=[PlatformMetrics.from_flat(e, prefix="global-") for e in test],
        history=summary["history"],
    )
    for round_entry in rebuilt["history"]:
        validation = [
            PlatformMetrics.from_flat(e)
            for lines in entries.values()
            for e in lines
            if e["stage"] == "validation" and e["round"] == round_entry["round"]
        ]
        if validation:
            measured = RoundReport(round_entry["round"], float("nan"), validation, 0.0).as_dict()
            round_entry.update(validation=measured["validation"], per_platform=measured["per_platform"])
    rebuilt["metrics_source"] = "platform-local files (never sent to the coordinator)"
    return {
        **summary,
        **{key: rebuilt[key] for key in ("metrics", "global_metrics", "per_platform", "history", "metrics_source")},
    }
