"""Where a local round's CPU time goes, private and not: ``python benchmarks/dp_profile.py``.

Trains platform 0 (default 5-platform natural split, default model) for ``--epochs`` epochs
after one warm-up epoch, once per privacy unit of ``--units`` (by default non-private and
user-level DP-SGD with one-pass ghost clipping), and prints each component's CPU seconds per
million scored pairs - the unit ``benchmarks/throughput.py`` counts - so the settings compare
directly. Components are
timed by wrapping the functions that implement them (self time: a wrapped call inside
another is subtracted from it); "other" is the rest of the round (the remaining forward
pass, the loss, Python). One thread, as a simulated platform has. It writes nothing.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from opacus.optimizers import DPOptimizerFastGradientClipping
from provenance import markdown, provenance

from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import load_platforms
from crossfed.shared.privacy import clipping, dp_sgd
from crossfed.shared.privacy.dp_sgd import plan, train_private_round
from crossfed.shared.trainer import PlatformTrainer


class Timers:
    """Self CPU time per component name."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self._stack: list[str] = []

    def wrap(self, name: str | Callable[..., str], function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            label = name if isinstance(name, str) else name(*args)
            started = time.process_time()
            self._stack.append(label)
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.process_time() - started
                self._stack.pop()
                self.seconds[label] += spent
                if self._stack:
                    self.seconds[self._stack[-1]] -= spent

        return timed

    @property
    def current(self) -> str | None:
        return self._stack[-1] if self._stack else None


def instrument(trainer: PlatformTrainer, timers: Timers) -> None:
    """Wraps the model's item-side modules and the private round's steps."""
    model = trainer.model
    features = model.shared.item_tower.features
    for key, layer in features.multi_hot.items():
        layer.forward = timers.wrap(f"forward: multi-hot {key}", layer.forward)
    model.shared.item_tower.forward = timers.wrap("forward: item tower (ids, year)", model.shared.item_tower.forward)
    model.user_tower.forward = timers.wrap("forward: user tower", model.user_tower.forward)
    multi_hot = {id(layer) for layer in features.multi_hot.values()}

    def kind(layer: torch.nn.Module, *_args: Any) -> str:
        return "multi-hot" if id(layer) in multi_hot else type(layer).__name__

    if hasattr(clipping, "_per_sample"):
        per_sample = clipping._per_sample

        def timed_per_sample(layer: torch.nn.Module, *args: Any) -> Any:
            squared, assemble = timers.wrap(lambda *_: f"clip: norms, {kind(layer)}", per_sample)(layer, *args)
            return squared, timers.wrap(f"clip: clipped sum, {kind(layer)}", assemble)

        clipping._per_sample = timed_per_sample
    else:  # the clipper before norms and clipped sums were folded together (commit b92258a and earlier)
        clipping._norms = timers.wrap(lambda layer, *_: f"clip: norms, {kind(layer)}", clipping._norms)
        clipping._add_clipped_gradient = timers.wrap(
            lambda layer, *_: f"clip: clipped sum, {kind(layer)}", clipping._add_clipped_gradient
        )
    dp_sgd.user_bags = timers.wrap("bags and negatives", dp_sgd.user_bags)
    dp_sgd.refresh_user_embeddings = timers.wrap("refresh: steps", dp_sgd.refresh_user_embeddings)
    dp_sgd.FixedItemScorer = timers.wrap("refresh: item-side precompute", dp_sgd.FixedItemScorer)
    gradient = torch.autograd.grad

    def labelled_gradient(*args: Any, **kwargs: Any) -> Any:
        label = "refresh: backward" if timers.current == "refresh: steps" else "clip: backward to layer outputs"
        return timers.wrap(label, gradient)(*args, **kwargs)

    torch.autograd.grad = labelled_gradient
    torch.Tensor.backward = timers.wrap("backward", torch.Tensor.backward)
    trainer.optimizer.step = timers.wrap("optimizer step (Adam)", trainer.optimizer.step)
    DPOptimizerFastGradientClipping.step = timers.wrap(
        "optimizer step (noise, SGD)", DPOptimizerFastGradientClipping.step
    )


def profile(config: RunConfig, epochs: int) -> tuple[int, float, collections.Counter[str]]:
    trainer = PlatformTrainer(load_platforms(config)[0], config)
    timers = Timers()
    instrument(trainer, timers)
    rng = np.random.default_rng(0)
    if config.private:
        ledger = trainer.ledger
        step_plan = plan(config, trainer.split.train)
        ledger.calibrate(step_plan.sample_rate, step_plan.steps_per_round, 1000, 1.0)

        def run(count: int, _salt: int) -> Any:
            return train_private_round(
                trainer.model,
                trainer.optimizer,
                trainer.split.train,
                ledger,
                config.replace(local_epochs=count),
                rng,
            )

    else:

        def run(count: int, salt: int) -> Any:
            return trainer.train(count, salt=salt)

    run(1, 0)  # warm-up
    timers.seconds.clear()
    started = time.process_time()
    result = run(epochs, 1)
    return result.scored_pairs, time.process_time() - started, timers.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/dp_profile.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--units", default="none,user", help="privacy units to profile, comma-separated: none, user, interaction"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    base = RunConfig.from_mapping({"data-dir": args.data_dir}, {})
    print(markdown(provenance()), flush=True)
    names = {
        "none": "non-private",
        "user": "user-level DP, one-pass ghost clipping",
        "interaction": "interaction-level DP, one-pass ghost clipping",
    }
    for unit in args.units.split(","):
        name = names[unit]
        pairs, cpu, seconds = profile(base.replace(privacy_unit=unit), args.epochs)
        print(f"{name}: {pairs:,} pairs in {cpu:.2f} CPU s = {pairs / cpu:,.0f} pairs / CPU s")
        print(f"  {'component':42s} {'CPU s / M pairs':>16s} {'share':>7s}")
        for label, spent in [*seconds.most_common(), ("other", cpu - sum(seconds.values()))]:
            print(f"  {label:42s} {1e6 * spent / pairs:16.2f} {100 * spent / cpu:6.1f}%")
        print(f"  {'total':42s} {1e6 * cpu / pairs:16.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
