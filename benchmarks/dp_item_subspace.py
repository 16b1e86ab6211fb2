"""The DP item subspace (noisy power method) served local first, against local-only, over an epsilon grid.

``python benchmarks/dp_item_subspace.py [--datasets ml-1m ml-100k] [--epsilons 1 2 4 8 16 inf]
[--ranks 16 32 64] [--iterations 1 2 3 5] [--mechanism power|gram] [--noise-mode distributed|local]
[--platforms N] [--partition-attribute ATTR] [--noise-seed S [S ...]] [--reference HR] [--batch-size B]
[--max-items N] [--local-cache DIR] [--out FILE]``

What it measures, per dataset (``--platforms`` natural platforms by ``--partition-attribute``,
default 5 by zip-code region; seed 0) and epsilon: the federation runs the
mechanism in process (``crossfed.shared.privacy.item_subspace``: each platform's ledger, its unit
user rows, its noise; no Flower): with ``--mechanism power`` the noisy power method for every
rank ``k`` and iteration count ``T`` of the grid, with ``gram`` one release of the Gram matrix
whose top-``k`` eigenvectors give every ``k``; the point whose subspace alone ranks the platforms'
validation users best is kept. Then,
per platform and averaged over platforms, on the test set (sampled HR@10): the DP subspace alone,
the product's local-only model (``crossfed.shared.trainer.alone_model``, trained once per platform
and reused for every epsilon), the served model (local logits + ``w`` x standardised subspace
scores, ``w`` from ``--weights`` chosen on the platform's validation users:
``crossfed.shared.subspace_serving``) and the paired bootstrap (95 %) of served minus local-only.
"Share of the gain kept" is served minus local-only over the non-private federated NeuMF's
test HR@10 (``--reference``, else the measured one in ``REFERENCES`` for this dataset and split)
minus local-only.

DP noise draws from OS entropy by default, as in the product (the coordinator knows the run's
seed), so runs differ by the noise. ``--noise-seed`` seeds it instead, one cell per seed and
epsilon (platform ``p`` of seed ``s`` draws from ``default_rng([s, p])``), so a single draw can be
reproduced; at epsilon = inf there is no noise and one cell. ``--local-cache`` keeps each trained
local model's weights (the same model: its training is seeded), named by dataset, split and batch
size, so a rerun skips the longest part. Run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import markdown, provenance

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import LeaveLastOutSplit, PlatformData, leave_last_out
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.evaluation.stats import paired_bootstrap
from crossfed.shared.privacy.dp_sgd import noise_share
from crossfed.shared.privacy.item_subspace import (
    PlatformPowerStep,
    gram_subspace,
    noisy_power_method,
    subspace_ledger,
    unit_rows,
)
from crossfed.shared.subspace_serving import SubspaceScores, chosen_weight, ranked, served_scores
from crossfed.shared.trainer import alone_model
from crossfed.shared.training.private_copy import local_model

#: Non-private federated NeuMF test HR@10 by (dataset, platforms, partition attribute), seed 0, the
#: defaults of the day: ML-1M from docs/results/ml-1m.md (batch 256); ML-100K from
#: docs/results/federated-vs-baselines.md.
REFERENCES = {("ml-1m", 5, "region"): 0.6765, ("ml-100k", 5, "region"): 0.6529}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "ml-100k"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1, 2, 4, 8, 16, math.inf])
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--accountant", default="prv", choices=["rdp", "prv"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[16, 32, 64], help="grid of k")
    parser.add_argument("--iterations", nargs="+", type=int, default=[1, 2, 3, 5], help="grid of T")
    parser.add_argument("--weights", default="0,0.125,0.25,0.5,1,2,4,8", help="grid of w (first best wins)")
    parser.add_argument(
        "--mechanism",
        default="power",
        choices=["power", "gram"],
        help="noisy power method per (k, T), or one release of the Gram matrix (T = 1)",
    )
    parser.add_argument("--noise-mode", default="distributed", choices=["distributed", "local"])
    parser.add_argument("--platforms", type=int, default=5, help="number of natural platforms")
    parser.add_argument("--partition-attribute", default="region", help="user attribute the platforms split by")
    parser.add_argument(
        "--noise-seed",
        nargs="+",
        type=int,
        default=None,
        help="seed the DP noise: one cell per seed (default: one draw from OS entropy)",
    )
    parser.add_argument("--reference", type=float, default=None, help="non-private federated test HR@10")
    parser.add_argument("--batch-size", type=int, default=None, help="the local models' batch (default: the config's)")
    parser.add_argument("--max-items", type=int, default=0, help="cap on items per user row (0 = none)")
    parser.add_argument("--local-cache", type=Path, default=None, help="folder for the local models' weights")
    parser.add_argument("--out", type=Path, default=Path("runs/dp_item_subspace.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    block = provenance()
    print(markdown(block), flush=True)
    weights = tuple(float(w) for w in args.weights.split(","))
    results = []
    for dataset in args.datasets:
        split = {"dataset": dataset, "num-platforms": args.platforms, "partition-attribute": args.partition_attribute}
        batch = {} if args.batch_size is None else {"batch-size": args.batch_size}
        config = RunConfig.from_mapping({**split, **batch})
        platforms = all_platforms(config)
        splits = [leave_last_out(data.interactions) for data in platforms]
        started = time.process_time()
        local = [_local(data, split, config, args.local_cache) for data, split in zip(platforms, splits)]
        local_seconds = time.process_time() - started
        local_test = [
            ranked(model.score, data, split, config, "test").hits["sampled"]
            for model, data, split in zip(local, platforms, splits)
        ]
        print(f"{dataset}: local models ready ({local_seconds:.0f} CPU s)", flush=True)
        for epsilon in args.epsilons:
            for noise_seed in [None] if args.noise_seed is None or math.isinf(epsilon) else args.noise_seed:
                cell = measure(epsilon, noise_seed, args, config, platforms, splits, local, local_test, weights)
                cell.update(dataset=dataset, local_cpu_seconds=local_seconds)
                print(json.dumps(cell), flush=True)
                results.append(cell)
    print()
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({**block, "settings": settings, "cells": results}, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


def _local(data: PlatformData, split: LeaveLastOutSplit, config: RunConfig, cache: Path | None) -> torch.nn.Module:
    """The platform's local-only model: trained, or its weights from ``cache`` (the same seeded training)."""
    name = (
        f"local-{config.data.dataset}-{config.data.partition_attribute}{config.data.num_platforms}"
        f"-b{config.training.batch_size}-p{data.platform}.pt"
    )
    path = cache / name if cache else None
    if path is not None and path.exists():
        model = local_model(data, split.train, config, trained=False)
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = alone_model(data, split, config)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    return model


