"""Soak run: many rounds, many platforms, random dropouts - does anything grow or get lost?

A federation that runs for weeks must not creep: memory flat, no leaked file handles,
every round recorded. This drives a long simulation with cheap rounds (a tiny model,
few users, one local epoch) and a client mod that kills a platform's training with
probability ``--dropout`` per round (a SuperNode dying mid-round; Flower turns the
exception into an error reply, which the round loop drops). A background thread samples
the whole process tree - driver, Ray's GCS and raylet, the workers - from ``/proc``.

    python benchmarks/soak.py --rounds 200 --platforms 20 --dropout 0.1 [--out STEM]

The run folder is ``--run-dir`` (must be empty); the figures go to ``STEM.json`` and
``STEM.md`` (default under ``runs/``, which git ignores), headed by the date, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Message, MessageType
from provenance import markdown, provenance

from crossfed.shared.config import RunConfig
from crossfed.shared.runtime.proc import open_fds, status_kib, tree_pids
from crossfed.simulations.federated import run_federated

_ROUND_LINE = re.compile(r"^round\s+(\d+)/")


def drops_out(seed: int, server_round: int, platform: int, probability: float) -> bool:
    """Whether ``platform`` dies during ``server_round``: a fixed draw, so runs and reports agree."""
    return bool(np.random.default_rng([seed, server_round, platform]).random() < probability)


def dropout_mod(seed: int, probability: float):
    """A client mod that fails a training round, as a SuperNode crashing mid-round would."""

    def mod(message: Message, context, call_next) -> Message:
        if message.metadata.message_type == MessageType.TRAIN:
            server_round = int(message.content["config"]["server-round"])
            platform = int(context.node_config["partition-id"])
            if drops_out(seed, server_round, platform, probability):
                raise RuntimeError(f"simulated SuperNode failure: platform {platform}, round {server_round}")
        return call_next(message, context)

    return mod


@dataclass
class Sample:
    time: float
    rss_mb: float
    fds: int
    driver_fds: int
    processes: int


def sample_tree(root: int) -> Sample:
    pids = tree_pids(root)
    return Sample(
        time.time(),
        sum(status_kib(p, "VmRSS:") for p in pids) / 1024,
        sum(open_fds(p) for p in pids),
        open_fds(root),
        len(pids),
    )


class Sampler:
    """Samples the process tree every ``interval`` seconds in a daemon thread."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root, self.interval, self.samples = root, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(sample_tree(self.root))
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class RoundClock(logging.Handler):
    """Notes when each round's progress line is logged: the boundaries for per-round peaks."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ends: dict[int, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = _ROUND_LINE.match(record.getMessage())
        if match:
            self.ends[int(match.group(1))] = record.created


def per_round(samples: list[Sample], ends: dict[int, float], start: float) -> list[dict[str, Any]]:
    """Peak tree RSS, and tree / driver file descriptors at the end, of every round."""
    rows, previous = [], start
    for server_round in sorted(ends):
        window = [s for s in samples if previous <= s.time <= ends[server_round]] or [
            min(samples, key=lambda s: abs(s.time - ends[server_round]))
        ]
        last = window[-1]
        rows.append(
            {
                "round": server_round,
                "peak_rss_mb": round(max(s.rss_mb for s in window), 1),
                "fds": last.fds,
                "driver_fds": last.driver_fds,
                "processes": last.processes,
            }
        )
        previous = ends[server_round]
    return rows


def soak_config(args: argparse.Namespace) -> RunConfig:
    """Cheap rounds: the point is the number of rounds, not the model."""
    return RunConfig().replace(
        run_dir=args.run_dir,
        data_dir=args.data_dir,
        seed=args.seed,
        num_platforms=args.platforms,
        max_users=args.max_users,
        partition="iid",
        num_server_rounds=args.rounds,
        min_platforms=args.min_platforms,
        embedding_dim=4,
        mlp_layers="8",
        local_epochs=1,
        batch_size=256,
        eval_negatives=49,
    )


def summarise(
    rows: list[dict[str, Any]], summary: dict[str, Any], config: RunConfig, dropout: float, wall: float
) -> dict[str, Any]:
    def peak(first: int, last: int) -> float:
        return max(r["peak_rss_mb"] for r in rows if first <= r["round"] <= last)

    rounds = config.federation.num_server_rounds
    late = max(1, rounds - 49)
    middle = (min(50, rounds), min(100, rounds))
    dropped = {
        r: [p for p in range(config.data.num_platforms) if drops_out(config.experiment.seed, r, p, dropout)]
        for r in range(1, rounds + 1)
    }
    history = summary["history"]
    complete = (
        len(history) == rounds
        and [h["round"] for h in history] == list(range(1, rounds + 1))
        and all(len(h.get("per_platform", {})) == config.data.num_platforms for h in history)
    )
    fds_middle = [r["driver_fds"] for r in rows if middle[0] <= r["round"] <= middle[1]]
    fds_late = [r["driver_fds"] for r in rows if r["round"] >= late]
    return {
        "rounds": rounds,
        "platforms": config.data.num_platforms,
        "dropout": dropout,
        "wall_seconds": round(wall, 1),
        "dropouts_total": sum(len(v) for v in dropped.values()),
        "rounds_with_dropouts": sum(1 for v in dropped.values() if v),
        "max_dropouts_in_a_round": max(len(v) for v in dropped.values()),
        "peak_rss_mb_rounds_50_100": peak(*middle),
        f"peak_rss_mb_rounds_{late}_{rounds}": peak(late, rounds),
        "rss_ratio_last50_vs_50_100": round(peak(late, rounds) / peak(*middle), 4),
        "driver_fds_rounds_50_100": [min(fds_middle), max(fds_middle)] if fds_middle else None,
        f"driver_fds_rounds_{late}_{rounds}": [min(fds_late), max(fds_late)] if fds_late else None,
        "tree_fds_first_last": [rows[0]["fds"], rows[-1]["fds"]],
        "history_complete": complete,
        "rounds_completed": summary.get("rounds_completed"),
        "final_test_platforms": len(summary["per_platform"]),
        "final_sampled_hr@10": summary["metrics"]["sampled"]["hr@10"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--platforms", type=int, default=20)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--min-platforms", type=int, default=10)
    parser.add_argument("--max-users", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=os.environ.get("CROSSFED_DATA_DIR", ""))
    parser.add_argument("--run-dir", default="runs/soak/run", help="the federation's run folder (must be empty)")
    parser.add_argument("--out", default="runs/soak/soak", help="stem of the .json/.md results")
    args = parser.parse_args(argv)
    if Path(args.run_dir).exists() and any(Path(args.run_dir).iterdir()):
        parser.error(f"run folder {args.run_dir} is not empty")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clock = RoundClock()
    logging.getLogger("crossfed.progress").addHandler(clock)
    logging.getLogger("crossfed.progress").setLevel(logging.INFO)
    config = soak_config(args)
    started = time.time()
    with Sampler(os.getpid()) as sampler:
        summary = run_federated(config, client_mods=[dropout_mod(args.seed, args.dropout)])
    wall = time.time() - started
    rows = per_round(sampler.samples, clock.ends, started)
    block = provenance()
    result = {**summarise(rows, summary, config, args.dropout, wall), "per_round": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"provenance": block, **result}, indent=1) + "\n")
    lines = [
        f"# Soak: {args.rounds} rounds, {args.platforms} platforms, {args.dropout:.0%} dropout per round",
        "",
        markdown(block),
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in result.items() if key != "per_round"]
    lines += ["", "| round | peak tree RSS MiB | tree fds | driver fds | processes |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['round']} | {r['peak_rss_mb']} | {r['fds']} | {r['driver_fds']} | {r['processes']} |"
        for r in rows
        if r["round"] % 10 == 0 or r["round"] == 1
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: len(result) + 5]))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
