"""The scale curve of issue 13: gain over local-only against users per platform, at epsilon = 8 and inf.

``python benchmarks/scale_curve.py RESULT.json [RESULT.json ...] [--epsilon 8]
[--federated ml-1m:5=0.6765 ...] [--figure FILE]``

Reads the JSON files of ``benchmarks/dp_item_subspace.py --mechanism gram`` (one per dataset and
platform count, each holding the epsilon = inf cell and one cell per noise draw at ``--epsilon``)
and prints, per dataset and platform count: the users per platform, local-only's test HR@10, the
gain of the served model (local-only + w x the Gram subspace) over local-only without noise and
in every noise draw at ``--epsilon``, the share of the noiseless gain the private one keeps, and
which platforms are significantly better or worse than local-only (paired bootstrap, 95 %, as the
benchmark measured it). ``--federated DATASET:PLATFORMS=HR`` adds non-private federated NeuMF's
test HR@10 for that cell, where it was measured. Then per platform: its users, its local-only
HR@10 and each gain with its mark (``+`` significantly better, ``-`` significantly worse, ``=``
neither). ``--figure`` draws the curve (mean gain per platform count, against mean users per
platform) beside every platform's own point.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Curve:
    """One dataset split into one number of platforms: the noiseless cell and the private draws."""

    dataset: str
    platforms: int
    attribute: str
    noiseless: dict[str, Any]
    private: list[dict[str, Any]]
    federated: float | None

    @property
    def users(self) -> list[int]:
        return [row["users"] for row in self.noiseless["platforms"]]

    @property
    def local_only(self) -> float:
        return float(self.noiseless["local_only"])

    @property
    def noiseless_gain(self) -> float:
        return gain(self.noiseless)

    @property
    def private_gains(self) -> list[float]:
        return [gain(cell) for cell in self.private]


def gain(cell: dict[str, Any]) -> float:
    """Served minus local-only test HR@10, the mean over the cell's platforms."""
    return float(cell["served"]) - float(cell["local_only"])


def mark(row: dict[str, Any]) -> str:
    """``+`` if the platform's served model is significantly better than local-only, ``-`` if worse."""
    _, low, high = row["difference"]
    return "+" if low > 0 else "-" if high < 0 else "="


def curves(paths: Sequence[Path], epsilon: float, federated: dict[tuple[str, int], float]) -> list[Curve]:
    """One :class:`Curve` per dataset and platform count found in ``paths``, fewest users last."""
    cells = [cell for path in paths for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]]
    keys = sorted({(c["dataset"], c["platform_count"], c["partition_attribute"]) for c in cells})
    found = []
    for key in keys:
        dataset, platforms, attribute = key
        mine = [c for c in cells if (c["dataset"], c["platform_count"], c["partition_attribute"]) == key]
        noiseless = [c for c in mine if math.isinf(c["epsilon"])]
        private = sorted((c for c in mine if c["epsilon"] == epsilon), key=lambda c: c["noise_seed"] or 0)
        if len(noiseless) != 1 or not private:
            raise SystemExit(f"{dataset} at {platforms} platforms: need one epsilon = inf cell and draws at {epsilon}")
        found.append(Curve(dataset, platforms, attribute, noiseless[0], private, federated.get((dataset, platforms))))
    return sorted(found, key=lambda c: (c.dataset, -statistics.mean(c.users)))