def reference(args: argparse.Namespace, config: RunConfig) -> float | None:
    """The non-private federated test HR@10 the gain is a share of: ``--reference``, else a measured one."""
    if args.reference is not None:
        return float(args.reference)
    data = config.data
    return REFERENCES.get((data.dataset, data.num_platforms, data.partition_attribute))


def _steps(
    epsilon: float,
    noise_seed: int | None,
    iterations: int,
    args: argparse.Namespace,
    config: RunConfig,
    splits: list[LeaveLastOutSplit],
    platforms: Any,
) -> list[PlatformPowerStep]:
    """Every platform's side of the mechanism, its ledger calibrated for ``iterations`` releases."""
    share = 1.0
    if args.noise_mode == "distributed":
        probe = subspace_ledger(epsilon, args.delta, iterations, population=min(d.num_users for d in platforms))
        sigma = probe.noise_multiplier or 1.0  # epsilon = inf: no noise, the share is moot
        share = noise_share(
            config.replace(
                privacy_unit="user",
                secagg=True,
                noise_mode="distributed",
                noise_multiplier=sigma,
                min_platforms=len(platforms),
            )
        )
    return [
        PlatformPowerStep(
            unit_rows(split.train, args.max_items, np.random.default_rng(config.experiment.seed)),
            subspace_ledger(
                epsilon,
                args.delta,
                iterations,
                population=data.num_users,
                accountant=args.accountant,
                noise_share=share,
            ),
            np.random.default_rng(None if noise_seed is None else [noise_seed, data.platform]),
        )
        for data, split in zip(platforms, splits)
    ]


Candidate = tuple[int, int, np.ndarray, list[PlatformPowerStep], float]


def _candidates(
    epsilon: float,
    noise_seed: int | None,
    args: argparse.Namespace,
    config: RunConfig,
    splits: list[LeaveLastOutSplit],
    platforms: Any,
) -> Iterator[Candidate]:
    """``(k, T, basis, steps, CPU s)`` for every point of the grid.

    ``power``: one noisy power method per ``(k, T)``. ``gram``: one release of the Gram matrix
    whose top-``k`` eigenvectors serve every ``k`` of the grid (post-processing of the same release).
    """
    if args.mechanism == "gram":
        started = time.process_time()
        steps = _steps(epsilon, noise_seed, 1, args, config, splits, platforms)
        vectors, _ = gram_subspace(steps)
        seconds = time.process_time() - started
        for rank in args.ranks:
            yield rank, 1, vectors[:, :rank], steps, seconds if rank == args.ranks[0] else 0.0
        return
    for rank in args.ranks:
        for iterations in args.iterations:
            started = time.process_time()
            steps = _steps(epsilon, noise_seed, iterations, args, config, splits, platforms)
            basis = noisy_power_method(steps, platforms[0].num_items, rank, iterations, seed=config.experiment.seed)
            yield rank, iterations, basis, steps, time.process_time() - started


