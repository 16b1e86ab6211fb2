"""``python -m simulations run ...``: one experiment in any mode, written to the results contract."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from crossfed.shared.config import (

    ACCOUNTANTS,

    MODES,

    NOISE_MODES,

    PARTITION_SCHEMES,

    PRIVACY_UNITS,

    SERVER_OPTIMIZERS,

    ConfigError,

    RunConfig,

)
from crossfed.shared.config.values import unknown_key
from crossfed.shared.data.movielens import DatasetUnavailableError
from crossfed.simulations import sweep_cli

#: Every run-config key is a flag (``--learning-rate`` for ``learning-rate``); these have short aliases.
_ALIASES = {"num-platforms": "--platforms", "num-server-rounds": "--rounds", "dirichlet-alpha": "--alpha"}
_CHOICES = {"partition": PARTITION_SCHEMES, "server-optimizer": SERVER_OPTIMIZERS, "privacy-unit": PRIVACY_UNITS,
            "accountant": ACCOUNTANTS, "noise-mode": NOISE_MODES}
#: Set by the command itself (``--out``, ``--resume``), not as plain keys.
_NOT_FLAGS = {"run-dir", "resume"}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``[tool.flwr.app.config]`` key, parsed and range-checked by :class:`RunConfig`."""
    documentation = RunConfig.documentation()
    for key, default in RunConfig().to_flat().items():
        if key in _NOT_FLAGS:
            continue
        names = [f"--{key}"] + ([_ALIASES[key]] if key in _ALIASES else [])
        # A bare boolean flag (``--secagg``) means true; ``--secagg false`` still works.
        boolean = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}
        meaning = f"{documentation[key]} (default {default!r})".replace("%", "%%")
        parser.add_argument(*names, dest=key, choices=_CHOICES.get(key), default=None, metavar=None if key in
                            _CHOICES else key.split("-")[-1].upper(), help=meaning, **boolean)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one experiment")
    run.add_argument("--mode", choices=MODES, default="federated")
    run.add_argument("--out", help="run folder (default runs/<mode>-<dataset>-<partition>-<N>p-seed<S>)")
    run.add_argument("--resume", action="store_true", help="federated: continue from the run folder's checkpoint")
    run.add_argument("--quiet", action="store_true", help="only the summary table")
    _add_config_flags(run)
    sweep_cli.add_parser(commands)
    args, unrecognised = parser.parse_known_args(argv)
    if unrecognised:
        print(f"error: {_unknown_flag(unrecognised)}", file=sys.stderr)
        return 2
    if args.command == "sweep":
        configure_logging(quiet=True)
        return sweep_cli.main(args)
    configure_logging(args.quiet)

    overrides = {
        key: value for key, value in vars(args).items()
        if value is not None and key not in {"command", "mode", "out", "quiet", "resume"}
    }
    try:
        config = RunConfig.from_mapping(overrides)
        data = config.data
        name = f"{args.mode}-{data.dataset}-{data.partition}-{data.num_platforms}p-seed{config.experiment.seed}"
        out = Path(args.out or f"runs/{name}")
        config = config.replace(
            run_dir=str(out.resolve()),
            data_dir=str(Path(config.data.data_dir).resolve()) if config.data.data_dir else "",
            resume=args.resume,
        )
        from crossfed.shared.data.datasets import load_dataset

        dataset = load_dataset(config.data.dataset, config.data.data_dir)  # fail fast, before any worker starts
        if out.exists() and any(out.iterdir()) and not args.resume:
            raise ConfigError(f"run folder {out} is not empty: pass --resume to continue that run, "
                              f"or another --out (a new run never inherits an old run's platform state)")
    except (ConfigError, DatasetUnavailableError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{args.mode}: {dataset.name} ({len(dataset.users):,} interactions, {dataset.num_users} users, "
              f"{dataset.num_items} items) -> {config.data.num_platforms} platforms ({config.data.partition}), "
              f"{config.federation.num_server_rounds} rounds; results in {out}", flush=True)
    summary = run_mode(args.mode, config)
    print_summary(summary)
    return 0


def _unknown_flag(unrecognised: list[str]) -> ConfigError:
    """argparse's unrecognised arguments as a refused key with the nearest valid name (a misspelled flag)."""
    token = next((item for item in unrecognised if item.startswith("--")), unrecognised[0])
    return unknown_key(token.split("=")[0].removeprefix("--"), "command line",
                       RunConfig.keys() | {"mode", "out", "resume", "quiet"})


def run_mode(mode: str, config: RunConfig) -> dict[str, Any]:
    if mode == "federated":
        from crossfed.simulations.federated import run_federated

        return run_federated(config)
    from crossfed.simulations.baselines import run_centralized, run_local_only

    # Nothing leaves a platform in either baseline, so neither needs noise: they are the references.
    config = config.replace(privacy_unit="none")
    return run_centralized(config) if mode == "centralized" else run_local_only(config)


def print_summary(summary: dict[str, Any]) -> None:
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
        if p.get("noise_mode") == "distributed":
            alone = " ".join(f"p{k_}={float(v):.3f}" for k_, v in p["epsilon_alone"].items())
            print(f"distributed noise: ε of one platform's update alone (SecAgg+ broken) {alone}")
    print(f"\nwall time {summary['wall_seconds']:.1f}s; results in {summary['config']['run-dir']}/summary.json")


def configure_logging(quiet: bool) -> None:
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
