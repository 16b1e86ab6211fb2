"""What a platform does in one round: restore local state, train or evaluate, save state.

The handlers in ``client_app`` only read their configuration and call these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Message

from shared.config import RunConfig
from shared.datasets import load_platforms
from shared.interactions import PlatformData
from shared.platform import PlatformTrainer, save_user_results
from shared.records import from_array_record
from shared.results import PlatformMetrics
from shared.sharing import load_shared_arrays
from shared.state import PlatformState

logger = logging.getLogger(__name__)


def platform_config(message: Message, context: Context) -> RunConfig:
    """Run config < the coordinator's per-round config < this node's own settings."""
    server_config: Mapping[str, Any] = message.content["config"] if "config" in message.content else {}
    node = context.node_config
    local: dict[str, Any] = {}
    if "num-partitions" in node:
        local["num-platforms"] = node["num-partitions"]
    if "data-dir" in node:
        local["data-dir"] = node["data-dir"]
    return RunConfig.from_mapping(context.run_config, server_config, local)


def platform_index(context: Context) -> int:
    return int(context.node_config.get("partition-id", context.node_config.get("platform-id", 0)))


def state_dir(context: Context, config: RunConfig, platform: int) -> Path:
    """The platform's private directory: ``state-dir`` from node config, else under the run folder."""
    if "state-dir" in context.node_config:
        return Path(str(context.node_config["state-dir"]))
    return Path(config.run_dir) / "platforms" / f"platform-{platform}"


def open_trainer(message: Message, context: Context) -> tuple[PlatformTrainer, Path, RunConfig]:
    """The platform's model with the coordinator's shared parameters and its own user tower."""
    torch.set_num_threads(1)  # one simulated platform per core; avoid oversubscription
    config = platform_config(message, context)
    platform = platform_index(context)
    data: PlatformData = load_platforms(config)[platform]
    trainer = PlatformTrainer(data, config)
    directory = state_dir(context, config, platform)
    saved = PlatformState.load(directory)
    if saved is not None:
        trainer.restore(saved)
    load_shared_arrays(trainer.model, from_array_record(message.content["arrays"]))
    return trainer, directory, config


def train(message: Message, context: Context) -> tuple[PlatformTrainer, dict[str, float | int]]:
    trainer, directory, config = open_trainer(message, context)
    server_round = int(message.content["config"]["server-round"])
    result = trainer.train(config.local_epochs, salt=server_round)
    trainer.snapshot(server_round).save(directory)
    logger.info("platform %d round %d: loss %.4f", trainer.data.platform, server_round, result.loss)
    metrics = {
        "platform": trainer.data.platform,
        "num-examples": result.positives,
        "train-loss": result.loss,
        "train-seconds": result.seconds,
        "pairs-per-second": result.pairs_per_second,
    }
    return trainer, metrics


def evaluate(message: Message, context: Context) -> dict[str, float | int]:
    """Validation: the current model. Test: the model the platform serves and the global model."""
    trainer, directory, _config = open_trainer(message, context)
    stage = str(message.content["config"].get("stage", "validation"))
    platform = trainer.data.platform
    if stage == "validation":
        results = trainer.evaluate("validation")
        metrics = PlatformMetrics.from_results(platform, results).to_flat()
    else:
        served, current = trainer.test()
        save_user_results(directory / "test_per_user.npz", served)
        save_user_results(directory / "test_per_user_global.npz", current)
        metrics = {
            **PlatformMetrics.from_results(platform, served).to_flat(),
            **PlatformMetrics.from_results(platform, current).to_flat(prefix="global-"),
        }
        results = served
    return {"platform": platform, "num-users": len(results.users), **metrics}
