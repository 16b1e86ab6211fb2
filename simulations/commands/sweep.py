"""``crossfed sweep EXPERIMENT.toml --out DIR``: run every cell of an experiment file, resumably.

Runs the unfinished cells (:mod:`crossfed.simulations.sweep`), then rebuilds the tidy tables
(:mod:`crossfed.simulations.tidy`), the report (:mod:`crossfed.simulations.report`) and the figures
(:mod:`crossfed.simulations.plots`) from everything finished in ``DIR`` - so rerunning a finished
sweep only redraws, and ``--report-only`` redraws a sweep that is still running. Exit status:
0 every cell finished, 1 a cell failed or the data cannot be loaded, 2 a malformed experiment file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crossfed.shared.cli import Command

if TYPE_CHECKING:
    from crossfed.simulations.experiment import Experiment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment file, e.g. simulations/experiments/quick.toml")
    parser.add_argument("--out", help="sweep folder (default runs/sweep-<experiment name>)")
    parser.add_argument("--data-dir", default="", help="local dataset copy (else $CROSSFED_DATA_DIR or the cache)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="tidy table format")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the report")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rebuild tables, report and figures from the cells finished so far "
        "(safe while the sweep runs elsewhere)",
    )


def run(args: argparse.Namespace) -> int:
    from crossfed.simulations.experiment import load_experiment
    from crossfed.simulations.runner import configure_logging

    configure_logging(quiet=True)
    experiment = load_experiment(args.experiment)
    out = Path(args.out or f"runs/sweep-{experiment.name}")
    _check_data(experiment, args.data_dir)
    from tqdm import tqdm

    from crossfed.simulations.plots import draw_all
    from crossfed.simulations.report import render
    from crossfed.simulations.sweep import run_sweep
    from crossfed.simulations.tidy import collect

    print(f"sweep {experiment.name}: {len(experiment.cells)} cells -> {out}", flush=True)
    outcomes = []
    if not args.report_only:
        outcomes = run_sweep(
            experiment,
            out,
            args.data_dir,
            progress=False if args.quiet else None,
            on_event=tqdm.write if not args.quiet else lambda _: None,
        )
    tables = collect(experiment, out)
    if args.report_only:
        print(f"{len(tables.cells)} of {len(experiment.cells)} cells finished")
    out.mkdir(parents=True, exist_ok=True)
    paths = tables.write(out, args.format) if len(tables.cells) else []
    report = render(experiment, tables, out)
    (out / "report.md").write_text(report + "\n")
    figures = draw_all(experiment, tables, out / "plots") if len(tables.cells) else []
    print(report)
    for path in [*paths, out / "report.md", *figures]:
        print(f"wrote {path}")
    failed = [o for o in outcomes if o.status == "failed"]
    for outcome in failed:
        print(f"FAILED {outcome.cell.name}: {outcome.detail}", file=sys.stderr)
    if not args.report_only:
        print(
            f"{sum(o.status == 'done' for o in outcomes)} cells run, "
            f"{sum(o.status == 'skipped' for o in outcomes)} skipped (finished earlier), {len(failed)} failed"
        )
    return 1 if failed else 0


def _check_data(experiment: Experiment, data_dir: str) -> None:
    """Every dataset the experiment names must load before the first cell starts."""
    from crossfed.shared.data.datasets import load_dataset

    for dataset in sorted({cell.config(Path("."), data_dir).data.dataset for cell in experiment.cells}):
        load_dataset(dataset, str(Path(data_dir).resolve()) if data_dir else "")


command = Command(
    "sweep",
    "run every cell of an experiment TOML (resumable), then its report and figures",
    "researcher",
    add_arguments,
    run,
    description=__doc__,
)
