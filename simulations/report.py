"""The sweep's report: one Markdown table over its cells, grouped over seeds, plus the checks
that need several cells at once (gain over local-only per platform, time to centralized's best
validation HR@k).

Groups are (arm, mode, gridded values); each row is the mean over the group's seeds, with
the seed standard deviation next to the headline metric. "Gain over local-only" pairs each
platform with its cell's local-only partner (:func:`local_only_partners`); "platforms sig. worse" runs a paired
bootstrap over that platform's test users on hits averaged over the shared seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfed.shared.evaluation.per_user_results import PerUserResults
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.evaluation.stats import paired_bootstrap
from crossfed.simulations.experiment import Experiment
from crossfed.simulations.sweep import CELLS_DIR
from crossfed.simulations.tidy import Tables, group_mean

_REPORTED = (
    "sampled_hr",
    "sampled_ndcg",
    "full_hr",
    "global_sampled_hr",
    "global_sampled_ndcg",
    "epsilon_spent_max",
    "wall_seconds",
    "round_seconds",
    "round_cpu_seconds",
    "peak_rss_mb",
    "peak_pss_mb",
    "bytes_up_per_round",
)


def grid_keys(experiment: Experiment) -> list[str]:
    """The keys some arm grids over: together with arm and mode they name a group."""
    keys: dict[str, None] = {}
    for cell in experiment.cells:
        keys.update(dict.fromkeys(cell.point))
    return list(keys)


def group_columns(experiment: Experiment) -> list[str]:
    return ["arm", "mode", *grid_keys(experiment)]


def summarise(experiment: Experiment, tables: Tables, out: Path) -> pd.DataFrame:
    """Mean over seeds per group, with the gain over local-only and the significance check."""
    by = group_columns(experiment)
    groups = group_mean(tables.cells, by, [c for c in _REPORTED if c in tables.cells])
    partners = local_only_partners(experiment, tables.cells)
    gains, worse = [], []
    for _, group in groups.iterrows():
        members = _members(tables.cells, by, group)
        gain, significantly_worse = _gain_over_local(tables, members, partners, out)
        gains.append(gain)
        worse.append(significantly_worse)
    groups["gain_over_local_only"] = gains
    groups["platforms_significantly_worse"] = worse
    return groups


def local_only_partners(experiment: Experiment, cells: pd.DataFrame) -> pd.Series:
    """Each cell's local-only partner, indexed by cell: the local-only cell of the same seed, platform
    count and partition, and of the same value of every grid key the local-only cells differ on.

    A tuning grid trains local-only at each batch size, so a federated cell at batch 64 must meet
    local-only at batch 64; an epsilon grid does not apply to local-only, which then has one cell per
    seed for every epsilon. A cell with no partner, or with several equally good ones, has none
    (NaN) rather than an arbitrary one.
    """
    local = cells[cells["mode"] == "local-only"]
    varying = [key for key in grid_keys(experiment) if key in local and local[key].nunique() > 1]
    keys = ["seed", "platforms", "partition", *varying]
    references = local.drop_duplicates(keys, keep=False)[[*keys, "cell"]].rename(columns={"cell": "partner"})
    paired = cells[["cell", *keys]].merge(references, on=keys, how="left")
    return paired.set_index("cell")["partner"]


def _members(cells: pd.DataFrame, by: Sequence[str], group: pd.Series) -> pd.DataFrame:
    mask = np.ones(len(cells), bool)
    for key in by:
        value = group[key]
        mask &= cells[key].isna().to_numpy() if _missing(value) else (cells[key] == value).to_numpy()
    return cells[mask]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _gain_over_local(tables: Tables, members: pd.DataFrame, partners: pd.Series, out: Path) -> tuple[float, str]:
    """Mean over platforms and seeds of (served HR - local-only HR); platforms significantly worse."""
    if members.empty or (members["mode"] == "local-only").all():
        return math.nan, ""
    pairs = [(cell, partners[cell]) for cell in members["cell"] if isinstance(partners.get(cell), str)]
    if not pairs:
        return math.nan, ""
    per_platform = tables.platforms.set_index(["cell", "platform"])["sampled_hr"]
    diffs = [
        per_platform[cell, p] - per_platform[reference, p]
        for cell, reference in pairs
        for p in per_platform[cell].index
    ]
    worse = []
    for platform in per_platform[pairs[0][0]].index:
        hits = [_hits(out, cell, platform) for cell, _ in pairs]
        reference = [_hits(out, ref, platform) for _, ref in pairs]
        if any(h is None for h in hits + reference) or len({len(h) for h in hits + reference}) != 1:
            return float(np.mean(diffs)), "n/a"
        interval = paired_bootstrap(np.mean(hits, axis=0) - np.mean(reference, axis=0), seed=int(platform))
        if interval.significantly_negative:
            worse.append(str(platform))
    return float(np.mean(diffs)), ", ".join(worse) or "none"


def _hits(out: Path, cell: str, platform: int) -> np.ndarray | None:
    results = PerUserResults.load(platform_dir(out / CELLS_DIR / cell, platform))
    return results.hits["sampled"] if results is not None else None


def time_to_reach(tables: Tables, grid: Sequence[str] = ()) -> pd.DataFrame:
    """Per seed: when the non-private federated run first reaches centralized's best validation HR@k, against
    the time centralized needed to reach it (issue 16's time to quality).

    Centralized's best is its validation HR@k at its early-stopping ``selected_round`` (the curve's
    first best round when the cell does not say), and its time is the elapsed time of that round:
    the point where it had the model it is tested with. Federated reaches the target at its first
    round at or above it; if it never does, ``federated_round`` is -1, the ratio is infinite, and
    ``federated_best_val_hr`` / ``federated_best_round`` say how close it came and when.

    Two clocks: ``*_seconds`` is training time (the histories' ``elapsed_seconds``, which start
    once data are loaded and models built - for federated, once every platform is ready), and
    ``*_with_startup`` adds each run's ``startup_seconds`` (Ray's workers, imports, data loading).
    ``ratio`` compares the first, ``ratio_with_startup`` the second.

    A federated cell is paired with the centralized cells of the same seed, platforms and partition
    at the same grid point: the same value of every key in ``grid`` (the experiment's gridded keys;
    a key neither cell sets matches). An experiment that grids a setting over both modes thus
    compares each setting with itself, while separate arms without a grid (one arm per mode) are
    paired with each other.
    """
    history, cells = tables.history, tables.cells
    rows = []
    federated = cells[(cells["mode"] == "federated") & (cells["privacy_unit"] == "none")]
    for _, fed in federated.iterrows():
        centralized = cells[
            (cells["mode"] == "centralized")
            & (cells["seed"] == fed["seed"])
            & (cells["platforms"] == fed["platforms"])
            & (cells["partition"] == fed["partition"])
        ]
        for key in grid:
            if key in centralized:
                centralized = centralized[
                    centralized[key].isna() if _missing(fed.get(key)) else centralized[key] == fed[key]
                ]
        fed_curve = _curve(history, fed["cell"])
        if fed_curve.empty:
            continue
        fed_best = fed_curve.loc[fed_curve["val_sampled_hr"].idxmax()]
        for _, central in centralized.iterrows():
            cen_best = _selected(_curve(history, central["cell"]), central)
            if cen_best is None:
                continue
            target = float(cen_best["val_sampled_hr"])
            cen_time = float(cen_best["elapsed_seconds"])
            cen_total = cen_time + _startup(central)
            fed_first = _first_reaching(fed_curve, target)
            fed_time = math.nan if fed_first is None else float(fed_first["elapsed_seconds"])
            fed_total = fed_time + _startup(fed)
            rows.append(
                {
                    "seed": fed["seed"],
                    "platforms": fed["platforms"],
                    "federated_arm": fed["arm"],
                    "centralized_arm": central["arm"],
                    "target_val_hr": target,
                    "centralized_epoch": int(cen_best["round"]),
                    "centralized_seconds": cen_time,
                    "federated_round": -1 if fed_first is None else int(fed_first["round"]),
                    "federated_seconds": fed_time,
                    "ratio": math.inf if fed_first is None else fed_time / cen_time,
                    "federated_with_startup": fed_total,
                    "centralized_with_startup": cen_total,
                    "ratio_with_startup": math.inf if fed_first is None else fed_total / cen_total,
                    "federated_best_val_hr": float(fed_best["val_sampled_hr"]),
                    "federated_best_round": int(fed_best["round"]),
                }
            )
    return pd.DataFrame(rows)


def _curve(history: pd.DataFrame, cell: str) -> pd.DataFrame:
    """A cell's validation curve in round order, rounds without a validation figure left out."""
    return history[history["cell"] == cell].sort_values("round").dropna(subset=["val_sampled_hr"])