def summary_table(found: Sequence[Curve], epsilon: float) -> str:
    """One row per dataset and platform count."""
    lines = [
        f"| dataset | platforms (split by) | users per platform (min / median / max) | local-only | "
        f"gain, ε = inf | gain, ε = {epsilon:g}: each draw | mean | kept of ε = inf | "
        f"sig. better / worse, ε = inf | sig. better / worse, ε = {epsilon:g} (each draw) | federated NeuMF gain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in found:
        users = c.users
        draws = ", ".join(f"{g:+.4f}" for g in c.private_gains)
        mean = statistics.mean(c.private_gains)
        kept = f"{mean / c.noiseless_gain:.0%}" if c.noiseless_gain > 0 else "-"
        fed = "-" if c.federated is None else f"{c.federated - c.local_only:+.4f}"
        lines.append(
            f"| {c.dataset} | {c.platforms} ({c.attribute}) | {min(users):,} / {statistics.median(users):,.0f} / "
            f"{max(users):,} | {c.local_only:.4f} | {c.noiseless_gain:+.4f} | {draws} | {mean:+.4f} | {kept} | "
            f"{_count(c.noiseless, '+')} / {_count(c.noiseless, '-')} | "
            + "; ".join(f"{_count(cell, '+')} / {_count(cell, '-')}" for cell in c.private)
            + f" | {fed} |"
        )
    return "\n".join(lines)


def _count(cell: dict[str, Any], sign: str) -> int:
    return sum(mark(row) == sign for row in cell["platforms"])


def platform_table(found: Sequence[Curve], epsilon: float) -> str:
    """One row per platform: its users, local-only, and each gain with its significance mark."""
    lines = [
        f"| dataset | platforms | platform | users | local-only | gain, ε = inf | gain, ε = {epsilon:g}: each draw |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in found:
        for index, row in enumerate(c.noiseless["platforms"]):
            draws = ", ".join(_signed(cell["platforms"][index]) for cell in c.private)
            lines.append(
                f"| {c.dataset} | {c.platforms} | {row['platform']} | {row['users']:,} | {row['local_only']:.4f} | "
                f"{_signed(row)} | {draws} |"
            )
    return "\n".join(lines)


def _signed(row: dict[str, Any]) -> str:
    return f"{row['served'] - row['local_only']:+.4f} {mark(row)}"


def figure(found: Sequence[Curve], epsilon: float, out: Path) -> None:
    """The curve per dataset (mean gain against mean users per platform) and every platform's point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvas, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    datasets = sorted({c.dataset for c in found})
    markers = dict(zip(datasets, "os^D"))
    for dataset in datasets:
        mine = sorted((c for c in found if c.dataset == dataset), key=lambda c: statistics.mean(c.users))
        users = [statistics.mean(c.users) for c in mine]
        marker = markers[dataset]
        left.plot(users, [c.noiseless_gain for c in mine], f"{marker}-", color="C0", label=f"{dataset}, ε = inf")
        means = [statistics.mean(c.private_gains) for c in mine]
        spread = [
            [m - min(c.private_gains) for m, c in zip(means, mine)],
            [max(c.private_gains) - m for m, c in zip(means, mine)],
        ]
        left.errorbar(
            users, means, yerr=spread, fmt=f"{marker}--", color="C1", capsize=3, label=f"{dataset}, ε = {epsilon:g}"
        )
        measured = [(u, c) for u, c in zip(users, mine) if c.federated is not None]
        if measured:
            left.scatter(
                [u for u, _ in measured],
                [c.federated - c.local_only for _, c in measured],
                marker="*",
                s=120,
                color="C2",
                zorder=3,
                label=f"{dataset}, federated NeuMF",
            )
        for u, c in zip(users, mine):
            left.annotate(f"{c.platforms}p", (u, c.noiseless_gain), textcoords="offset points", xytext=(4, 4))
        for color, label, cells in (("C0", "ε = inf", _noiseless), ("C1", f"ε = {epsilon:g}", _draws)):
            points = [
                (row["users"], statistics.mean(cell["platforms"][i]["served"] - row["local_only"] for cell in cells(c)))
                for c in mine
                for i, row in enumerate(c.noiseless["platforms"])
            ]
            right.scatter(
                [u for u, _ in points],
                [g for _, g in points],
                marker=marker,
                color=color,
                alpha=0.6,
                label=f"{dataset}, {label}",
            )
    for axes in (left, right):
        axes.axhline(0, color="0.5", linewidth=0.8)
        axes.set_xscale("log")
        axes.legend(fontsize=7)
    left.set_xlabel("users per platform (mean over the platforms of one split)")
    left.set_ylabel("served − local-only, test HR@10 (mean over platforms)")
    left.set_title(f"the curve (ε = {epsilon:g}: mean and range of the draws)", fontsize=9)
    right.set_xlabel("users on the platform")
    right.set_ylabel("served − local-only, test HR@10")
    right.set_title(f"every platform (ε = {epsilon:g}: mean of the draws)", fontsize=9)
    canvas.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(out, dpi=110)


def _noiseless(c: Curve) -> list[dict[str, Any]]:
    return [c.noiseless]


def _draws(c: Curve) -> list[dict[str, Any]]:
    return c.private


def _federated(values: Sequence[str]) -> dict[tuple[str, int], float]:
    parsed = {}
    for value in values:
        key, _, hr = value.partition("=")
        dataset, _, platforms = key.partition(":")
        parsed[(dataset, int(platforms))] = float(hr)
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--federated", nargs="*", default=[], help="DATASET:PLATFORMS=HR, non-private federated")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    found = curves(args.results, args.epsilon, _federated(args.federated))
    print(summary_table(found, args.epsilon))
    print()
    print(platform_table(found, args.epsilon))
    if args.figure is not None:
        figure(found, args.epsilon, args.figure)
        print(f"\nwrote {args.figure}")


if __name__ == "__main__":
    main()
