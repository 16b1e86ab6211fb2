"""The sweep's report: one Markdown table over its cells, grouped over seeds, plus the checks
that need several cells at once (gain over local-only per platform, time to reach an HR@10).

Groups are (arm, mode, gridded values); each row is the mean over the group's seeds, with
the seed standard deviation next to the headline metric. "Gain over local-only" pairs each
platform with the local-only cell of the same seed; "platforms sig. worse" runs a paired
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
    gains, worse = [], []
    for _, group in groups.iterrows():
        members = _members(tables.cells, by, group)
        gain, significantly_worse = _gain_over_local(tables, members, out)
        gains.append(gain)
        worse.append(significantly_worse)
    groups["gain_over_local_only"] = gains
    groups["platforms_significantly_worse"] = worse
    return groups


def _members(cells: pd.DataFrame, by: Sequence[str], group: pd.Series) -> pd.DataFrame:
    mask = np.ones(len(cells), bool)
    for key in by:
        value = group[key]
        mask &= cells[key].isna().to_numpy() if _missing(value) else (cells[key] == value).to_numpy()
    return cells[mask]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _gain_over_local(tables: Tables, members: pd.DataFrame, out: Path) -> tuple[float, str]:
    """Mean over platforms and seeds of (served HR - local-only HR); platforms significantly worse."""
    if members.empty or (members["mode"] == "local-only").all():
        return math.nan, ""
    local = tables.cells[
        (tables.cells["mode"] == "local-only")
        & (tables.cells["platforms"] == members["platforms"].iloc[0])
        & (tables.cells["partition"] == members["partition"].iloc[0])
    ]
    pairs = [
        (cell, local[local["seed"] == seed]["cell"].iloc[0])
        for cell, seed in zip(members["cell"], members["seed"])
        if (local["seed"] == seed).any()
    ]
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


def time_to_reach(tables: Tables) -> pd.DataFrame:
    """Per seed: when the non-private federated run first reaches its final validation HR@k, and when
    each centralized run with the same seed and platforms first reaches that same value.

    Two clocks: ``*_seconds`` is training time (the histories' ``elapsed_seconds``, which start
    once data are loaded and models built - for federated, once every platform is ready), and
    ``*_with_startup`` adds each run's ``startup_seconds`` (Ray's workers, imports, data loading).
    ``ratio`` compares the first, ``ratio_with_startup`` the second.

    Every federated arm is paired with every centralized arm, so an experiment that tunes each
    mode (a learning-rate arm per mode) compares best with best, not tuned with default.
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
        fed_curve = history[history["cell"] == fed["cell"]].sort_values("round").dropna(subset=["val_sampled_hr"])
        if centralized.empty or fed_curve.empty:
            continue
        target = float(fed_curve["val_sampled_hr"].iloc[-1])
        fed_first = _first_reaching(fed_curve, target)
        assert fed_first is not None  # the final round reaches its own value
        fed_time = float(fed_first["elapsed_seconds"])
        fed_total = fed_time + _startup(fed)
        for _, central in centralized.iterrows():
            cen_first = _first_reaching(history[history["cell"] == central["cell"]].sort_values("round"), target)
            cen_time = math.nan if cen_first is None else float(cen_first["elapsed_seconds"])
            cen_total = cen_time + _startup(central)
            rows.append(
                {
                    "seed": fed["seed"],
                    "platforms": fed["platforms"],
                    "federated_arm": fed["arm"],
                    "centralized_arm": central["arm"],
                    "target_val_hr": target,
                    "federated_round": int(fed_first["round"]),
                    "centralized_epoch": -1 if cen_first is None else int(cen_first["round"]),
                    "federated_seconds": fed_time,
                    "centralized_seconds": cen_time,
                    "ratio": math.inf if cen_first is None else fed_time / cen_time,
                    "federated_with_startup": fed_total,
                    "centralized_with_startup": cen_total,
                    "ratio_with_startup": math.inf if cen_first is None else fed_total / cen_total,
                }
            )
    return pd.DataFrame(rows)


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
    reach = time_to_reach(tables)
    if not reach.empty:
        lines += [
            "",
            (
                f"Time to reach the non-private federated run's final validation HR@{k} (target: "
                "federated ≤ 1.5 × centralized). Training seconds: from the moment every platform is "
                "ready (federated) or the pooled data and model are (centralized); with start-up: plus "
                "each run's start-up."
            ),
            "",
            (
                f"| federated arm | centralized arm | seed | platforms | val HR@{k} | federated s (round) "
                "| centralized s (epoch) | ratio | with start-up: federated s | centralized s | ratio |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in reach.iterrows():
            epoch = f" ({r['centralized_epoch']})" if r["centralized_epoch"] > 0 else " (never)"
            lines.append(
                f"| {r['federated_arm']} | {r['centralized_arm']} | {r['seed']} | {r['platforms']} "
                f"| {r['target_val_hr']:.4f} | {r['federated_seconds']:.1f} ({r['federated_round']}) "
                f"| {_fmt(r['centralized_seconds'], '.1f')}{epoch} | {_fmt(r['ratio'], '.2f')} "
                f"| {r['federated_with_startup']:.1f} | {_fmt(r['centralized_with_startup'], '.1f')} "
                f"| {_fmt(r['ratio_with_startup'], '.2f')} |"
            )
        if reach["centralized_arm"].nunique() > 1:
            lines += [
                "",
                "Against the fastest centralized arm (each federated arm's own target), mean over seeds: "
                + "; ".join(
                    f"{clock} {_against_fastest(reach, suffix)}"
                    for clock, suffix in (("training", "_seconds"), ("with start-up", "_with_startup"))
                )
                + ".",
            ]
    loads = tables.cells["load_average_at_start"].dropna()
    if len(loads):
        lines += ["", f"Machine load (1-min average) when cells started: {loads.min():.1f} to {loads.max():.1f}."]
    return "\n".join(lines)


def _against_fastest(reach: pd.DataFrame, suffix: str) -> str:
    """Per federated arm: mean over seeds of its time over the fastest centralized arm's, then each seed's."""
    fastest = reach.groupby(["federated_arm", "seed"]).agg(
        federated=(f"federated{suffix}", "first"), centralized=(f"centralized{suffix}", "min")
    )
    # No centralized arm reached the target: the ratio is unbounded, not missing.
    ratios = (fastest["federated"] / fastest["centralized"]).fillna(math.inf).groupby(level="federated_arm")
    return ", ".join(
        f"{arm} {_fmt(ratio.mean(), '.2f')} ({', '.join(_fmt(r, '.2f') for r in ratio)})" for arm, ratio in ratios
    )


def _fmt(value: Any, spec: str = "") -> str:
    if _missing(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if isinstance(value, float) and not spec:
        return f"{value:g}"
    return format(value, spec) if spec else str(value)
