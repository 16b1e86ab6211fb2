"""A sweep's results as three tidy tables: one row per cell, per (cell, platform), per (cell, round).

Everything comes from files the cells wrote (``summary.json``, the results contract, and
the sweep's ``cell.json``), so the tables can be rebuilt at any time from a sweep folder.
Columns (``k`` = the config's ``top-k``, 10 by default):

* identity: ``experiment``, ``cell``, ``arm``, ``mode``, ``seed``, then one column per
  config key the experiment file mentions (its value in this cell; privacy settings are
  left empty in non-private cells, where they have no effect), then ``platforms``,
  ``partition``, ``rounds``, ``privacy_unit``, ``users`` (test users over all platforms);
* test metrics of the served model: ``sampled_hr``, ``sampled_ndcg``, ``full_hr``,
  ``full_ndcg``; of the global model: the same with a ``global_`` prefix; ``k``;
* privacy: ``epsilon_spent_max`` (largest ε any platform spent), ``delta``;
* early stopping: ``selected_round`` (the round or epoch whose model was tested) and
  ``stopped_round`` (the last one trained); 0 for popularity, which trains nothing; in the
  per-platform table a local-only platform's own rounds, since each stops on its own split;
* cost: ``wall_seconds`` (the whole run), ``startup_seconds`` (the part of it before
  training could start: for federated, Ray's workers started and every platform ready),
  ``round_seconds`` (mean duration of rounds 2..R; results made before start-up was timed
  apart carry it in round 1), ``first_round_seconds``,
  ``process_seconds`` (the cell's process, start-up and final test included),
  ``cpu_seconds`` / ``round_cpu_seconds`` (CPU time of the process tree: in all, and per
  round over rounds 2..R - less sensitive than wall time to other jobs on the machine),
  ``peak_rss_mb`` / ``peak_pss_mb`` (process tree), ``bytes_up_per_round`` /
  ``bytes_down_per_round`` (per platform, federated only), ``load_average_at_start``;
* audit (cells of an arm with an ``audit`` table, empty elsewhere): ``canaries``, ``ceiling``,
  ``epsilon_claimed``, and per adversary ``<adversary>_epsilon_lower_bound``,
  ``<adversary>_auroc``, ``<adversary>_tpr_at_1pct_fpr`` (adversaries as in ``audit.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from crossfed.shared.evaluation.ranking import PROTOCOLS
from crossfed.shared.evaluation.results import SUMMARY_FILE
from crossfed.simulations.audit.kinds import AUDIT_FILE
from crossfed.simulations.experiment import Experiment
from crossfed.simulations.sweep import CELL_FILE, cell_dir

#: Settings that only act under DP; shown empty in non-private cells.
PRIVACY_KEYS = frozenset(
    {
        "epsilon",
        "delta",
        "noise-multiplier",
        "clip-norm",
        "user-batch",
        "bag-positives",
        "refresh-steps",
        "refresh-learning-rate",
        "accountant",
    }
)
#: Each adversary's figures in ``audit.json``, one column each.
AUDIT_FIGURES = ("epsilon_lower_bound", "auroc", "tpr_at_1pct_fpr")
_COST = (
    "process_seconds",
    "cpu_seconds",
    "round_cpu_seconds",
    "peak_rss_mb",
    "peak_pss_mb",
    "bytes_up_per_round",
    "bytes_down_per_round",
    "load_average_at_start",
)


@dataclass(frozen=True)
class Tables:
    cells: pd.DataFrame
    platforms: pd.DataFrame
    history: pd.DataFrame

    def write(self, out: Path, fmt: str = "csv") -> list[Path]:
        paths = []
        for name, frame in (("results", self.cells), ("per_platform", self.platforms), ("history", self.history)):
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            paths.append(path)
        return paths


def collect(experiment: Experiment, out: Path) -> Tables:
    """Rows for every finished cell of ``experiment`` under ``out`` (unfinished cells are left out)."""
    cells, platforms, history = [], [], []
    for cell in experiment.cells:
        directory = cell_dir(out, cell)
        if not (directory / CELL_FILE).exists():
            continue
        summary = json.loads((directory / SUMMARY_FILE).read_text())
        record = json.loads((directory / CELL_FILE).read_text())
        identity = _identity(experiment, cell.name, record, summary)
        cells.append(
            {
                **identity,
                "users": sum(entry["users"] for entry in summary["per_platform"]),
                **_metrics(summary["metrics"], summary["global_metrics"], summary),
                **_privacy(summary),
                **_timing(summary),
                **_stopping(summary),
                **{key: math.nan if record.get(key) is None else record[key] for key in _COST},
                **_audit(directory / AUDIT_FILE),
            }
        )
        for entry in summary["per_platform"]:
            platforms.append(
                {
                    **identity,
                    "platform": entry["platform"],
                    "users": entry["users"],
                    **_metrics(entry["metrics"], entry["global_metrics"], summary),
                    **_stopping(summary, entry["platform"]),
                }
            )
        for entry in summary["history"]:
            validation = entry.get("validation", {})
            epsilon = [float(e) for e in entry.get("epsilon", {}).values()]
            history.append(
                {
                    **identity,
                    "round": entry["round"],
                    "elapsed_seconds": entry["elapsed_seconds"],
                    "train_loss": _number(entry.get("train_loss")),
                    **{
                        f"val_{name}": validation.get(name, math.nan)
                        for name in ("sampled_hr", "sampled_ndcg", "full_hr", "full_ndcg")
                    },
                    "epsilon_spent_max": max(epsilon) if epsilon else math.nan,
                }
            )
    return Tables(pd.DataFrame(cells), pd.DataFrame(platforms), pd.DataFrame(history))


def _identity(experiment: Experiment, name: str, record: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    config = summary["config"]
    private = config["privacy-unit"] != "none"
    row: dict[str, Any] = {
        "experiment": experiment.name,
        "cell": name,
        "arm": record["arm"],
        "mode": record["mode"],
        "seed": record["seed"],
    }
    for key in experiment.keys:
        row[key] = _number(config.get(key)) if private or key not in PRIVACY_KEYS else None
    row.update(
        platforms=summary["platforms"],
        partition=summary["partition"],
        rounds=summary["rounds"],
        privacy_unit=config["privacy-unit"],
    )
    return row


def _metrics(served: dict[str, Any] | None, final: dict[str, Any] | None, summary: dict[str, Any]) -> dict[str, Any]:
    k = summary["config"]["top-k"]
    row: dict[str, Any] = {}
    for prefix, block in (("", served), ("global_", final)):
        for protocol in PROTOCOLS:
            for metric in ("hr", "ndcg"):
                row[f"{prefix}{protocol}_{metric}"] = block[protocol][f"{metric}@{k}"] if block else math.nan
    row["k"] = k
    return row


def _privacy(summary: dict[str, Any]) -> dict[str, Any]:
    privacy = summary.get("privacy")
    if not privacy:
        return {"epsilon_spent_max": math.nan, "delta": math.nan}
    spent = [_number(v) for v in privacy.get("epsilon", {}).values()]
    return {"epsilon_spent_max": max(spent) if spent else math.nan, "delta": privacy.get("delta", math.nan)}


def _audit(path: Path) -> dict[str, Any]:
    """The audit's figures as flat columns; none for a cell that was not audited."""
    if not path.exists():
        return {}
    audit = json.loads(path.read_text())
    row: dict[str, Any] = {
        "canaries": audit["canaries"],
        "ceiling": _number(audit["ceiling"]),
        "epsilon_claimed": math.nan if audit["epsilon_claimed"] is None else _number(audit["epsilon_claimed"]),
    }
    for adversary, figures in audit["adversaries"].items():
        for figure in AUDIT_FIGURES:
            row[f"{adversary}_{figure}"] = _number(figures[figure])
    return row


