"""Privacy-utility benchmark: user-level DP federated runs over an epsilon grid.

    python -m simulations.privacy_utility --epsilons 1 2 4 8 16 inf --out runs/privacy-utility [run flags]

Next to the DP runs it runs (or reuses) local-only and non-private federated references
with the same seed. Each cell is a ``python -m simulations run`` process, skipped when its
``summary.json`` exists. Prints a table, writes ``privacy_utility.md``/``.json`` and, with
matplotlib installed (``pip install -e '.[plots]'``), ``privacy_utility.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from shared.results import platform_dir
from shared.stats import paired_bootstrap

K = 10


def cell_command(out: Path, name: str, mode: str, seed: int, extra: list[str], epsilon: float | None) -> list[str]:
    """One ``python -m simulations run``; ``epsilon`` None is a non-private reference."""
    command = [sys.executable, "-m", "simulations", "run", "--mode", mode, "--seed", str(seed),
               "--out", str(out / name), "--quiet", *extra]
    if epsilon is not None:  # inf runs the same DP procedure (sampling, clipping) without noise
        command += ["--privacy-unit", "user", "--epsilon", str(epsilon)]
    return command


def run(out: Path, epsilons: list[float], seed: int, dp_flags: list[str], common: list[str]) -> None:
    cells = [("local-only", "local-only", None, common), ("federated-nonprivate", "federated", None, common)]
    cells += [(f"federated-eps{eps:g}", "federated", eps, common + dp_flags) for eps in epsilons]
    for name, mode, epsilon, flags in cells:
        if (out / name / "summary.json").exists():
            print(f"[skip] {name}", flush=True)
            continue
        print(f"[run ] {name}", flush=True)
        shutil.rmtree(out / name, ignore_errors=True)  # an interrupted cell starts over
        subprocess.run(cell_command(out, name, mode, seed, flags, epsilon), check=True)


def analyse(out: Path, epsilons: list[float]) -> dict[str, Any]:
    def load(name: str) -> dict[str, Any]:
        return json.loads((out / name / "summary.json").read_text())

    local, plain = load("local-only"), load("federated-nonprivate")
    rows = []
    for eps in epsilons:
        name = f"federated-eps{eps:g}"
        summary = load(name)
        gains = []
        worse = []
        for entry in summary["per_platform"]:
            platform = entry["platform"]
            served = _hits(out / name, platform)
            reference = _hits(out / "local-only", platform)
            interval = paired_bootstrap(served - reference, seed=platform)
            gains.append(interval.mean)
            if interval.significantly_negative:
                worse.append(platform)
        spent = summary.get("privacy", {}).get("epsilon", {})
        rows.append({
            "epsilon": eps,
            "epsilon_spent_max": max(float(v) for v in spent.values()) if spent else math.inf,
            "served_hr": summary["metrics"]["sampled"][f"hr@{K}"],
            "served_ndcg": summary["metrics"]["sampled"][f"ndcg@{K}"],
            "global_hr": summary["global_metrics"]["sampled"][f"hr@{K}"],
            "global_ndcg": summary["global_metrics"]["sampled"][f"ndcg@{K}"],
            "served_full_hr": summary["metrics"]["full"][f"hr@{K}"],
            "mean_gain_over_local": float(np.mean(gains)),
            "platforms_significantly_worse": worse,
            "wall_seconds": summary["wall_seconds"],
        })
    plain_gain = float(np.mean([
        (_hits(out / "federated-nonprivate", e["platform"]) - _hits(out / "local-only", e["platform"])).mean()
        for e in plain["per_platform"]
    ]))
    finite = [eps for eps in epsilons if math.isfinite(eps)]
    return {
        "delta": load(f"federated-eps{finite[0]:g}")["privacy"]["delta"] if finite else None,
        "local_only_hr": local["metrics"]["sampled"][f"hr@{K}"],
        "nonprivate_federated_hr": plain["metrics"]["sampled"][f"hr@{K}"],
        "nonprivate_gain": plain_gain,
        "rows": rows,
    }


def _hits(run_dir: Path, platform: int) -> np.ndarray:
    return np.load(platform_dir(run_dir, platform) / "test_per_user.npz")["hit_sampled"]


def render(report: dict[str, Any]) -> str:
    lines = [f"User-level DP, delta = {report['delta']}; references: local-only HR@10 {report['local_only_hr']:.4f}, "
             f"non-private federated {report['nonprivate_federated_hr']:.4f} "
             f"(mean gain over local-only {report['nonprivate_gain']:+.4f}).", "",
             "| ε | ε spent (max) | served HR@10 | served NDCG@10 | global HR@10 | global NDCG@10 | "
             "gain over local-only | platforms sig. worse | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['epsilon']:g} | {r['epsilon_spent_max']:.3f} | {r['served_hr']:.4f} | {r['served_ndcg']:.4f} | "
                     f"{r['global_hr']:.4f} | {r['global_ndcg']:.4f} | {r['mean_gain_over_local']:+.4f} | "
                     f"{r['platforms_significantly_worse'] or 'none'} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in report["rows"] if math.isfinite(r["epsilon"])]
    xs = [r["epsilon"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [r["served_hr"] for r in rows], "o-", label="federated + DP, served (stacked private copy)")
    ax.plot(xs, [r["global_hr"] for r in rows], "s--", label="federated + DP, global model")
    ax.axhline(report["nonprivate_federated_hr"], color="green", linestyle=":", label="federated, non-private")
    ax.axhline(report["local_only_hr"], color="red", linestyle=":", label="local-only")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ε per platform (user level, whole run)")
    ax.set_ylabel("sampled HR@10 (test)")
    ax.set_title("crossfed on MovieLens-100K, 5 natural platforms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.privacy_utility", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1, 2, 4, 8, 16, math.inf])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/privacy-utility")
    parser.add_argument("--dp-flags", default="", help="extra run flags for the DP cells only, quoted")
    parser.add_argument("--analyse-only", action="store_true")
    args, common = parser.parse_known_args(argv)
    out = Path(args.out)
    if not args.analyse_only:
        run(out, args.epsilons, args.seed, args.dp_flags.split(), common)
    report = analyse(out, args.epsilons)
    (out / "privacy_utility.json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report)
    (out / "privacy_utility.md").write_text(text + "\n")
    print(text)
    if plot(report, out / "privacy_utility.png"):
        print(f"figure: {out / 'privacy_utility.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
