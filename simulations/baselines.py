"""The two baselines that say whether federation pays, in the same code, split and protocol.

* ``centralized``: every platform's training data pooled into one model - the upper bound
  (users stay distinct per platform; nobody links identities).
* ``local-only``: each platform trains the whole model alone - what a platform has
  without crossfed.

Both train for ``num-server-rounds x local-epochs`` epochs, the federated run's budget,
and rank exactly the same candidate lists as the federated run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.config import RunConfig
from shared.datasets import load_platforms
from shared.evaluation import UserResults, evaluate_ranking
from shared.interactions import PlatformData, leave_last_out, pool
from shared.platform import PlatformTrainer, evaluation_seed, save_user_results
from shared.progress import RoundReport
from shared.results import PlatformMetrics, build_summary, write_summary

logger = logging.getLogger("crossfed.baselines")


def run_local_only(config: RunConfig) -> dict[str, Any]:
    started = time.perf_counter()
    platforms = load_platforms(config)
    trainers = [PlatformTrainer(data, config) for data in platforms]
    history: list[dict[str, Any]] = []
    for block in range(1, config.num_server_rounds + 1):
        losses = [trainer.train(config.local_epochs, salt=block).loss for trainer in trainers]
        validation = [_platform_metrics(t.data.platform, t.evaluate("validation")) for t in trainers]
        _record(history, RoundReport(block, float(np.mean(losses)), validation, time.perf_counter() - started), config)
    test = []
    for trainer in trainers:
        results = trainer.evaluate("test")
        save_user_results(_platform_dir(config, trainer.data.platform) / "test_per_user.npz", results)
        test.append(_platform_metrics(trainer.data.platform, results))
    summary = build_summary(
        mode="local-only", config=config, wall_seconds=time.perf_counter() - started, test=test, history=history
    )
    write_summary(config.run_dir, summary)
    return summary


def run_centralized(config: RunConfig) -> dict[str, Any]:
    started = time.perf_counter()
    platforms = load_platforms(config)
    pooled_data, _owner = pool(list(platforms))
    trainer = PlatformTrainer(pooled_data, config)
    offsets = np.cumsum([0] + [p.num_users for p in platforms])
    history: list[dict[str, Any]] = []
    for block in range(1, config.num_server_rounds + 1):
        loss = trainer.train(config.local_epochs, salt=block).loss
        validation = _evaluate_per_platform(trainer, platforms, offsets, config, "validation")
        _record(history, RoundReport(block, loss, validation, time.perf_counter() - started), config)
    test = _evaluate_per_platform(trainer, platforms, offsets, config, "test", save=True)
    summary = build_summary(
        mode="centralized", config=config, wall_seconds=time.perf_counter() - started, test=test, history=history
    )
    write_summary(config.run_dir, summary)
    return summary


def _evaluate_per_platform(
    trainer: PlatformTrainer,
    platforms: tuple[PlatformData, ...],
    offsets: np.ndarray,
    config: RunConfig,
    stage: str,
    save: bool = False,
) -> list[PlatformMetrics]:
    """The pooled model ranks each platform's candidates exactly as that platform would."""
    trainer.model.eval()
    metrics = []
    for data, offset in zip(platforms, offsets):
        split = leave_last_out(data.interactions)

        def score(users: torch.Tensor, items: torch.Tensor | None, offset: int = int(offset)) -> torch.Tensor:
            return trainer.model.score(users + offset, items)

        results = evaluate_ranking(
            score, split, data.interactions, stage=stage, k=config.top_k,
            eval_negatives=config.eval_negatives, seed=evaluation_seed(config, data.platform),
        )
        if save:
            save_user_results(_platform_dir(config, data.platform) / "test_per_user.npz", results)
        metrics.append(_platform_metrics(data.platform, results))
    return metrics


def _platform_metrics(platform: int, results: UserResults) -> PlatformMetrics:
    summary = results.summary()
    return PlatformMetrics(
        platform=platform,
        users=len(results.users),
        hr={p: v["hr"] for p, v in summary.items()},
        ndcg={p: v["ndcg"] for p, v in summary.items()},
    )


def _platform_dir(config: RunConfig, platform: int) -> Path:
    return Path(config.run_dir) / "platforms" / f"platform-{platform}"


def _record(history: list[dict[str, Any]], report: RoundReport, config: RunConfig) -> None:
    history.append(report.as_dict())
    report.log(config)
