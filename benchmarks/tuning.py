"""A sweep's tuning read out per mode: which setting wins on validation, and issue 16's time to quality on one.

``python benchmarks/tuning.py SWEEP_DIR [SWEEP_DIR ...] [--setting batch-size=64,learning-rate=0.002,local-epochs=1]
[--round-cost COST_SWEEP_DIR]``

``SWEEP_DIR`` is a finished (or partly finished) ``crossfed sweep`` folder of an experiment that grids
optimiser settings over the model-training modes, such as ``simulations/experiments/tuning.toml``.
Several folders are read as one sweep (a later folder's cell replaces an earlier one of the same
name), so new arms run into a fresh folder can be scored beside the tidy tables of an earlier run.
A local-only cell is scored from its ``summary.json`` (its platforms stop on their own); one whose
summary is in no folder is left out of the tables, and the output names it.
Every cell is scored by its validation HR@10 at the round early stopping selected (a local-only cell:
each platform at its own selected round, pooled over the platforms' users), never by a test figure.
Prints, per mode, one row per setting: seeds, mean ± standard error over the seeds of that
validation score, the mean selected round, the mean test HR@10 / NDCG@10 of the selected models and
the mean CPU seconds of the cell's process tree; the setting with the best mean, and which others lie
within one standard error of it. Then, for ``--setting`` (default: the best federated setting) against
centralized at ``--centralized-setting`` (default: the same batch size and learning rate; ``best``: its
own best), issue 16's time to quality per seed: the first federated round at or above centralized's
selected validation HR@10, both runs' training-clock seconds to that point, the rounds and epochs it
took, and the CPU seconds they took at each cell's own CPU seconds per round or epoch.
A sweep's clock measures the machine's load as much as crossfed, so ``--round-cost`` names a second
sweep folder (``simulations/experiments/round_cost.toml``: one short federated and one short centralized
run, back to back) whose seconds per round and per epoch turn those rounds and epochs into a ratio
that does not depend on when each cell happened to run, in wall seconds and in CPU seconds of the
process tree (the fair clock on a shared machine). It writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from provenance import markdown, provenance

#: The optimiser knobs a tuning experiment grids; a setting is one value of each.
KNOBS = ("batch-size", "learning-rate", "local-epochs")
#: Modes whose cells are tuned (popularity trains nothing).
TUNED_MODES = ("federated", "centralized", "local-only")


def selected_validation(cell: pd.Series, history: pd.DataFrame, sweeps: Sequence[Path]) -> float:
    """The validation HR@10 of the model a cell was tested with (its early-stopping selected round).

    Federated and centralized stop once for the whole run; a local-only platform stops on its own,
    so its score is each platform's validation HR@10 at its own selected round, weighted by users
    (NaN when no folder holds the cell's summary).
    """
    if cell["mode"] != "local-only":
        rows = history[(history["cell"] == cell["cell"]) & (history["round"] == cell["selected_round"])]
        return float(rows["val_sampled_hr"].iloc[0]) if len(rows) else math.nan
    found = [path for sweep in sweeps if (path := sweep / "cells" / str(cell["cell"]) / "summary.json").exists()]
    if not found:
        return math.nan
    summary = json.loads(found[-1].read_text())
    by_round = {entry["round"]: entry.get("per_platform", {}) for entry in summary["history"]}
    total = weighted = 0.0
    for entry in summary["per_platform"]:
        platform, users = str(entry["platform"]), entry["users"]
        selected = int(summary["selected_rounds"][platform])
        weighted += users * by_round[selected][platform]["sampled_hr"]
        total += users
    return weighted / total if total else math.nan


def read_sweeps(sweeps: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells and histories of several sweep folders as one; a later folder's cell replaces an earlier one."""
    cells, histories, seen = [], [], set()
    for sweep in reversed(sweeps):
        results, history = pd.read_csv(sweep / "results.csv"), pd.read_csv(sweep / "history.csv")
        new = ~results["cell"].isin(seen)
        cells.append(results[new])
        histories.append(history[history["cell"].isin(results.loc[new, "cell"])])
        seen.update(results["cell"])
    return pd.concat(cells[::-1], ignore_index=True), pd.concat(histories[::-1], ignore_index=True)


def score_cells(cells: pd.DataFrame, history: pd.DataFrame, sweeps: Sequence[Path]) -> pd.DataFrame:
    """The non-private cells of the tuned modes, each with ``val_selected`` added."""
    cells = cells[cells["mode"].isin(TUNED_MODES) & (cells["privacy_unit"] == "none")].copy()
    cells["val_selected"] = [selected_validation(cell, history, sweeps) for _, cell in cells.iterrows()]
    return cells


def per_setting(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (mode, setting): means over seeds and the standard error of the validation score."""
    knobs = [knob for knob in KNOBS if knob in cells]
    grouped = cells.groupby(["mode", *knobs], sort=False)
    table = grouped.agg(
        seeds=("seed", "size"),
        val_mean=("val_selected", "mean"),
        val_std=("val_selected", "std"),
        selected_round=("selected_round", "mean"),
        stopped_round=("stopped_round", "mean"),
        test_hr=("sampled_hr", "mean"),
        test_ndcg=("sampled_ndcg", "mean"),
        cpu_seconds=("cpu_seconds", "mean"),
        round_cpu_seconds=("round_cpu_seconds", "mean"),
    ).reset_index()
    table["val_se"] = table["val_std"] / table["seeds"].pow(0.5)
    return table


def winners(table: pd.DataFrame) -> dict[str, pd.Series]:
    """Per mode, the setting with the best mean validation score (among those with the most seeds)."""
    best = {}
    for mode, rows in table.groupby("mode", sort=False):
        complete = rows[rows["seeds"] == rows["seeds"].max()]
        best[str(mode)] = complete.loc[complete["val_mean"].idxmax()]
    return best


def setting_label(row: Mapping[str, object], knobs: Sequence[str]) -> str:
    return ", ".join(f"{knob} {_number(row[knob])}" for knob in knobs)


def time_to_quality(
    cells: pd.DataFrame,
    history: pd.DataFrame,
    setting: Mapping[str, float],
    centralized_setting: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per seed: federated's first round at ``setting`` at centralized's selected validation HR@10, and both clocks.

    Centralized is taken at ``centralized_setting``; by default at the same batch size and learning rate
    (``local-epochs`` is federated's own knob).
    """
    if centralized_setting is None:
        centralized_setting = {knob: value for knob, value in setting.items() if knob != "local-epochs"}
    federated = _at(cells[cells["mode"] == "federated"], setting)
    centralized = _at(cells[cells["mode"] == "centralized"], centralized_setting)
    rows = []
    for _, fed in federated.sort_values("seed").iterrows():
        match = centralized[centralized["seed"] == fed["seed"]]
        if match.empty:
            continue
        cen = match.iloc[0]
        cen_curve = history[history["cell"] == cen["cell"]].sort_values("round")
        fed_curve = history[history["cell"] == fed["cell"]].sort_values("round")
        cen_best = cen_curve[cen_curve["round"] == cen["selected_round"]].iloc[0]
        target = float(cen_best["val_sampled_hr"])
        reached = fed_curve[fed_curve["val_sampled_hr"] >= target]
        first = reached.iloc[0] if len(reached) else None
        rows.append(
            {
                "seed": int(fed["seed"]),
                "target": target,
                "centralized_epoch": int(cen_best["round"]),
                "centralized_seconds": float(cen_best["elapsed_seconds"]),
                "federated_round": int(first["round"]) if first is not None else -1,
                "federated_seconds": float(first["elapsed_seconds"]) if first is not None else math.nan,
                "federated_best": float(fed_curve["val_sampled_hr"].max()),
                "federated_best_round": int(fed_curve.loc[fed_curve["val_sampled_hr"].idxmax(), "round"]),
                "federated_round_cpu": float(fed["round_cpu_seconds"]),
                "centralized_round_cpu": float(cen["round_cpu_seconds"]),
                "load_federated": float(fed["load_average_at_start"]),
                "load_centralized": float(cen["load_average_at_start"]),
            }
        )
    return pd.DataFrame(rows)


def round_cost(sweep: Path) -> dict[str, pd.Series]:
    """Per mode, the cost of one round (federated) or epoch (centralized) in a round-cost sweep folder."""
    cells = pd.read_csv(sweep / "results.csv")
    return {mode: cells[cells["mode"] == mode].iloc[0] for mode in ("federated", "centralized")}


def _at(cells: pd.DataFrame, setting: Mapping[str, float]) -> pd.DataFrame:
    mask = pd.Series(True, index=cells.index)
    for knob, value in setting.items():
        mask &= (cells[knob] - value).abs() < 1e-12
    return cells[mask]


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parse_setting(text: str) -> dict[str, float]:
    setting = {}
    for part in text.split(","):
        knob, _, value = part.partition("=")
        if knob not in KNOBS or not value:
            raise SystemExit(f"--setting: expected knob=value pairs of {KNOBS}, got {part!r}")
        setting[knob] = float(value)
    return setting


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", type=Path, nargs="+", metavar="sweep")
    parser.add_argument("--setting", help="knob=value,...: federated's setting in the time-to-quality table")
    parser.add_argument(
        "--centralized-setting",
        help="knob=value,...: centralized's setting there (default: --setting's batch size and learning rate; "
        "'best': centralized's own best)",
    )
    parser.add_argument("--round-cost", type=Path, help="sweep folder of round_cost.toml, measured back to back")
    args = parser.parse_args(argv)
    cells, history = read_sweeps(args.sweeps)
    cells = score_cells(cells, history, args.sweeps)
    unscored = cells[cells["val_selected"].isna()]
    cells = cells[cells["val_selected"].notna()]
    table = per_setting(cells)
    knobs = [knob for knob in KNOBS if knob in table]
    best = winners(table)
    print(markdown(provenance()))
    loads = cells["load_average_at_start"]
    print(f"\n{len(cells)} cells; 1-minute load when they started: {loads.min():.1f} to {loads.max():.1f}.")
    if len(unscored):
        print(f"Left out, no per-platform validation history in any folder: {', '.join(unscored['cell'])}.")
    for mode in TUNED_MODES:
        rows = table[table["mode"] == mode].sort_values("val_mean", ascending=False)
        if rows.empty:
            continue
        print(
            f"\n### {mode}\n\n| setting | seeds | val HR@10 at the selected round, mean ± SE | selected / stopped "
            "round (mean) | test HR@10 | test NDCG@10 | CPU s (round CPU s) |\n|---|---|---|---|---|---|---|"
        )
        for _, row in rows.iterrows():
            print(
                f"| {setting_label(row, knobs)} | {row['seeds']} | {row['val_mean']:.4f} ± {row['val_se']:.4f} "
                f"| {row['selected_round']:.1f} / {row['stopped_round']:.1f} | {row['test_hr']:.4f} "
                f"| {row['test_ndcg']:.4f} | {row['cpu_seconds']:.0f} ({row['round_cpu_seconds']:.2f}) |"
            )
        top = best[mode]
        tied = [
            setting_label(row, knobs)
            for _, row in rows.iterrows()
            if row["seeds"] == top["seeds"]
            and setting_label(row, knobs) != setting_label(top, knobs)
            and row["val_mean"] >= top["val_mean"] - top["val_se"]
        ]
        print(
            f"\nBest mean: {setting_label(top, knobs)} ({top['val_mean']:.4f} ± {top['val_se']:.4f}); "
            f"within one standard error of it: {', '.join(tied) or 'none'}."
        )
    setting = _parse_setting(args.setting) if args.setting else {knob: float(best["federated"][knob]) for knob in knobs}
    centralized_setting = (
        {knob: float(best["centralized"][knob]) for knob in knobs}
        if args.centralized_setting == "best"
        else _parse_setting(args.centralized_setting)
        if args.centralized_setting
        else None
    )
    reach = time_to_quality(cells, history, setting, centralized_setting)
    if not reach.empty:
        whole = ("seed", "centralized_epoch", "federated_round", "federated_best_round")
        reach = reach.astype(dict.fromkeys(whole, int))
    print(
        f"\n### Time to quality: federated at {', '.join(f'{k} {v:g}' for k, v in setting.items())}; centralized at "
        f"{', '.join(f'{k} {v:g}' for k, v in centralized_setting.items()) if centralized_setting else 'the same'}\n\n"
        "| seed | target: centralized's selected val HR@10 (epoch) | centralized s | federated reaches it "
        "(round) | federated s | ratio (sweep clock) | federated's best (round) | load at start fed / cen "
        "| rounds x CPU-s/round, federated / centralized (ratio) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for r in reach.to_dict("records"):
        hit = r["federated_round"] > 0
        central_cpu = r["centralized_epoch"] * r["centralized_round_cpu"]
        federated_cpu = r["federated_round"] * r["federated_round_cpu"]
        cpu = (
            f"{federated_cpu:.0f} / {central_cpu:.0f} ({federated_cpu / central_cpu:.2f})"
            if hit
            else f"never / {central_cpu:.0f} (∞)"
        )
        print(
            f"| {r['seed']} | {r['target']:.4f} ({r['centralized_epoch']}) | {r['centralized_seconds']:.1f} "
            f"| {'round ' + str(r['federated_round']) if hit else 'never'} "
            f"| {r['federated_seconds']:.1f} | {r['federated_seconds'] / r['centralized_seconds']:.2f} "
            f"| {r['federated_best']:.4f} ({r['federated_best_round']}) "
            f"| {r['load_federated']:.1f} / {r['load_centralized']:.1f} | {cpu} |"
            if hit
            else f"| {r['seed']} | {r['target']:.4f} ({r['centralized_epoch']}) | {r['centralized_seconds']:.1f} "
            f"| never | - | ∞ | {r['federated_best']:.4f} ({r['federated_best_round']}) "
            f"| {r['load_federated']:.1f} / {r['load_centralized']:.1f} | {cpu} |"
        )
    if args.round_cost:
        _print_round_cost(round_cost(args.round_cost), reach)
    return 0


def _print_round_cost(cost: Mapping[str, pd.Series], reach: pd.DataFrame) -> None:
    """Seconds per round and per epoch measured back to back, and the time-to-quality ratio they give."""
    fed, cen = cost["federated"], cost["centralized"]
    print(
        f"\nBack to back ({cost['federated']['cell']}, {cost['centralized']['cell']}; load at start "
        f"{fed['load_average_at_start']:.1f} / {cen['load_average_at_start']:.1f}): a federated round "
        f"{fed['round_seconds']:.2f} s ({fed['round_cpu_seconds']:.2f} CPU-s), a centralized epoch "
        f"{cen['round_seconds']:.2f} s ({cen['round_cpu_seconds']:.2f} CPU-s); rounds 2 onwards, validation included."
    )
    print(
        "\n| seed | federated rounds x s/round | centralized epochs x s/epoch | ratio "
        "| federated rounds x CPU-s/round | centralized epochs x CPU-s/epoch | ratio, CPU |"
        "\n|---|---|---|---|---|---|---|"
    )
    for r in reach.to_dict("records"):
        cells = []
        for column in ("round_seconds", "round_cpu_seconds"):
            central = r["centralized_epoch"] * cen[column]
            epochs = f"{r['centralized_epoch']} x {cen[column]:.2f} = {central:.1f}"
            if r["federated_round"] <= 0:
                cells += ["never", epochs, "∞"]
                continue
            federated = r["federated_round"] * fed[column]
            cells += [
                f"{r['federated_round']} x {fed[column]:.2f} = {federated:.1f}",
                epochs,
                f"{federated / central:.2f}",
            ]
        print(f"| {r['seed']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