def _selected(curve: pd.DataFrame, cell: pd.Series) -> pd.Series | None:
    """The round of ``curve`` early stopping selected (``selected_round``); the first best one if the cell
    does not name a measured round; None for an empty curve."""
    if curve.empty:
        return None
    selected = cell.get("selected_round", math.nan)
    chosen = curve[curve["round"] == selected] if not _missing(selected) else curve.iloc[:0]
    return chosen.iloc[0] if len(chosen) else curve.loc[curve["val_sampled_hr"].idxmax()]


def _startup(cell: pd.Series) -> float:
    """A cell's start-up seconds; 0 for results written before runs reported it."""
    value = cell.get("startup_seconds", math.nan)
    return 0.0 if _missing(value) else float(value)


def _first_reaching(curve: pd.DataFrame, target: float) -> pd.Series | None:
    """The first round (or epoch) of a validation curve at or above ``target``; None if it never gets there."""
    reached = curve[curve["val_sampled_hr"] >= target]
    return reached.iloc[0] if len(reached) else None


def render(experiment: Experiment, tables: Tables, out: Path) -> str:
    if tables.cells.empty:
        return f"# {experiment.name}\n\nNo finished cell yet."
    groups = summarise(experiment, tables, out)
    k = int(tables.cells["k"].iloc[0])
    keys = grid_keys(experiment)
    lines = [
        f"# {experiment.name}",
        "",
        experiment.description,
        "",
        (
            f"{len(tables.cells)} finished cells; test set, sampled = held-out item + "
            f"{int(tables.cells['eval-negatives'].iloc[0]) if 'eval-negatives' in tables.cells else 99} negatives; "
            f"mean over seeds (± seed std). Served = the model each platform serves."
        ),
        "",
    ]
    header = [
        "arm",
        "mode",
        *keys,
        "seeds",
        f"served HR@{k}",
        f"served NDCG@{k}",
        f"full HR@{k}",
        f"global HR@{k}",
        f"global NDCG@{k}",
        "ε spent (max)",
        "gain over local-only",
        "platforms sig. worse",
        "wall s",
        "round s",
        "round CPU s",
        "peak RSS / PSS MiB",
        "bytes up / platform / round",
    ]
    rows = []
    for _, g in groups.iterrows():
        cells = [
            str(g["arm"]),
            str(g["mode"]),
            *[_fmt(g[key]) for key in keys],
            str(int(g["seeds"])),
            f"{g['sampled_hr']:.4f} ± {g['sampled_hr_std']:.4f}",
            f"{g['sampled_ndcg']:.4f}",
            f"{g['full_hr']:.4f}",
            f"{g['global_sampled_hr']:.4f}",
            f"{g['global_sampled_ndcg']:.4f}",
            _fmt(g["epsilon_spent_max"], ".3f"),
            _fmt(g["gain_over_local_only"], "+.4f"),
            g["platforms_significantly_worse"] or "",
            _fmt(g["wall_seconds"], ".0f"),
            _fmt(g["round_seconds"], ".2f"),
            _fmt(g["round_cpu_seconds"], ".2f"),
            f"{_fmt(g['peak_rss_mb'], '.0f')} / {_fmt(g['peak_pss_mb'], '.0f')}",
            _fmt(g.get("bytes_up_per_round", math.nan), ",.0f"),
        ]
        rows.append(cells)
    # A column nobody fills (no DP cell, no local-only reference, ...) is left out.
    keep = [i for i, name in enumerate(header) if i < 2 or any(row[i].strip(" /") for row in rows)]
    lines += ["| " + " | ".join(header[i] for i in keep) + " |", "|" + "---|" * len(keep)]
    lines += ["| " + " | ".join(row[i] for i in keep) + " |" for row in rows]
    lines += time_to_quality_section(time_to_reach(tables, keys), k)
    loads = tables.cells["load_average_at_start"].dropna()
    if len(loads):
        lines += ["", f"Machine load (1-min average) when cells started: {loads.min():.1f} to {loads.max():.1f}."]
    return "\n".join(lines)


