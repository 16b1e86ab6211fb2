"""Why validation HR@10 exceeds test HR@10: the held-out items' timestamps, split by user.

``python benchmarks/heldout_gap.py --out DIR [--train] [CONFIG FLAGS]``

Leave-last-out holds out each user's latest interaction for test and the one before it for
validation. When both share a timestamp (MovieLens stores seconds, and many users rate several
movies in the same second) the order between them is the file's, so validation and test are
exchangeable; when the test item is later, the model, trained on neither, must reach further
into the user's future. This script splits the users into those two groups (*tied* and
*later*) and prints, for each group, the sampled HR@10 on validation and on test of:

* popularity (the platform's training counts), which needs no training;
* with ``--train``, a centralized model trained exactly as ``crossfed run --mode centralized
  --out DIR CONFIG FLAGS`` trains it (the same code; its ``summary.json`` is that run's), and
  ranked at its selected epoch on validation as well as on test, user by user.

It also checks the candidate lists: whether each user's validation and test negatives are the
same items, and whether either held-out item is among the other stage's negatives. The figures
and their provenance go to ``DIR/heldout_gap.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import provenance

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import LeaveLastOutSplit, PlatformData, leave_last_out
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.evaluation.candidates import candidate_lists
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.trainer import rank_on_split
from crossfed.shared.training.seeds import evaluation_seed
from crossfed.simulations import baselines
from crossfed.simulations.commands.run import add_config_flags
from crossfed.simulations.runner import configure_logging, run_mode

#: The centralized model's per-user validation outcome at its selected epoch, beside the run's test file.
VALIDATION_FILE = "validation_per_user.npz"
GROUPS = ("tied", "later", "all")


class _ValidatingEvaluator(baselines._PooledEvaluator):
    """The centralized run's view of a platform that also keeps each user's validation hit.

    ``run_centralized`` restores the selected epoch's model before it tests, so the validation
    ranked here is the one early stopping selected on.
    """

    def test(self) -> tuple[Any, Any]:
        results = self._evaluate("validation", full=False)
        directory = platform_dir(self.config.experiment.run_dir, self.data.platform)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / VALIDATION_FILE, users=results.users, hit_sampled=results.hits["sampled"])
        return super().test()


def timing_groups(data: PlatformData) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out user: whether test and validation share a timestamp, and the test item's lag in seconds."""
    interactions = data.interactions
    n = len(interactions)
    order = np.lexsort((np.arange(n), interactions.timestamps, interactions.users))
    counts = np.bincount(interactions.users[order], minlength=interactions.num_users)
    ends = np.cumsum(counts)[counts >= 3]
    test_time = interactions.timestamps[order[ends - 1]]
    validation_time = interactions.timestamps[order[ends - 2]]
    return test_time == validation_time, test_time - validation_time


def candidate_checks(data: PlatformData, split: LeaveLastOutSplit, config: RunConfig) -> dict[str, float]:
    """Shares of users whose two stages rank the same negatives, or the other stage's held-out item."""
    seed = evaluation_seed(config.experiment, data.platform)
    count = config.evaluation.eval_negatives
    validation = candidate_lists(split, data.interactions, "validation", count, seed)
    test = candidate_lists(split, data.interactions, "test", count, seed)
    same = [set(v[1:]) == set(t[1:]) for v, t in zip(validation, test)]
    validation_in_test = [v[0] in set(t[1:]) for v, t in zip(validation, test)]
    test_in_validation = [t[0] in set(v[1:]) for v, t in zip(validation, test)]
    return {
        "same_negatives": float(np.mean(same)),
        "validation_item_among_test_negatives": float(np.mean(validation_in_test)),
        "test_item_among_validation_negatives": float(np.mean(test_in_validation)),
    }


