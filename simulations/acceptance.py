"""Issue-2 acceptance benchmark: federated vs centralized vs local-only, several seeds.

    python -m crossfed.simulations.acceptance --seeds 0 1 2 --out runs/acceptance

Each (mode, seed) cell runs as its own ``python -m simulations run`` process and is
skipped when its ``summary.json`` already exists, so an interrupted benchmark resumes.
Prints the comparison with paired-bootstrap intervals per platform and writes
``acceptance.json`` and ``acceptance.md`` to the output folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from crossfed.shared.evaluation.per_user_results import PerUserResults
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.evaluation.stats import paired_bootstrap

MODES = ("federated", "centralized", "local-only")
K = 10


def run_cells(out: Path, seeds: list[int], extra: list[str]) -> None:
    for seed in seeds:
        for mode in MODES:
            cell = out / f"{mode}-seed{seed}"
            if (cell / "summary.json").exists():
                print(f"[skip] {cell.name}: already finished", flush=True)
                continue
            print(f"[run ] {cell.name}", flush=True)
            shutil.rmtree(cell, ignore_errors=True)  # an interrupted cell starts over
            command = [sys.executable, "-m", "crossfed.simulations", "run", "--mode", mode, "--seed", str(seed),
                       "--out", str(cell), "--quiet", *extra]
            subprocess.run(command, check=True)


def analyse(out: Path, seeds: list[int]) -> dict[str, Any]:
    summaries = {
        (mode, seed): json.loads((out / f"{mode}-seed{seed}" / "summary.json").read_text())
        for mode in MODES for seed in seeds
    }
    means = {
        mode: {
            protocol: {
                metric: float(np.mean([summaries[mode, s]["metrics"][protocol][f"{metric}@{K}"] for s in seeds]))
                for metric in ("hr", "ndcg")
            }
            for protocol in ("sampled", "full")
        }
        for mode in MODES
    }
    spread = {
        mode: float(np.std([summaries[mode, s]["metrics"]["sampled"][f"hr@{K}"] for s in seeds])) for mode in MODES
    }
    wall = {mode: float(np.mean([summaries[mode, s]["wall_seconds"] for s in seeds])) for mode in MODES}
    platforms = [entry["platform"] for entry in summaries["federated", seeds[0]]["per_platform"]]
    per_platform = []
    for platform in platforms:
        hits = {mode: _mean_hits(out, mode, seeds, platform) for mode in ("federated", "local-only")}
        interval = paired_bootstrap(hits["federated"] - hits["local-only"], seed=platform)
        per_platform.append({
            "platform": platform,
            "users": int(len(hits["federated"])),
            "federated_hr": float(hits["federated"].mean()),
            "local_only_hr": float(hits["local-only"].mean()),
            "gain": interval.mean,
            "ci95": [interval.low, interval.high],
            "significantly_worse": interval.significantly_negative,
        })
    mean_gain = float(np.mean([p["gain"] for p in per_platform]))
    federated_hr, centralized_hr = means["federated"]["sampled"]["hr"], means["centralized"]["sampled"]["hr"]
    checks = {
        "federated >= 0.97 x centralized (sampled HR@10)": federated_hr >= 0.97 * centralized_hr,
        "federated >= 0.64 (sampled HR@10)": federated_hr >= 0.64,
        "mean gain over local-only >= 0.03": mean_gain >= 0.03,
        "significantly worse than local-only on no platform": not any(p["significantly_worse"] for p in per_platform),
        "federated run under 10 minutes": wall["federated"] < 600,
    }
    return {"seeds": seeds, "means": means, "sampled_hr_std": spread, "wall_seconds": wall,
            "per_platform": per_platform, "mean_gain": mean_gain,
            "federated_over_centralized": federated_hr / centralized_hr, "checks": checks}


def _mean_hits(out: Path, mode: str, seeds: list[int], platform: int) -> np.ndarray:
    """Each test user's sampled hit, averaged over seeds (same users in every seed and mode)."""
    runs = []
    for seed in seeds:
        directory = platform_dir(out / f"{mode}-seed{seed}", platform)
        results = PerUserResults.load(directory)
        if results is None:
            raise RuntimeError(f"{directory}: no {PerUserResults.FILE_NAME}; "
                               f"was the {mode} run with seed {seed} tested?")
        runs.append(results)
    for run in runs[1:]:
        if not np.array_equal(run.users, runs[0].users):
            raise RuntimeError(f"platform {platform}: test users differ between seeds; pairing is impossible")
    return np.mean([run.hits["sampled"] for run in runs], axis=0)


def render(report: dict[str, Any]) -> str:
    lines = [f"Mean over seeds {report['seeds']} (test set; sampled = 1 held-out + 99 negatives).", "",
             "| mode | sampled HR@10 | sampled NDCG@10 | full HR@10 | full NDCG@10 | wall s |",
             "|---|---|---|---|---|---|"]
    for mode, m in report["means"].items():
        lines.append(f"| {mode} | {m['sampled']['hr']:.4f} ± {report['sampled_hr_std'][mode]:.4f} | "
                     f"{m['sampled']['ndcg']:.4f} | {m['full']['hr']:.4f} | {m['full']['ndcg']:.4f} | "
                     f"{report['wall_seconds'][mode]:.0f} |")
    lines += ["", "| platform | test users | federated HR@10 | local-only HR@10 | gain | 95 % CI (paired bootstrap) |",
              "|---|---|---|---|---|---|"]
    for p in report["per_platform"]:
        lines.append(f"| {p['platform']} | {p['users']} | {p['federated_hr']:.4f} | {p['local_only_hr']:.4f} | "
                     f"{p['gain']:+.4f} | [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}] |")
    lines += ["", (f"Mean gain over platforms: {report['mean_gain']:+.4f}; federated / centralized = "
              f"{report['federated_over_centralized']:.3f}."), ""]
    lines += [f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in report["checks"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossfed.simulations.acceptance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/acceptance")
    parser.add_argument("--analyse-only", action="store_true")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    if not args.analyse_only:
        run_cells(out, args.seeds, extra)
    report = analyse(out, args.seeds)
    (out / "acceptance.json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report)
    (out / "acceptance.md").write_text(text + "\n")
    print(text)
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
