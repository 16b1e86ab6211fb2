"""Where a federated round's CPU time goes, against a centralized epoch: the part that is crossfed's own.

``python benchmarks/round_profile.py [--rounds 4] [--platforms 5] [--dataset ml-100k]``

Runs the federation loop (``crossfed.server.federation.run_federation``) with the real platform
handlers (``crossfed.client.task`` and the outbox) behind an in-process grid, so Ray and Flower's
message transport are left out and what remains is crossfed's own work per round: training,
validation, rebuilding or reusing each platform's trainer, reading and writing its state, the
coordinator's aggregation and checkpoint. It runs twice, once with each platform's trainer kept
between messages (``crossfed.client.resident``, the product's behaviour) and once rebuilding it
from the state file for every message, then a centralized run of as many epochs on the same data
and model. Every phase is timed in CPU seconds of this one process (``time.process_time``), which
a shared machine's load disturbs far less than wall time; torch runs one thread, as a platform does.

Prints, per run, CPU seconds per round (rounds 2 onwards: round 1 includes one-off imports) of
each phase, and the two runs' final validation HR@10, which must be equal. The defaults of the main
job apply except early stopping (off, so every round runs). It writes only its run folders, under
a temporary directory.
"""

from __future__ import annotations

import argparse
import collections
import functools
import inspect
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from flwr.app import Message
from flwr.supercore.task_identity import TaskIdentity
from provenance import markdown, provenance

import crossfed.server.federation as federation
import crossfed.shared.trainer as trainer_module
import crossfed.simulations.baselines as baselines
from crossfed.client import resident, task
from crossfed.shared.config import RunConfig
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.simulations.in_process import InProcessGrid

#: Phase name -> CPU seconds, and the round each phase was last charged to.
Clock = collections.defaultdict[str, float]


class TimedGrid(InProcessGrid):
    """The in-process grid, charging the platforms' handlers to the clock."""

    def __init__(self, config: RunConfig, clock: Clock) -> None:
        super().__init__(config)
        self.clock = clock

    def answer(self, message: Message) -> Message:
        started = time.process_time()
        reply = super().answer(message)
        self.clock["platform handlers, all"] += time.process_time() - started
        return reply


def timed(clock: Clock, owner: Any, name: str, label: str) -> Callable[[], None]:
    """Charge every call of ``owner.name`` to ``label``; returns the undo."""
    original = inspect.getattr_static(owner, name)
    own = name in vars(owner)
    function = original.__func__ if isinstance(original, classmethod) else original

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            clock[label] += time.process_time() - started

    setattr(owner, name, classmethod(wrapper) if isinstance(original, classmethod) else wrapper)
    return lambda: setattr(owner, name, original) if own else delattr(owner, name)


def instrumented(clock: Clock) -> list[Callable[[], None]]:
    return [
        timed(clock, trainer_module.PlatformTrainer, "train", "training (fit)"),
        timed(clock, trainer_module, "rank_on_split", "validation ranking"),
        timed(clock, baselines, "rank_on_split", "validation ranking"),
        timed(clock, task, "build_trainer", "trainer build or reuse"),
        timed(clock, PlatformState, "save", "state writes (after training, tower keeping)"),
        timed(clock, PlatformState, "load", "state reads (in trainer builds and tower keeping)"),
        timed(clock, federation, "aggregate_updates", "coordinator: aggregation"),
    ]


def federated(config: RunConfig, rebuild: bool) -> tuple[Clock, list[Clock], float]:
    """CPU seconds per phase for the whole run and per round; the last round's validation HR@10."""
    clock: Clock = collections.defaultdict(float)
    per_round: list[Clock] = []
    undo = instrumented(clock)
    report = federation.RoundReport.log

    def snapshot(self: Any, *args: Any, **kwargs: Any) -> Any:
        per_round.append(collections.defaultdict(float, clock))
        return report(self, *args, **kwargs)

    federation.RoundReport.log = snapshot  # type: ignore[method-assign]
    take = resident.take
    if rebuild:
        resident.take = lambda *args, **kwargs: None  # type: ignore[assignment]
    resident.clear()
    try:
        started = time.process_time()
        summary = federation.run_federation(TimedGrid(config, clock), config)
        clock["run, all"] = time.process_time() - started
    finally:
        resident.take = take  # type: ignore[assignment]
        federation.RoundReport.log = report  # type: ignore[method-assign]
        for step in undo:
            step()
    return clock, per_round, float(summary["history"][-1]["validation"]["sampled_hr"])


def centralized(config: RunConfig) -> tuple[Clock, list[float]]:
    clock: Clock = collections.defaultdict(float)
    undo = instrumented(clock)
    try:
        started = time.process_time()
        summary = baselines.run_centralized(config)
        clock["run, all"] = time.process_time() - started
    finally:
        for step in undo:
            step()
    return clock, [entry["elapsed_seconds"] for entry in summary["history"]]


def per_round_table(name: str, per_round: list[Clock]) -> None:
    """Mean CPU seconds per round of each phase, rounds 2 onwards."""
    later = len(per_round) - 1
    print(
        f"\n### {name}: CPU seconds per round (mean of rounds 2-{len(per_round)})\n\n"
        "| phase | CPU s / round |\n|---|---|"
    )
    for phase in sorted(per_round[-1], key=lambda p: -per_round[-1][p]):
        spent = (per_round[-1][phase] - per_round[0].get(phase, 0.0)) / later
        print(f"| {phase} | {spent:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--platforms", type=int, default=5)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", default="", help="local dataset copy (else $CROSSFED_DATA_DIR or the cache)")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (round 1 carries one-off imports)")
    torch.set_num_threads(1)
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = 1, 0, 1  # messages built off a SuperLink
    print(markdown(provenance()))
    with tempfile.TemporaryDirectory(prefix="round-profile-") as folder:

        def config(name: str) -> RunConfig:
            return RunConfig().replace(
                dataset=args.dataset,
                data_dir=args.data_dir,
                run_dir=str(Path(folder) / name),
                num_platforms=args.platforms,
                partition="natural",
                num_server_rounds=args.rounds,
                patience=0,
            )

        kept, kept_rounds, kept_hr = federated(config("kept"), rebuild=False)
        rebuilt, rebuilt_rounds, rebuilt_hr = federated(config("rebuilt"), rebuild=True)
        central, _ = centralized(config("centralized"))
    per_round_table("federated, trainers kept between messages", kept_rounds)
    per_round_table("federated, every message rebuilds its trainer from disk", rebuilt_rounds)
    print(f"\n### centralized: CPU seconds per epoch (mean of {args.rounds} epochs, whole run)\n")
    print("| phase | CPU s / epoch |\n|---|---|")
    for phase in sorted(central, key=lambda p: -central[p]):
        print(f"| {phase} | {central[phase] / args.rounds:.3f} |")
    print(
        f"\nLast round's validation HR@10: kept {kept_hr:.6f}, rebuilt {rebuilt_hr:.6f} "
        f"({'equal' if kept_hr == rebuilt_hr else 'DIFFERENT'}). Whole runs: kept {kept['run, all']:.1f} CPU-s, "
        f"rebuilt {rebuilt['run, all']:.1f} CPU-s, centralized {central['run, all']:.1f} CPU-s."
    )
    return 0 if kept_hr == rebuilt_hr else 1


if __name__ == "__main__":
    raise SystemExit(main())
