"""Run every cell of an experiment, resumably, and collect the results into tidy tables.

Each cell runs :func:`crossfed.simulations.runner.run_mode` - the same function as
``crossfed run`` - but in a fresh child process (``spawn``), one cell at a
time. The child is what makes a long sweep safe: Flower's simulation engine starts and
stops Ray inside every federated run, and a process that lives through dozens of runs
keeps Ray's driver state, torch's allocator arenas and every imported dataset; a child
gives each cell a clean slate and returns all its memory when it exits. It also gives
each cell a process tree whose peak memory and CPU time can be measured (CPU seconds per
round are read at every round the child reports), and a log file of its own.
The child reports finished rounds through a queue, which drives the progress bar.
A cell of an arm with an ``audit`` table runs through the audit runner instead
(:func:`crossfed.simulations.audit.runner.run_audit`), which writes ``audit.json`` beside
``summary.json``; an audited cell always starts over, since its canaries are drawn into a
fresh copy of the data.

A cell is finished when its ``cell.json`` exists (written after ``summary.json``). On a
rerun, finished cells are skipped - after checking they were run with the same settings -
an interrupted federated cell continues from its last checkpoint, and an interrupted
baseline starts over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import queue as queue_module
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossfed.shared.evaluation.results import SUMMARY_FILE
from crossfed.shared.runtime.monitor import TreeMonitor
from crossfed.shared.runtime.proc import tree_pids
from crossfed.shared.storage.checked import atomic_write_bytes
from crossfed.shared.storage.checkpoint import Checkpoint
from crossfed.simulations.experiment import Cell, Experiment, ExperimentError

logger = logging.getLogger(__name__)

CELLS_DIR = "cells"
CELL_FILE = "cell.json"
LOG_FILE = "run.log"


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: str  # "skipped", "done" or "failed"
    seconds: float = 0.0
    detail: str = ""


def cell_dir(out: Path, cell: Cell) -> Path:
    return out / CELLS_DIR / cell.name


def run_sweep(
    experiment: Experiment,
    out: Path,
    data_dir: str = "",
    progress: bool | None = None,
    on_event: Callable[[str], None] = logger.info,
) -> list[CellOutcome]:
    """Run the cells that are not finished yet; ``progress`` None shows the bar only on a terminal."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "experiment.toml", experiment.source.read_bytes())
    data_dir = str(Path(data_dir).resolve()) if data_dir else ""
    pending, outcomes = [], []
    for cell in experiment.cells:
        if _finished(out, cell):
            outcomes.append(CellOutcome(cell, "skipped"))
        else:
            pending.append(cell)
    for outcome in outcomes:
        on_event(f"[skip] {outcome.cell.name}: finished earlier")
    total_rounds = sum(cell.config(Path(".")).federation.num_server_rounds for cell in pending)
    bar = _bar(total_rounds, progress)
    try:
        for index, cell in enumerate(pending, 1):
            bar.set_description(f"cell {index}/{len(pending)} {cell.name}")
            outcome = _run_cell(out, cell, data_dir, bar)
            outcomes.append(outcome)
            on_event(
                f"[done] {cell.name}: {outcome.seconds:.0f}s"
                if outcome.status == "done"
                else f"[FAIL] {cell.name}: {outcome.detail}"
            )
    finally:
        bar.close()
    return outcomes


def _finished(out: Path, cell: Cell) -> bool:
    """Finished with the same settings; finished with other settings is an error, not a silent reuse."""
    path = cell_dir(out, cell) / CELL_FILE
    if not path.exists():
        return False
    recorded = json.loads(path.read_text())
    expected = jsonable(dict(cell.overrides))
    if recorded.get("audit") != jsonable(cell.audit):
        raise ExperimentError(
            f"{path}: cell {cell.name} was run with other audit settings ({recorded.get('audit')} instead of "
            f"{jsonable(cell.audit)}); use another --out, or delete that cell's folder to rerun it"
        )
    if recorded.get("overrides") != expected:
        changed = sorted(
            k
            for k in set(expected) | set(recorded.get("overrides", {}))
            if expected.get(k) != recorded.get("overrides", {}).get(k)
        )
        raise ExperimentError(
            f"{path}: cell {cell.name} was run with other settings (keys {changed}); "
            f"use another --out, or delete that cell's folder to rerun it"
        )
    return True