def _timing(summary: dict[str, Any]) -> dict[str, Any]:
    elapsed = [entry["elapsed_seconds"] for entry in summary["history"]]
    return {
        "wall_seconds": summary["wall_seconds"],
        "startup_seconds": summary.get("startup_seconds", math.nan),
        "first_round_seconds": elapsed[0] if elapsed else math.nan,
        "round_seconds": (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1) if len(elapsed) > 1 else math.nan,
    }


def _stopping(summary: dict[str, Any], platform: int | None = None) -> dict[str, Any]:
    """The early-stopping outcome: the round whose model was tested and the last round trained.

    Local-only stops each platform on its own validation split, so a platform's row carries its
    own rounds; every other mode stops once for the whole run. Results written before early
    stopping existed leave both empty.
    """
    row = {}
    for key in ("selected_round", "stopped_round"):
        own = summary.get(f"{key}s", {}) if platform is not None else {}
        value = own.get(str(platform), summary.get(key))
        row[key] = math.nan if value is None else value
    return row


def _number(value: Any) -> Any:
    """``summary.json`` writes non-finite floats as strings ("inf", "nan"); the tables want numbers."""
    if isinstance(value, str) and value.lower() in {"inf", "-inf", "nan", "infinity", "-infinity"}:
        return float(value)
    return value


def group_mean(frame: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation over seeds (``ddof=0``: one seed gives a spread of 0, not NaN)."""
    grouped = frame.groupby(list(by), dropna=False, sort=False)[list(columns)]
    mean, std = grouped.mean(), grouped.std(ddof=0)
    result = mean.join(std, rsuffix="_std")
    result["seeds"] = grouped.size()
    return result.reset_index()