def time_to_quality_section(reach: pd.DataFrame, k: int) -> list[str]:
    """The report's time-to-quality table (:func:`time_to_reach`) as Markdown lines; none without a pair."""
    if reach.empty:
        return []
    lines = [
        "",
        (
            f"Time to quality: seconds until the non-private federated run first reaches centralized's best "
            f"validation HR@{k} (at centralized's early-stopping selected epoch), against the seconds "
            "centralized needed to reach it (target: federated ≤ 1.5 × centralized). Training seconds: "
            "from the moment every platform is ready (federated) or the pooled data and model are "
            "(centralized); with start-up: plus each run's start-up. Federated never reaching the "
            f"target shows its best validation HR@{k} (round) instead."
        ),
        "",
        (
            f"| federated arm | centralized arm | seed | platforms | target val HR@{k} | centralized s (epoch) "
            f"| federated s (round) | ratio | with start-up: centralized s | federated s | ratio "
            f"| federated's best val HR@{k} (round) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in reach.iterrows():
        reached = r["federated_round"] > 0
        federated = f"{r['federated_seconds']:.1f} ({r['federated_round']})" if reached else "never"
        lines.append(
            f"| {r['federated_arm']} | {r['centralized_arm']} | {r['seed']} | {r['platforms']} "
            f"| {r['target_val_hr']:.4f} | {r['centralized_seconds']:.1f} ({r['centralized_epoch']}) "
            f"| {federated} | {_fmt(r['ratio'], '.2f')} "
            f"| {r['centralized_with_startup']:.1f} | {_fmt(r['federated_with_startup'], '.1f')} "
            f"| {_fmt(r['ratio_with_startup'], '.2f')} "
            f"| {r['federated_best_val_hr']:.4f} ({r['federated_best_round']}) |"
        )
    lines += [
        "",
        "Pairs within 1.5 ×: "
        + ", ".join(
            f"{clock} {int((reach[column] <= 1.5).sum())} of {len(reach)}"
            for clock, column in (("training", "ratio"), ("with start-up", "ratio_with_startup"))
        )
        + ".",
    ]
    return lines


def _fmt(value: Any, spec: str = "") -> str:
    if _missing(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if isinstance(value, float) and not spec:
        return f"{value:g}"
    return format(value, spec) if spec else str(value)
