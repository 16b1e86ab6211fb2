"""Early stopping replayed on recorded validation curves: which patience to default to, and time to quality.

``python benchmarks/early_stopping.py HISTORY.csv [HISTORY.csv ...] [--patience 1,2,3,4,5,6,8,10] [--chosen 5]``

Each ``HISTORY.csv`` is a sweep's per-round table (``crossfed sweep`` writes it; ``docs/results/*/history.csv``
are recorded ones). Stopping never changes a trajectory, only where it ends, so the rule
(``crossfed.shared.training.early_stopping``, the code every mode runs) can be replayed on curves trained
with the whole budget. Prints, for every non-private curve and every patience, the round selected / the
round it stops at / how far the selected validation HR@10 falls below the curve's best. Then, for every
seed with both a federated and a centralized arm, issue 16's time to quality at the ``--chosen`` patience:
the training-clock seconds federated needs to reach centralized's selected validation HR@10, over the
seconds centralized needed to reach it (and over centralized's time until it stopped, which it needs to
know that round was its best). It writes nothing.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from provenance import markdown, provenance

from crossfed.shared.training.early_stopping import EarlyStopping

#: One round of a curve: round, validation HR@10 (sampled), training-clock seconds.
Point = tuple[int, float, float]


def read_curves(paths: list[Path]) -> dict[tuple[str, str, str, str], list[Point]]:
    """Non-private curves by (file's folder, arm, mode, seed)."""
    curves: dict[tuple[str, str, str, str], list[Point]] = defaultdict(list)
    for path in paths:
        with path.open() as stream:
            for row in csv.DictReader(stream):
                if row.get("privacy_unit", "none") != "none":
                    continue
                key = (path.parent.name, row["arm"], row["mode"], row["seed"])
                curves[key].append((int(row["round"]), float(row["val_sampled_hr"]), float(row["elapsed_seconds"])))
    return {key: sorted(points) for key, points in curves.items()}


def replay(points: list[Point], patience: int) -> EarlyStopping:
    """The rule's state when it stops on ``points`` (or at their end)."""
    stopping = EarlyStopping(patience)
    for server_round, score, _seconds in points:
        stopping.report(server_round, score)
        if stopping.should_stop:
            break
    return stopping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", nargs="+", type=Path)
    parser.add_argument("--patience", default="1,2,3,4,5,6,8,10", help="patience values to replay")
    parser.add_argument("--chosen", type=int, default=5, help="patience of the time-to-quality table")
    args = parser.parse_args(argv)
    patiences = [int(value) for value in args.patience.split(",")]
    curves = read_curves(args.history)
    print(markdown(provenance()))
    print("\n| curve | rounds | best val HR@10 (round) | " + " | ".join(f"patience {p}" for p in patiences) + " |")
    print("|---|---|---|" + "---|" * len(patiences))
    for key, points in sorted(curves.items()):
        best = max(score for _, score, _ in points)
        best_round = next(r for r, score, _ in points if score == best)
        cells = []
        for patience in patiences:
            stopping = replay(points, patience)
            cells.append(f"{stopping.best_round} / {stopping.last_round} (−{best - stopping.best_score:.3f})")
        print(f"| {' '.join(key)} | {len(points)} | {best:.4f} ({best_round}) | " + " | ".join(cells) + " |")

    print(f"\nTime to quality at patience {args.chosen} (training clock):\n")
    print(
        "| folder | seed | federated arm | centralized arm | target: centralized's selected val HR@10 (epoch) "
        "| centralized s to it / to its stop | federated reaches it | ratio to centralized's selected / stop |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (folder, central_arm, mode, seed), central in sorted(curves.items()):
        if mode != "centralized":
            continue
        chosen = replay(central, args.chosen)
        to_best, to_stop = central[chosen.best_round - 1][2], central[chosen.last_round - 1][2]
        for (other_folder, federated_arm, other_mode, other_seed), federated in sorted(curves.items()):
            if (other_folder, other_mode, other_seed) != (folder, "federated", seed):
                continue
            hit = next(((r, s) for r, score, s in federated if score >= chosen.best_score), None)
            reached = f"round {hit[0]}, {hit[1]:.1f} s" if hit else f"never (best {max(p[1] for p in federated):.4f})"
            ratio = f"{hit[1] / to_best:.2f} / {hit[1] / to_stop:.2f}" if hit else "-"
            target = f"{chosen.best_score:.4f} ({chosen.best_round})"
            print(
                f"| {folder} | {seed} | {federated_arm} | {central_arm} | {target} "
                f"| {to_best:.1f} / {to_stop:.1f} | {reached} | {ratio} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
