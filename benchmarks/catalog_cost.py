"""Per-round cost against catalog size, and the final full-catalog test at 10^5 items.

``python benchmarks/catalog_cost.py [--out DIR] [--experiment FILE]``

Runs the sweep ``simulations/experiments/catalog.toml`` (each cell a federated simulation in
its own process tree, measured from ``/proc``: round wall and CPU time, peak RSS and PSS of
the driver, Ray and its workers) and prints:

* the round at 1,682 and at 17,632 items (``extra-items`` padding) and their ratio: the
  per-round validation ranks ``eval-negatives + 1`` candidates per user, so only training
  and the traffic of the item-id table grow with the catalog;
* the run at 10^5 items: the final test (every test user ranked against the whole catalog,
  streamed in user x item blocks) and the run's peak memory.

Start-up (Ray's workers, imports, data loaded and checked) is reported apart from the rounds,
and a fresh process times what a platform's worker does before its first round and again on
every later message: imports, the platform's data, the trainer, the candidate lists.
The figures, with the date, commit and machine, go to ``DIR/catalog_cost.json`` and
``DIR/catalog_cost.md`` (default ``runs/benchmarks/catalog``, which git ignores); a rerun
keeps the cells already finished there.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from provenance import markdown, provenance

from crossfed.shared.evaluation.results import read_summary
from crossfed.simulations.experiment import load_experiment
from crossfed.simulations.sweep import cell_dir, run_sweep
from crossfed.simulations.tidy import collect

REAL_ITEMS = 1682
EXPERIMENT = Path(__file__).resolve().parent.parent / "simulations" / "experiments" / "catalog.toml"


def cell_figures(out: Path) -> list[dict[str, Any]]:
    """One row per finished cell: catalog size, start-up, round, test and memory figures."""
    experiment = load_experiment(out / "experiment.toml")
    cells = collect(experiment, out).cells
    rows = []
    for cell in experiment.cells:
        found = cells[cells["cell"] == cell.name] if len(cells) else cells
        if found.empty:
            continue
        row = found.iloc[0]
        summary = read_summary(cell_dir(out, cell))
        history = summary["history"]
        training_seconds = history[-1]["elapsed_seconds"] if history else 0.0
        rows.append(
            {
                "cell": cell.name,
                "arm": cell.arm,
                "items": REAL_ITEMS + int(cell.overrides.get("extra-items", 0)),
                "rounds": len(history),
                "startup_seconds": summary["startup_seconds"],
                "first_round_seconds": float(row["first_round_seconds"]),
                "round_seconds": float(row["round_seconds"]),
                "round_cpu_seconds": float(row["round_cpu_seconds"]),
                "test_seconds": round(summary["wall_seconds"] - summary["startup_seconds"] - training_seconds, 2),
                "peak_rss_mb": float(row["peak_rss_mb"]),
                "peak_pss_mb": float(row["peak_pss_mb"]),
                "load_at_start": float(row["load_average_at_start"]),
                "sampled_hr": float(row["sampled_hr"]),
                "full_hr": float(row["full_hr"]),
            }
        )
    return rows


def worker_startup(extra_items: int, data_dir: str, results: Any) -> None:
    """In a fresh process: each step a platform's worker takes, first (start-up) and again (a later message)."""
    steps: dict[str, float] = {}

    def timed(name: str, step: Any) -> Any:
        started = time.perf_counter()
        value = step()
        steps[name] = round(time.perf_counter() - started, 3)
        return value

    timed("imports (crossfed.client.task, torch, flwr)", lambda: __import__("crossfed.client.task"))
    import torch

    from crossfed.shared.config import RunConfig
    from crossfed.shared.data.loader import platform_data
    from crossfed.shared.evaluation.candidates import candidate_lists
    from crossfed.shared.trainer import PlatformTrainer

    torch.set_num_threads(1)
    config = RunConfig().replace(extra_items=extra_items, data_dir=data_dir)
    data = timed("platform data, first (read, check, encode, split)", lambda: platform_data(config, 0))
    timed("platform data, again (a later message)", lambda: platform_data(config, 0))
    trainer = timed("trainer, first (torch.optim imports torch._dynamo)", lambda: PlatformTrainer(data, config))
    trainer = timed("trainer, again (a later message)", lambda: PlatformTrainer(data, config))
    for attempt in ("first", "again"):
        timed(
            f"validation candidate lists, {attempt}",
            lambda: candidate_lists(trainer.split, data.interactions, "validation", 99, 0),
        )
    results.put(steps)


def startup_breakdown(extra_items: int, data_dir: str) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=worker_startup, args=(extra_items, data_dir, results))
    child.start()
    steps = results.get()
    child.join()
    return steps


def report(rows: list[dict[str, Any]], startup: dict[str, float], block: dict[str, Any]) -> str:
    lines = [
        markdown(block),
        "",
        "| cell | items | rounds | start-up s | round 1 s | round s (2..R) | round CPU s | final test s "
        "| peak PSS / RSS MiB | load at start |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['items']:,} | {r['rounds']} | {r['startup_seconds']:.1f} | "
            f"{r['first_round_seconds']:.2f} | {r['round_seconds']:.2f} | {r['round_cpu_seconds']:.2f} | "
            f"{r['test_seconds']:.1f} | {r['peak_pss_mb']:,.0f} / {r['peak_rss_mb']:,.0f} | {r['load_at_start']:.1f} |"
        )
    rounds = {r["items"]: r for r in rows if r["arm"] == "rounds"}
    if len(rounds) == 2:
        small, large = (rounds[k] for k in sorted(rounds))
        lines.append("")
        lines.append(
            f"round at {large['items']:,} items / round at {small['items']:,} items: "
            f"{large['round_seconds'] / small['round_seconds']:.2f} x wall, "
            f"{large['round_cpu_seconds'] / small['round_cpu_seconds']:.2f} x CPU (target <= 2 x)"
        )
    for r in rows:
        if r["arm"] == "final-test":
            lines.append(
                f"final full-catalog test at {r['items']:,} items: {r['test_seconds']:.0f} s; run's peak memory "
                f"PSS {r['peak_pss_mb'] / 1024:.2f} GiB, RSS {r['peak_rss_mb'] / 1024:.2f} GiB (target < 4 GiB)"
            )
    lines += [
        "",
        "A platform's worker, platform 0 at 17,632 items, in a fresh process:",
        "",
        "| step | s |",
        "|---|---|",
    ]
    lines += [f"| {step} | {seconds:.3f} |" for step, seconds in startup.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/catalog_cost.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default=str(EXPERIMENT), help="experiment file (default: catalog.toml)")
    p.add_argument("--out", default="runs/benchmarks/catalog", help="sweep folder; figures go beside its cells")
    p.add_argument("--data-dir", default=os.environ.get("CROSSFED_DATA_DIR", ""))
    args = p.parse_args(argv)
    out = Path(args.out)
    outcomes = run_sweep(load_experiment(args.experiment), out, args.data_dir, progress=False, on_event=print)
    rows = cell_figures(out)
    startup = startup_breakdown(15950, args.data_dir)
    block = provenance()
    text = report(rows, startup, block)
    print(text)
    (out / "catalog_cost.json").write_text(
        json.dumps({"provenance": block, "cells": rows, "worker_startup_seconds": startup}, indent=1) + "\n"
    )
    (out / "catalog_cost.md").write_text(text + "\n")
    print(f"wrote {out / 'catalog_cost.json'} and {out / 'catalog_cost.md'}")
    return 0 if all(o.status != "failed" for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
