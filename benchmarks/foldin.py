"""Fold-in against cold start for users held out of training.

``python benchmarks/foldin.py [--held-out 200] [--epochs 5] [--seeds 0 1 2] [--out FILE]``

MovieLens-100K exported to the contract's CSV files; ``--held-out`` users are left out of the
platform's files entirely, one platform is trained alone on the rest. For each held-out user
the latest interaction is the target; the platform then ranks the whole catalog for them
(HR@10 and NDCG@10, the target among all 1,682 items):

* **cold start**: what the user gets with no history (popularity among platform users with the
  same age quartile, gender and occupation), as served by ``recommend``;
* **fold-in**: after folding in every earlier interaction of the user (shared parameters
  frozen), the model's top-10 unseen items, as served by ``recommend``;
* for reference, popularity with the user's history removed (what knowing the history buys
  without any model).

The figures, with the date, commit and machine, are written as JSON to ``--out`` (default
under ``runs/``, which git ignores).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from provenance import markdown, provenance

from crossfed.client.serving.cold_start import find_segment, popularity_scores
from crossfed.client.serving.service import RecommendationService
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.platform_files import load_operator_data
from crossfed.shared.evaluation.ranking import hit_rate, ndcg
from crossfed.simulations.operator_demo import demo_config, export_movielens, train_platform


def rank_of(item: str, ranked: list[str]) -> int:
    return ranked.index(item) if item in ranked else len(ranked) + 1_000_000


def one_seed(data_dir: str | None, held_out: int, epochs: int, seed: int, k: int = 10) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="crossfed-foldin-") as root:
        work = Path(root)
        exported = export_movielens(data_dir, work / "data", hold_out_users=held_out, seed=seed)
        catalog = load_catalog(exported.catalog)
        platform = load_operator_data(exported.interactions, catalog, users=exported.users)
        config = demo_config(catalog, seed=seed)
        train_platform(platform, config, work / "run", work / "state", epochs)
        service = RecommendationService.open(platform, work / "run", work / "state")
        ordered = exported.held_out.sort_values(["user_id", "timestamp"], kind="stable")
        histories, targets, features = {}, {}, {}
        for user, rows in ordered.groupby("user_id"):
            histories[user] = platform.item_codes(rows["item_id"].to_numpy())[:-1]
            targets[user] = str(rows["item_id"].iloc[-1])
            features[user] = {c: str(rows.iloc[0][c]) for c in ("age", "gender", "occupation")}
        ranks: dict[str, list[int]] = {"cold start": [], "fold-in": [], "popularity minus history": []}
        for user in histories:
            ranks["cold start"].append(
                rank_of(targets[user], [r.item_id for r in service.recommend(user, k, features[user])])
            )
            scores = popularity_scores(platform.data.interactions, find_segment(platform.attributes, features[user]))
            scores[histories[user]] = -np.inf
            top = [str(platform.item_ids[i]) for i in np.argsort(-scores, kind="stable")[:k]]
            ranks["popularity minus history"].append(rank_of(targets[user], top))
        started = time.perf_counter()
        service.fold_in(histories, features, save=False)
        fold_seconds = time.perf_counter() - started
        for user in histories:
            ranks["fold-in"].append(rank_of(targets[user], [r.item_id for r in service.recommend(user, k)]))
    out = {
        name: {"hr@10": float(hit_rate(np.array(r), k).mean()), "ndcg@10": float(ndcg(np.array(r), k).mean())}
        for name, r in ranks.items()
    }
    out["fold-in"]["seconds"] = fold_seconds
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/foldin.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("CROSSFED_DATA_DIR"))
    p.add_argument("--held-out", type=int, default=200)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/benchmarks/foldin.json", help="JSON file of the figures")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = {seed: one_seed(args.data_dir, args.held_out, args.epochs, seed) for seed in args.seeds}
    block = provenance()
    print(markdown(block))
    print(
        f"{args.held_out} held-out users per seed, platform trained {args.epochs} epochs on the others, "
        f"seeds {args.seeds}; the target is each held-out user's latest item among all 1,682 items"
    )
    print("| list | HR@10 | NDCG@10 | per seed HR@10 |")
    print("|---|---|---|---|")
    for name in ("cold start", "popularity minus history", "fold-in"):
        hrs = [results[s][name]["hr@10"] for s in args.seeds]
        ndcgs = [results[s][name]["ndcg@10"] for s in args.seeds]
        print(f"| {name} | {np.mean(hrs):.4f} | {np.mean(ndcgs):.4f} | {', '.join(f'{h:.3f}' for h in hrs)} |")
    seconds = [results[s]["fold-in"]["seconds"] for s in args.seeds]
    print(f"fold-in of {args.held_out} users at once: {np.mean(seconds):.2f} s (mean over seeds)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"provenance": block, **{str(s): r for s, r in results.items()}}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
