"""``python -m simulations run ...``: one experiment in any mode, written to the results contract."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from shared.config import (
    ACCOUNTANTS,
    MODES,
    PARTITION_SCHEMES,
    PRIVACY_UNITS,
    SERVER_OPTIMIZERS,
    ConfigError,
    RunConfig,
)
from shared.data.movielens import DatasetUnavailableError

_FLAGS: dict[str, dict[str, Any]] = {
    "dataset": {"help": "dataset name (ml-100k)"},
    "data-dir": {"help": "local copy of the dataset (default: $CROSSFED_DATA_DIR, else download into a cache)"},
    "platforms": {"dest": "num_platforms", "type": int, "help": "number of platforms (default 5)"},
    "partition": {"choices": PARTITION_SCHEMES, "help": "how users are split into platforms"},
    "partition-attribute": {"help": "user attribute for natural/dirichlet (default region)"},
    "alpha": {"dest": "dirichlet_alpha", "type": float, "help": "dirichlet concentration"},
    "overlap-k": {"type": int, "help": "platforms per user for the overlap scheme"},
    "rounds": {"dest": "num_server_rounds", "type": int, "help": "federation rounds (epochs = rounds x local epochs)"},
    "local-epochs": {"type": int},
    "batch-size": {"type": int},
    "learning-rate": {"type": float},
    "negatives": {"type": int, "help": "sampled negatives per positive"},
    "embedding-dim": {"type": int},
    "mlp-layers": {"help": "comma-separated MLP widths, e.g. 64,32,16"},
    "server-optimizer": {"choices": SERVER_OPTIMIZERS},
    "server-learning-rate": {"type": float},
    "server-momentum": {"type": float, "help": "FedAvgM momentum"},
    "fraction-train": {"type": float},
    "seed": {"type": int},
    "max-users": {"type": int, "help": "random subset of users (0 = all)"},
    "item-id-embedding": {"help": "true/false: learn item-id embeddings (false: features only)"},
    "finetune-epochs": {"type": int, "help": "epochs of the private fine-tuned copy a platform serves (0 = off)"},
    "finetune-learning-rate": {"type": float},
    "finetune-embedding-dim": {"type": int, "help": "> 0: serve a local model of this width stacked on the global one"},
    "finetune-mlp-layers": {"help": "MLP widths of the stacked local model"},
    "privacy-unit": {"choices": PRIVACY_UNITS, "help": "differential privacy unit (none = off)"},
    "epsilon": {"type": float, "help": "privacy budget per platform for the whole run"},
    "delta": {"type": float},
    "noise-multiplier": {"type": float, "help": "explicit noise (0 = calibrate from epsilon)"},
    "clip-norm": {"type": float, "help": "per-sample L2 clip"},
    "user-batch": {"type": int, "help": "expected users per DP step"},
    "bag-positives": {"type": int, "help": "positives per user bag under user-level DP"},
    "refresh-steps": {"type": int, "help": "user-embedding refresh steps before each DP step"},
    "refresh-learning-rate": {"type": float},
    "accountant": {"choices": ACCOUNTANTS},
}



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one experiment")
    run.add_argument("--mode", choices=MODES, default="federated")
    run.add_argument("--out", help="run folder (default runs/<mode>-<dataset>-<partition>-<N>p-seed<S>)")
    run.add_argument("--resume", action="store_true", help="federated: continue from the run folder's checkpoint")
    run.add_argument("--quiet", action="store_true", help="only the summary table")
    for flag, options in _FLAGS.items():
        run.add_argument(f"--{flag}", **options)
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)

    overrides = {
        key: value for key, value in vars(args).items()
        if value is not None and key not in {"command", "mode", "out", "quiet", "resume"}
    }
    try:
        config = RunConfig.from_mapping(overrides)
        out = Path(args.out or f"runs/{args.mode}-{config.dataset}-{config.partition}-{config.num_platforms}p-seed{config.seed}")
        config = config.replace(
            run_dir=str(out.resolve()),
            data_dir=str(Path(config.data_dir).resolve()) if config.data_dir else "",
            resume=args.resume,
        )
        if out.exists() and any(out.iterdir()) and not args.resume:
            raise ConfigError(f"run folder {out} is not empty: pass --resume to continue that run, "
                              f"or another --out (a new run never inherits an old run's platform state)")
        from shared.datasets import load_dataset

        load_dataset(config.dataset, config.data_dir)  # fail fast, before any worker starts
    except (ConfigError, DatasetUnavailableError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    summary = run_mode(args.mode, config)
    print_summary(summary, time.perf_counter() - started)
    return 0


def run_mode(mode: str, config: RunConfig) -> dict[str, Any]:
    if mode == "federated":
        from simulations.federated import run_federated

        return run_federated(config)
    from simulations.baselines import run_centralized, run_local_only

    # Nothing leaves a platform in either baseline, so neither needs noise: they are the references.
    config = config.replace(privacy_unit="none")
    return run_centralized(config) if mode == "centralized" else run_local_only(config)


def print_summary(summary: dict[str, Any], seconds: float) -> None:
    k = summary["config"]["top-k"]
    rows = [("platform", "users", f"HR@{k}", f"NDCG@{k}", f"full HR@{k}", f"full NDCG@{k}")]
    for entry in summary["per_platform"] + [{"platform": "all", "users": "", "metrics": summary["metrics"]}]:
        if entry["platform"] == "all":
            entry["users"] = sum(e["users"] for e in summary["per_platform"])
        m = entry["metrics"]
        rows.append((str(entry["platform"]), str(entry["users"]), f"{m['sampled'][f'hr@{k}']:.4f}",
                     f"{m['sampled'][f'ndcg@{k}']:.4f}", f"{m['full'][f'hr@{k}']:.4f}", f"{m['full'][f'ndcg@{k}']:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{summary['mode']} | {summary['dataset']} | {summary['partition']} x {summary['platforms']} | "
          f"{summary['rounds']} rounds | seed {summary['seed']} | test set (sampled = 1 + 99 negatives)")
    for i, row in enumerate(rows):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
        if i == 0 or i == len(rows) - 2:
            print("  ".join("-" * width for width in widths))
    if summary.get("global_metrics") and summary["global_metrics"] != summary["metrics"]:
        g = summary["global_metrics"]["sampled"]
        print(f"served = private fine-tuned copies; the global model alone: HR@{k} {g[f'hr@{k}']:.4f} "
              f"NDCG@{k} {g[f'ndcg@{k}']:.4f}")
    if "privacy" in summary:
        p = summary["privacy"]
        spent = " ".join(f"p{k_}={float(v):.3f}" for k_, v in p["epsilon"].items())
        print(f"privacy: {p['unit']}-level ({p['delta']:g})-DP, ε spent {spent} (budget {p['epsilon_budget']}), "
              f"{p['accountant']} accountant, clip {p['clip']}")
    print(f"\nwall time {seconds:.1f}s; results in {summary['config']['run-dir']}/summary.json")


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("crossfed").setLevel(logging.WARNING if quiet else logging.INFO)
    import flwr.common.logger  # noqa: F401  (flwr sets its own levels on import; override them after)

    for noisy in ("flwr", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("flwr").propagate = False
    # We call flwr.simulation.run_simulation on purpose (see README); its deprecation notice is noise here.
    logging.getLogger("flwr").addFilter(lambda record: "DEPRECATED FEATURE" not in record.getMessage())


if __name__ == "__main__":
    sys.exit(main())