def measure(
    epsilon: float,
    noise_seed: int | None,
    args: argparse.Namespace,
    config: RunConfig,
    platforms: Any,
    splits: list[LeaveLastOutSplit],
    local: list[torch.nn.Module],
    local_test: list[np.ndarray],
    weights: tuple[float, ...],
) -> dict[str, Any]:
    """One epsilon and noise draw: pick (k, T) on validation, then per platform the subspace, local-only
    and served on test."""
    grid = []
    best: tuple[float, int, int, np.ndarray, list[PlatformPowerStep]] | None = None
    mechanism_seconds = 0.0
    for rank, iterations, basis, steps, seconds in _candidates(epsilon, noise_seed, args, config, splits, platforms):
        mechanism_seconds += seconds
        validation = np.mean(
            [
                ranked(SubspaceScores(basis, s.history("validation")), d, s, config, "validation").summary()["sampled"][
                    "hr"
                ]
                for d, s in zip(platforms, splits)
            ]
        )
        grid.append({"k": rank, "T": iterations, "validation_hr": float(validation)})
        if best is None or validation > best[0]:
            best = (float(validation), rank, iterations, basis, steps)
    assert best is not None
    _, rank, iterations, basis, steps = best
    rows = []
    for data, split, model, alone, step in zip(platforms, splits, local, local_test, steps):
        weight = chosen_weight(model, basis, data, split, config, weights)
        subspace = SubspaceScores(basis, split.history("test"))
        dp_alone = ranked(subspace, data, split, config, "test").hits["sampled"]
        served = ranked(served_scores(model, subspace, weight), data, split, config, "test").hits["sampled"]
        interval = paired_bootstrap(served - alone, seed=data.platform)
        rows.append(
            {
                "platform": data.platform,
                "users": data.num_users,
                "weight": weight,
                "subspace": float(dp_alone.mean()),
                "local_only": float(alone.mean()),
                "served": float(served.mean()),
                "difference": [interval.mean, interval.low, interval.high],
                "epsilon_spent": step.ledger.epsilon(),
                "epsilon_alone": step.ledger.epsilon_alone(),
                "noise_multiplier": step.ledger.noise_multiplier,
                "noise_std": step.noise_std,
            }
        )
    local_mean = float(np.mean([r["local_only"] for r in rows]))
    served_mean = float(np.mean([r["served"] for r in rows]))
    federated = reference(args, config)
    return {
        "epsilon": epsilon,
        "noise_seed": noise_seed,
        "platform_count": len(platforms),
        "partition_attribute": config.data.partition_attribute,
        "batch_size": config.training.batch_size,
        "reference": federated,
        "mechanism": args.mechanism,
        "noise_mode": args.noise_mode,
        "k": rank,
        "T": iterations,
        "grid": grid,
        "mechanism_cpu_seconds": mechanism_seconds,
        "subspace": float(np.mean([r["subspace"] for r in rows])),
        "local_only": local_mean,
        "served": served_mean,
        "gain_kept": (served_mean - local_mean) / (federated - local_mean) if federated else None,
        "significantly_worse": [r["platform"] for r in rows if r["difference"][2] < 0],
        "significantly_better": [r["platform"] for r in rows if r["difference"][1] > 0],
        "platforms": rows,
    }


def table(cells: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table, one row per dataset and epsilon."""
    lines = [
        "| dataset | platforms | ε | noise seed | k | T | σ | ε spent (max) | subspace HR@10 | local-only | served | "
        "served − local | share of the gain kept | weights | sig. worse / better |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        rows = c["platforms"]
        sigma = rows[0]["noise_multiplier"]
        kept = "-" if c["gain_kept"] is None else f"{c['gain_kept']:.0%}"
        chosen = ", ".join(f"{r['weight']:g}" for r in rows)
        seed = "-" if c["noise_seed"] is None else c["noise_seed"]
        lines.append(
            f"| {c['dataset']} | {c['platform_count']} {c['partition_attribute']} | {c['epsilon']:g} | {seed} | "
            f"{c['k']} | {c['T']} | {sigma:.3f} | "
            f"{max(r['epsilon_spent'] for r in rows):.3f} | {c['subspace']:.4f} | {c['local_only']:.4f} | "
            f"{c['served']:.4f} | {c['served'] - c['local_only']:+.4f} | {kept} | "
            f"{chosen} | "
            f"{', '.join(map(str, c['significantly_worse'])) or 'none'} / "
            f"{', '.join(map(str, c['significantly_better'])) or 'none'} |"
        )
    lines += ["", "Per platform (local-only → served [95 % interval of the difference]; subspace alone):", ""]
    for c in cells:
        parts = [
            f"p{r['platform']} {r['local_only']:.4f} → {r['served']:.4f} "
            f"[{r['difference'][1]:+.4f}, {r['difference'][2]:+.4f}]; {r['subspace']:.4f}"
            for r in c["platforms"]
        ]
        seed = "" if c["noise_seed"] is None else f", noise seed {c['noise_seed']}"
        lines.append(
            f"* {c['dataset']} {c['platform_count']} platforms ε = {c['epsilon']:g}{seed}: " + " · ".join(parts)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
