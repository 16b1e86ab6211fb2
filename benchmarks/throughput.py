"""Local training throughput, private and not: ``python benchmarks/throughput.py``.

Trains one platform's model (platform 0 of the default 5-platform natural split) for a
few epochs in each setting and prints scored (user, item) pairs per second - the unit
both paths share: a positive or a sampled negative scored once in a training step.
Settings: non-private; user-level and interaction-level DP-SGD with crossfed's one-pass
ghost clipping (``crossfed.shared.privacy.clipping``); the same with Opacus' own ghost
clipping (two backward passes) and with Opacus' default hooks mode. Every setting runs
``--repeats`` times, the settings interleaved, so a load change on a shared machine hits
them alike; the medians are compared. Besides pairs per wall-clock second it prints pairs
per CPU second of the process (one thread; the whole measured round), which other
processes on a busy machine disturb far less. It writes nothing: the figures are printed,
headed by the date, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import torch
from provenance import markdown, provenance

from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import load_platforms
from crossfed.shared.privacy.dp_sgd import plan, train_private_round
from crossfed.shared.trainer import PlatformTrainer


def measure(config: RunConfig, platform: int, epochs: int, grad_sample_mode: str = "ghost") -> dict[str, float]:
    trainer = PlatformTrainer(load_platforms(config)[platform], config)
    rng = np.random.default_rng(0)
    if not config.private:
        trainer.train(1, salt=0)  # warm-up
        cpu_started = time.process_time()
        result = trainer.train(epochs, salt=1)
    else:
        ledger = trainer.ledger
        step_plan = plan(config, trainer.split.train)
        ledger.calibrate(step_plan.sample_rate, step_plan.steps_per_round, 1000, 1.0)
        one = config.replace(local_epochs=1)
        train_private_round(
            trainer.model, trainer.optimizer, trainer.split.train, ledger, one, rng, grad_sample_mode
        )  # warm-up
        many = config.replace(local_epochs=epochs)
        cpu_started = time.process_time()
        result = train_private_round(
            trainer.model, trainer.optimizer, trainer.split.train, ledger, many, rng, grad_sample_mode
        )
    cpu_seconds = time.process_time() - cpu_started
    return {
        "pairs_per_second": result.pairs_per_second,
        "seconds": result.seconds,
        "pairs": result.scored_pairs,
        "pairs_per_cpu_second": result.scored_pairs / cpu_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/throughput.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--platform", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a simulated platform gets 1)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every setting (medians reported)")
    parser.add_argument("--skip-hooks", action="store_true", help="skip Opacus' slow default hooks mode")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="run-config overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    overrides = dict(item.split("=", 1) for item in args.set)
    base = RunConfig.from_mapping({"data-dir": args.data_dir}, overrides)
    settings = [
        ("non-private", base.replace(privacy_unit="none"), "ghost"),
        ("user-level DP, ghost", base.replace(privacy_unit="user"), "ghost"),
        ("interaction-level DP, ghost", base.replace(privacy_unit="interaction"), "ghost"),
        ("user-level DP, Opacus ghost", base.replace(privacy_unit="user"), "opacus-ghost"),
        ("interaction-level DP, Opacus ghost", base.replace(privacy_unit="interaction"), "opacus-ghost"),
    ]
    if not args.skip_hooks:
        settings += [
            ("user-level DP, hooks", base.replace(privacy_unit="user"), "hooks"),
            ("interaction-level DP, hooks", base.replace(privacy_unit="interaction"), "hooks"),
        ]
    print(markdown(provenance()), flush=True)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _config, _mode in settings}
    for repeat in range(args.repeats):
        for name, config, mode in settings:
            started = time.perf_counter()
            row = measure(config, args.platform, args.epochs, mode)
            runs[name].append(row)
            print(
                f"[{repeat + 1}/{args.repeats}] {name:36s} {row['pairs_per_second']:>12,.0f} pairs/s "
                f"{row['pairs_per_cpu_second']:>12,.0f} pairs/CPU-s  "
                f"({row['pairs']:,} pairs in {row['seconds']:.1f}s; total {time.perf_counter() - started:.1f}s)",
                flush=True,
            )
    medians = {
        name: {
            key: float(np.median([row[key] for row in rows])) for key in ("pairs_per_second", "pairs_per_cpu_second")
        }
        for name, rows in runs.items()
    }
    reference = medians["non-private"]
    print(f"{'median of ' + str(args.repeats):36s} {'pairs/s':>12s} {'x':>6s} {'pairs/CPU-s':>12s} {'x':>6s}")
    for name, median in medians.items():
        wall, cpu = median["pairs_per_second"], median["pairs_per_cpu_second"]
        print(
            f"{name:36s} {wall:>12,.0f} {wall / reference['pairs_per_second']:6.2f} "
            f"{cpu:>12,.0f} {cpu / reference['pairs_per_cpu_second']:6.2f}"
        )
    print(json.dumps({name: {key: round(value) for key, value in median.items()} for name, median in medians.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
