"""``crossfed run``: one experiment in any mode (federated, centralized, local-only, popularity), written to the
results contract.

``--dataset`` names a built-in (``ml-100k``, ``ml-1m``) or any folder in the data contract; ``--operator-data``
gives each platform its own files instead. Every run-config key of ``[tool.flwr.app.config]`` is a
flag (``--learning-rate`` for ``learning-rate``); a key the chosen mode cannot honour is refused.
The run folder (``--out``) holds ``summary.json``, the checkpoint and
each platform's files; a new run refuses a folder that is not empty, ``--resume``
continues the federated run whose checkpoint it holds. Prints the test metrics per platform.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crossfed.shared.cli import Command
from crossfed.shared.config import (
    ACCOUNTANTS,
    MODES,
    NOISE_MODES,
    PARTITION_SCHEMES,
    PRIVACY_UNITS,
    SERVE_MODELS,
    SERVER_OPTIMIZERS,
    RunConfig,
)
from crossfed.shared.errors import UsageError

#: Short aliases of some keys' flags.
_ALIASES = {"num-platforms": "--platforms", "num-server-rounds": "--rounds", "dirichlet-alpha": "--alpha"}
_CHOICES = {
    "partition": PARTITION_SCHEMES,
    "server-optimizer": SERVER_OPTIMIZERS,
    "privacy-unit": PRIVACY_UNITS,
    "accountant": ACCOUNTANTS,
    "noise-mode": NOISE_MODES,
    "serve-model": SERVE_MODELS,
}
#: Set by the command itself (``--out``, ``--resume``), not as plain keys.
_NOT_FLAGS = {"run-dir", "resume"}
#: Flags of the command itself; every other attribute of the parsed arguments is a config key.
_OWN_FLAGS = {"mode", "out", "quiet", "resume", "run", "command", "options"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, default="federated")
    parser.add_argument(
        "--out", help="run folder (default runs/<mode>-<dataset or folder name>-<partition>-<N>p-seed<S>)"
    )
    parser.add_argument("--resume", action="store_true", help="federated: continue from the run folder's checkpoint")
    parser.add_argument("--quiet", action="store_true", help="only the summary table")
    add_config_flags(parser)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``[tool.flwr.app.config]`` key, parsed and range-checked by :class:`RunConfig`."""
    documentation = RunConfig.documentation()
    for key, default in RunConfig().to_flat().items():
        if key in _NOT_FLAGS:
            continue
        names = [f"--{key}"] + ([_ALIASES[key]] if key in _ALIASES else [])
        # A bare boolean flag (``--secagg``) means true; ``--secagg false`` still works.
        boolean = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}
        meaning = f"{documentation[key]} (default {default!r})".replace("%", "%%")
        parser.add_argument(
            *names,
            dest=key,
            choices=_CHOICES.get(key),
            default=None,
            metavar=None if key in _CHOICES else key.split("-")[-1].upper(),
            help=meaning,
            **boolean,
        )