def _run_cell(out: Path, cell: Cell, data_dir: str, bar: Any) -> CellOutcome:
    directory = cell_dir(out, cell)
    resume = cell.mode == "federated" and cell.audit is None and (directory / Checkpoint.FILE_NAME).exists()
    if not resume:
        shutil.rmtree(directory, ignore_errors=True)  # an interrupted baseline starts over
    directory.mkdir(parents=True, exist_ok=True)
    config = cell.config(directory.resolve(), data_dir).replace(resume=resume)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    child = context.Process(
        target=_child_main,
        name=f"cell-{cell.name}",
        args=(cell.mode, config.to_flat(), jsonable(cell.audit), events, str(directory / LOG_FILE)),
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    started = time.perf_counter()
    child.start()
    assert child.pid is not None
    last_round: int | None = None
    measured: dict[str, Any] = {}
    cpu_at_round: list[float] = []
    with TreeMonitor(child.pid) as monitor:
        try:
            while True:
                try:
                    event = events.get(timeout=0.5)
                except queue_module.Empty:
                    if child.is_alive():
                        continue
                    break
                if event[0] == "round":
                    _, server_round, rounds = event
                    # A resumed run's first report counts one round, not every round since the start.
                    bar.update(server_round - (server_round - 1 if last_round is None else last_round))
                    bar.set_postfix_str(f"round {server_round}/{rounds}")
                    last_round = server_round
                    cpu_at_round.append(monitor.cpu_seconds())
                elif event[0] == "measured":
                    measured = event[1]
        except KeyboardInterrupt:
            child.join(30)  # the child got the same SIGINT and shuts Ray down
            if child.is_alive():
                _stop_tree(child.pid)
            raise
        child.join()
        cpu_seconds = monitor.cpu_seconds()
    seconds = time.perf_counter() - started
    if child.exitcode != 0 or not (directory / SUMMARY_FILE).exists():
        tail = (
            (directory / LOG_FILE).read_text(errors="replace").strip().splitlines()[-1:]
            if (directory / LOG_FILE).exists()
            else []
        )
        return CellOutcome(
            cell, "failed", seconds, f"exit code {child.exitcode}; {' '.join(tail)} (log: {directory / LOG_FILE})"
        )
    peak = monitor.peak
    record = {
        "cell": cell.name,
        "experiment": cell.experiment,
        "arm": cell.arm,
        "mode": cell.mode,
        "seed": cell.seed,
        "point": jsonable(dict(cell.point)),
        "overrides": jsonable(dict(cell.overrides)),
        "audit": jsonable(cell.audit),
        "resumed": resume,
        "process_seconds": round(seconds, 2),
        "load_average_at_start": load,
        "peak_rss_mb": round(peak.rss_mb, 1) if peak else None,
        "peak_pss_mb": round(peak.pss_mb, 1) if peak else None,
        "peak_processes": peak.processes if peak else None,
        "cpu_seconds": round(cpu_seconds, 1),
        # Rounds 2..R, as for round time: the CPU time read at round 1's end also holds the process's start-up.
        "round_cpu_seconds": round(float(np.mean(np.diff(cpu_at_round))), 2) if len(cpu_at_round) > 1 else None,
        **measured,
    }
    atomic_write_bytes(directory / CELL_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return CellOutcome(cell, "done", seconds)


def _child_main(
    mode: str, flat_config: dict[str, Any], audit: Mapping[str, Any] | None, events: Any, log_path: str
) -> None:
    """Inside the child: everything it prints goes to the cell's log, rounds go to the queue."""
    _die_with_parent()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    from crossfed.shared.config import RunConfig
    from crossfed.simulations.runner import configure_logging

    configure_logging(quiet=False)
    logging.getLogger("crossfed.progress").addHandler(_RoundForwarder(events))
    config = RunConfig.from_mapping(flat_config)
    run_cell_job(mode, config, audit)
    events.put(("measured", traffic(mode, config)))


def run_cell_job(mode: str, config: Any, audit: Mapping[str, Any] | None = None) -> None:
    """One cell's run in ``config``'s run folder: ``crossfed run`` in ``mode``, or ``crossfed audit`` with ``audit``."""
    if audit is None:
        from crossfed.simulations.runner import run_mode

        run_mode(mode, config)
        return
    from crossfed.simulations.audit.runner import run_audit

    if mode != "federated":
        raise ExperimentError(f"an audited cell must be federated, not {mode!r}")
    run_audit(config, audit["canaries"], audit["canary-items"], Path(config.experiment.run_dir), audit["canary-kind"])


def _stop_tree(root: int) -> None:
    """Stop a cell's child and the Ray processes it started (Flower's engine outlives a plain SIGTERM)."""
    pids = tree_pids(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(3)


def _die_with_parent() -> None:
    """A sweep stopped by a signal must not leave its current cell running on (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _RoundForwarder(logging.Handler):
    def __init__(self, events: Any) -> None:
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "server_round"):
            self.events.put(("round", record.server_round, record.rounds))


def traffic(mode: str, config: Any) -> dict[str, int]:
    """Bytes of parameters each platform sends and receives per round (federated runs only).

    Counted as Flower's serialised array payloads (``Array.data``) of the shared parameters:
    one upload (the train reply), two downloads (the train instruction and the validation
    request). Metric and config records - a few dozen scalars - are left out.
    """
    if mode != "federated":
        return {}
    from crossfed.server.federation import initial_arrays
    from crossfed.shared.protocol.records import to_array_record

    payload = sum(len(array.data) for array in to_array_record(initial_arrays(config)).values())
    return {"bytes_up_per_round": payload, "bytes_down_per_round": 2 * payload}


def jsonable(value: Any) -> Any:
    """Strict-JSON form used for comparing and storing settings (``inf`` becomes the string "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _bar(total: int, progress: bool | None) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="round",
        disable=None if progress is None else not progress,
        bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} rounds [{elapsed}<{remaining}] {postfix}",
        dynamic_ncols=True,
    )