def popularity_hits(data: PlatformData, split: LeaveLastOutSplit, config: RunConfig) -> dict[str, np.ndarray]:
    """Per-user sampled hits of ranking by the platform's training counts, on both stages."""
    counts = torch.as_tensor(np.bincount(split.train.items, minlength=data.num_items).astype(np.float32))

    def score(users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        return counts.expand(len(users), -1) if items is None else counts[items]

    return {
        stage: rank_on_split(score, data, split, config, stage, full=False).hits["sampled"]
        for stage in ("validation", "test")
    }


def model_hits(run_dir: Path, platform: int, users: np.ndarray) -> dict[str, np.ndarray]:
    """The trained model's per-user sampled hits on both stages, read from the run folder."""
    directory = platform_dir(str(run_dir), platform)
    hits = {}
    for stage, name in (("validation", VALIDATION_FILE), ("test", "test_per_user.npz")):
        with np.load(directory / name, allow_pickle=False) as stored:
            if not np.array_equal(stored["users"], users):
                raise SystemExit(f"{directory / name} ranks other users than this split holds")
            hits[stage] = stored["hit_sampled"]
    return hits


def by_group(hits: dict[str, np.ndarray], tied: np.ndarray) -> dict[str, dict[str, float]]:
    masks = {"tied": tied, "later": ~tied, "all": np.ones_like(tied)}
    return {
        group: {"users": int(mask.sum()), **{stage: float(h[mask].mean()) for stage, h in hits.items()}}
        for group, mask in masks.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder (with --train it must not exist yet)")
    parser.add_argument("--train", action="store_true", help="train the centralized model into --out first")
    add_config_flags(parser)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    origin = provenance()  # before training: the commit and load the run started with
    overrides = {k: v for k, v in vars(args).items() if v is not None and k not in {"out", "train"}}
    config = RunConfig.from_mapping(overrides).replace(run_dir=str(out))
    if args.train:
        if out.exists() and any(out.iterdir()):
            raise SystemExit(f"{out} is not empty")
        configure_logging(quiet=False)
        baselines._PooledEvaluator = _ValidatingEvaluator  # type: ignore[misc]
        summary = run_mode("centralized", config)
        test_hr = summary["metrics"]["sampled"]["hr@10"]
        print(f"centralized: selected epoch {summary['selected_round']}, test HR@10 {test_hr:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    tied_all, lag_all, checks = [], [], []
    hits_all: dict[str, dict[str, list[np.ndarray]]] = {"popularity": {}, "model": {}}
    for data in all_platforms(config):
        split = leave_last_out(data.interactions)
        tied, lag = timing_groups(data)
        tied_all.append(tied)
        lag_all.append(lag)
        checks.append(candidate_checks(data, split, config))
        sources = {"popularity": popularity_hits(data, split, config)}
        if (platform_dir(str(out), data.platform) / VALIDATION_FILE).exists():
            sources["model"] = model_hits(out, data.platform, np.flatnonzero(split.test_items >= 0))
        for source, hits in sources.items():
            for stage, h in hits.items():
                hits_all[source].setdefault(stage, []).append(h)
    tied = np.concatenate(tied_all)
    lag = np.concatenate(lag_all)
    result: dict[str, Any] = {
        "provenance": origin,
        "config": dict(overrides),
        "held_out_users": len(tied),
        "tied_share": float(tied.mean()),
        "test_later_by_more_than_a_day": float((lag > 86_400).mean()),
        "test_later_by_more_than_30_days": float((lag > 30 * 86_400).mean()),
        "candidates": {k: float(np.mean([c[k] for c in checks])) for k in checks[0]},
        "hr@10": {
            source: by_group({stage: np.concatenate(parts) for stage, parts in stages.items()}, tied)
            for source, stages in hits_all.items()
            if stages
        },
    }
    (out / "heldout_gap.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['held_out_users']} held-out users; "
        f"test and validation at the same second: {result['tied_share']:.1%}; "
        f"test later by > 1 day: {result['test_later_by_more_than_a_day']:.1%}, "
        f"> 30 days: {result['test_later_by_more_than_30_days']:.1%}"
    )
    print("candidate lists: " + ", ".join(f"{k} {v:.1%}" for k, v in result["candidates"].items()))
    print(f"{'source':<11} {'group':<6} {'users':>6} {'val HR@10':>10} {'test HR@10':>11} {'val - test':>11}")
    for source, groups in result["hr@10"].items():
        for group in GROUPS:
            g = groups[group]
            print(
                f"{source:<11} {group:<6} {g['users']:>6} {g['validation']:>10.4f} {g['test']:>11.4f} "
                f"{g['validation'] - g['test']:>+11.4f}"
            )


if __name__ == "__main__":
    sys.exit(main())