def run(args: argparse.Namespace) -> int:
    from crossfed.shared.data.datasets import BUILT_IN_DATASETS
    from crossfed.shared.data.loader import all_platforms
    from crossfed.simulations.runner import check_keys_for_mode, configure_logging, run_mode

    configure_logging(args.quiet)
    overrides = {key: value for key, value in vars(args).items() if value is not None and key not in _OWN_FLAGS}
    config = RunConfig.from_mapping(overrides)
    check_keys_for_mode(args.mode, overrides, config)
    if args.resume and args.mode != "federated":
        raise UsageError(f"--resume continues a federated run; mode {args.mode!r} has no checkpoint to resume")
    data = config.data
    source = "operator-data" if data.operator_data else Path(data.dataset).name
    out = Path(
        args.out or f"runs/{args.mode}-{source}-{data.partition}-{data.num_platforms}p-seed{config.experiment.seed}"
    )
    config = config.replace(
        run_dir=str(out.resolve()),
        data_dir=str(Path(data.data_dir).resolve()) if data.data_dir else "",
        dataset=data.dataset if data.dataset in BUILT_IN_DATASETS else str(Path(data.dataset).resolve()),
        resume=args.resume,
    )
    platforms = all_platforms(config)  # fail fast, before any worker starts
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise UsageError(
            f"run folder {out} is not empty: pass --resume to continue that run, "
            f"or another --out (a new run never inherits an old run's platform state)"
        )
    if not args.quiet:
        shape = "own files" if data.operator_data else config.data.partition
        rounds = "no training" if args.mode == "popularity" else f"{config.federation.num_server_rounds} rounds"
        print(
            f"{args.mode}: {source} ({sum(len(p.interactions) for p in platforms):,} interactions, "
            f"{sum(p.num_users for p in platforms)} platform users, {platforms[0].num_items} items) -> "
            f"{config.data.num_platforms} platforms ({shape}), {rounds}; "
            f"results in {out}",
            flush=True,
        )
    print_summary(run_mode(args.mode, config))
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    """The test metrics per platform and pooled, then privacy spent and where the results are."""
    k = summary["config"]["top-k"]
    rows = [("platform", "users", f"HR@{k}", f"NDCG@{k}", f"full HR@{k}", f"full NDCG@{k}")]
    for entry in summary["per_platform"] + [{"platform": "all", "users": "", "metrics": summary["metrics"]}]:
        if entry["platform"] == "all":
            entry["users"] = sum(e["users"] for e in summary["per_platform"])
        m = entry["metrics"]
        rows.append(
            (
                str(entry["platform"]),
                str(entry["users"]),
                f"{m['sampled'][f'hr@{k}']:.4f}",
                f"{m['sampled'][f'ndcg@{k}']:.4f}",
                f"{m['full'][f'hr@{k}']:.4f}",
                f"{m['full'][f'ndcg@{k}']:.4f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    data = summary.get("data", {})
    shape = "own files" if data.get("source") == "operator-data" else summary["partition"]
    print(
        f"\n{summary['mode']} | {summary['dataset']} | {shape} x {summary['platforms']} | "
        f"{summary['rounds']} rounds | seed {summary['seed']} | test set "
        f"(sampled = 1 + {summary['config']['eval-negatives']} negatives)"
    )
    if "split" in data:
        print(f"split: {data['split']}")
    for i, row in enumerate(rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
        if i == 0 or i == len(rows) - 2:
            print("  ".join("-" * width for width in widths))
    if summary.get("global_metrics") and summary["global_metrics"] != summary["metrics"]:
        g = summary["global_metrics"]["sampled"]
        served, alone = (
            ("each platform's own counts", "counts over all platforms")
            if summary["mode"] == "popularity"
            else ("each platform's private copy", "the global model alone")
        )
        print(f"served = {served}; {alone}: HR@{k} {g[f'hr@{k}']:.4f} NDCG@{k} {g[f'ndcg@{k}']:.4f}")
    if "privacy" in summary:
        p = summary["privacy"]
        spent = " ".join(f"p{k_}={float(v):.3f}" for k_, v in p["epsilon"].items())
        print(
            f"privacy: {p['unit']}-level ({p['delta']:g})-DP, ε spent {spent} (budget {p['epsilon_budget']}), "
            f"{p['accountant']} accountant, clip {p['clip']}"
        )
        if p.get("noise_mode") == "distributed":
            alone = " ".join(f"p{k_}={float(v):.3f}" for k_, v in p["epsilon_alone"].items())
            print(f"distributed noise: ε of one platform's update alone (SecAgg+ broken) {alone}")
    print(f"\nwall time {summary['wall_seconds']:.1f}s; results in {summary['config']['run-dir']}/summary.json")


command = Command(
    "run",
    "run one experiment: federated, centralized, local-only or popularity",
    "researcher",
    add_arguments,
    run,
    description=__doc__,
)
