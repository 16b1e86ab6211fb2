"""Local-first serving under user-level DP against local-only, over an epsilon grid, in one process.

``python benchmarks/local_first.py [--epsilons 1 2 4 8 16 inf] [--rounds 20] [--set KEY=VALUE ...] [--out FILE]``

What it measures: for each epsilon, the model each platform serves under ``serve-model =
local-first`` (its local-only model plus the DP global model's logits at the weight its validation
users prefer) against the local-only model itself, on the test set (sampled HR@10), per platform
with a paired bootstrap (95 %), and the global model beside them.

Why a separate script next to ``crossfed sweep simulations/experiments/privacy_utility.toml``:
the sweep runs every cell through Flower and Ray, which is the reference; on a busy 2-core
machine Ray's start-up and per-round overhead dominate. This script runs the same round in
process - every platform's :class:`~crossfed.shared.trainer.PlatformTrainer` (DP step, ledger,
user-embedding refresh) from the current global shared parameters, then the equal-weight mean
the coordinator's ``fedavg`` computes under DP - and trains each platform's local model once
for the whole grid, since it does not depend on epsilon. DP noise draws from OS entropy, so
runs differ by the noise, as the sweep's cells do.

The figures, with the date, commit and machine, are written as JSON to ``--out`` (default
under ``runs/``, which git ignores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import markdown, provenance

from crossfed.server.federation import initial_arrays
from crossfed.shared.config import RunConfig
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.evaluation.stats import paired_bootstrap
from crossfed.shared.model.sharing import load_shared_arrays, shared_arrays
from crossfed.shared.trainer import PlatformTrainer, alone_model, local_first_copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", nargs="+", default=["1", "2", "4", "8", "16", "inf"])
    parser.add_argument("--rounds", type=int, default=20, help="federation rounds (= the local model's epochs)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further run-config keys")
    parser.add_argument("--out", type=Path, default=Path("runs/local_first.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    block = provenance()
    print(markdown(block))
    extra = dict(item.split("=", 1) for item in args.set)
    base = RunConfig.from_mapping(
        {
            "num-server-rounds": args.rounds,
            "privacy-unit": "user",
            "user-dp-mechanism": "dp-sgd",
            "delta": 1e-5,
            **extra,
        },
        source="--set",
    )
    platforms = all_platforms(base)
    started = time.perf_counter()
    local = [alone_model(data, PlatformTrainer(data, base).split, base) for data in platforms]
    local_seconds = time.perf_counter() - started
    cells = []
    for epsilon in args.epsilons:
        cell = measure(base.replace(epsilon=float(epsilon)), platforms, local)
        print(json.dumps(cell), flush=True)
        cells.append(cell)
    result = {**block, "rounds": args.rounds, "settings": extra, "local_seconds": local_seconds, "cells": cells}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")


def measure(config: RunConfig, platforms: Any, local: list[torch.nn.Module]) -> dict[str, Any]:
    """One epsilon: the DP federation in process, then each platform's local-first model and local-only."""
    started = time.perf_counter()
    trainers = [PlatformTrainer(data, config) for data in platforms]
    arrays = initial_arrays(config)
    for server_round in range(1, config.federation.num_server_rounds + 1):
        updates = []
        for trainer in trainers:
            load_shared_arrays(trainer.model, arrays)
            trainer.train(config.training.local_epochs, salt=server_round)
            updates.append(dict(shared_arrays(trainer.model)))
        arrays = {name: np.mean([u[name] for u in updates], axis=0).astype(updates[0][name].dtype) for name in arrays}
    training_seconds = time.perf_counter() - started
    rows = []
    for trainer, alone in zip(trainers, local):
        load_shared_arrays(trainer.model, arrays)
        served = local_first_copy(trainer.model, trainer.data, config, trainer.split, local=alone)
        weight = float(served.prior_weight)
        served_hits = trainer.evaluate("test", served).hits["sampled"]
        served.prior_weight.fill_(0.0)
        local_hits = trainer.evaluate("test", served).hits["sampled"]
        global_hits = trainer.evaluate("test").hits["sampled"]
        interval = paired_bootstrap(served_hits - local_hits, seed=trainer.data.platform)
        ledger = trainer.ledger
        assert ledger is not None
        rows.append(
            {
                "platform": trainer.data.platform,
                "weight": weight,
                "served": float(served_hits.mean()),
                "local_only": float(local_hits.mean()),
                "global": float(global_hits.mean()),
                "difference": [interval.mean, interval.low, interval.high],
                "epsilon_spent": ledger.epsilon(),
            }
        )
    return {
        "epsilon": config.privacy.epsilon,
        "served": float(np.mean([r["served"] for r in rows])),
        "local_only": float(np.mean([r["local_only"] for r in rows])),
        "global": float(np.mean([r["global"] for r in rows])),
        "training_seconds": training_seconds,
        "platforms": rows,
    }


if __name__ == "__main__":
    main()
