"""Local training throughput, private and not: ``python benchmarks/throughput.py``.

Trains one platform's model (platform 0 of the default 5-platform natural split) for a
few epochs in each setting and prints scored (user, item) pairs per second - the unit
both paths share: a positive or a sampled negative scored once in a training step.
Settings: non-private; user-level DP-SGD with Opacus ghost clipping; the same with
Opacus' default hooks mode; interaction-level DP-SGD (ghost and hooks). It writes nothing:
the figures are printed, headed by the date, commit and machine.
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
        result = train_private_round(
            trainer.model, trainer.optimizer, trainer.split.train, ledger, many, rng, grad_sample_mode
        )
    return {"pairs_per_second": result.pairs_per_second, "seconds": result.seconds, "pairs": result.scored_pairs}


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
    ]
    if not args.skip_hooks:
        settings += [
            ("user-level DP, hooks", base.replace(privacy_unit="user"), "hooks"),
            ("interaction-level DP, hooks", base.replace(privacy_unit="interaction"), "hooks"),
        ]
    print(markdown(provenance()), flush=True)
    rows = {}
    for name, config, mode in settings:
        started = time.perf_counter()
        rows[name] = measure(config, args.platform, args.epochs, mode)
        print(
            f"{name:30s} {rows[name]['pairs_per_second']:>12,.0f} pairs/s  "
            f"({rows[name]['pairs']:,} pairs in {rows[name]['seconds']:.1f}s; "
            f"total {time.perf_counter() - started:.1f}s)",
            flush=True,
        )
    reference = rows["non-private"]["pairs_per_second"]
    for name, row in rows.items():
        print(f"{name:30s} {row['pairs_per_second'] / reference:6.2f} x non-private")
    print(json.dumps({name: round(row["pairs_per_second"]) for name, row in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
