"""The sweep's figures (matplotlib, PNG), drawn from the tidy tables alone.

Each figure is drawn only when the sweep holds what it needs:

* ``privacy_utility.png``: HR@10 and NDCG@10 against ε for the private federated cells
  (served and global model), local-only, centralized and non-private federated as
  reference lines; error bars and bands are the seed standard deviation;
* ``convergence.png``: validation HR@10 per round for every group (mean over seeds);
* ``platform_gain.png``: per platform, each group's test HR@10 minus local-only's (same seed);
* ``scaling.png``: round time and peak memory against the number of platforms (and
  against users per platform when the experiment varies ``max-users``, against catalog
  size when it varies ``extra-items``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from crossfed.simulations.experiment import Experiment
from crossfed.simulations.report import grid_keys, local_only_partners
from crossfed.simulations.tidy import Tables, group_mean

logger = logging.getLogger(__name__)


def draw_all(experiment: Experiment, tables: Tables, directory: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        logger.warning("matplotlib is not installed (pip install -e '.[plots]'): no figures")
        return []
    directory.mkdir(parents=True, exist_ok=True)
    title = experiment.name
    drawn = []
    for name, draw in (
        ("privacy_utility", privacy_utility),
        ("convergence", convergence),
        ("platform_gain", platform_gain),
        ("scaling", scaling),
    ):
        path = directory / f"{name}.png"
        if draw(experiment, tables, path, title):
            drawn.append(path)
    return drawn


def _label(row: pd.Series, keys: list[str], experiment: Experiment) -> str:
    """Arm, mode and the values of the keys this arm grids (another arm's grid says nothing here)."""
    own = {key for cell in experiment.cells if cell.arm == row["arm"] for key in cell.point}
    parts = [str(row["arm"]) if row["arm"] == row["mode"] else f"{row['arm']} ({row['mode']})"]
    parts += [f"{key}={_value(row[key])}" for key in keys if key in own and key in row and not _nan(row[key])]
    return ", ".join(parts)


def _value(value: object) -> str:
    return (
        "∞"
        if isinstance(value, float) and math.isinf(value)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def _nan(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def privacy_utility(experiment: Experiment, tables: Tables, path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    cells = tables.cells
    private = cells[(cells["mode"] == "federated") & (cells["privacy_unit"] != "none")]
    if "epsilon" not in private or private["epsilon"].nunique() < 2:
        return False
    metrics = [c for c in ("sampled_hr", "sampled_ndcg", "global_sampled_hr", "global_sampled_ndcg")]
    curve = group_mean(private, ["epsilon"], metrics).sort_values("epsilon")
    finite = curve["epsilon"][np.isfinite(curve["epsilon"])]
    # ∞ (the DP procedure without noise) sits one octave right of the largest finite ε, labelled ∞.
    top = float(finite.max()) * 2 if len(finite) else 1.0
    xs = np.where(np.isfinite(curve["epsilon"]), curve["epsilon"], top)
    references = {
        "local-only": ("local-only", "none", "tab:red"),
        "centralized": ("centralized", "none", "tab:purple"),
        "federated, non-private": ("federated", "none", "tab:green"),
    }
    k = int(cells["k"].iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, name in ((axes[0], "sampled_hr", f"HR@{k}"), (axes[1], "sampled_ndcg", f"NDCG@{k}")):
        ax.errorbar(
            xs, curve[metric], yerr=curve[f"{metric}_std"], fmt="o-", capsize=3, label="federated + DP, served model"
        )
        ax.errorbar(
            xs,
            curve[f"global_{metric}"],
            yerr=curve[f"global_{metric}_std"],
            fmt="s--",
            capsize=3,
            label="federated + DP, global model",
        )
        for label, (mode, unit, color) in references.items():
            rows = cells[(cells["mode"] == mode) & (cells["privacy_unit"] == unit)]
            if rows.empty:
                continue
            mean, std = rows[metric].mean(), rows[metric].std(ddof=0)
            ax.axhline(mean, color=color, linestyle=":", label=f"{label} ({len(rows)} seed{'s' * (len(rows) > 1)})")
            ax.axhspan(mean - std, mean + std, color=color, alpha=0.12)
        ax.set_xscale("log", base=2)
        ticks = list(xs)
        ax.set_xticks(ticks, [_value(float(e)) for e in curve["epsilon"]])
        ax.set_xlabel(f"ε per platform (user-level, whole run; δ = {float(private['delta'].iloc[0]):g})")
        ax.set_ylabel(f"sampled {name} on the test set (fraction)")
        ax.set_title(f"{name} against ε")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    seeds = sorted(int(seed) for seed in private["seed"].unique())
    fig.suptitle(
        f"Privacy-utility ({title}): {int(private['platforms'].iloc[0])} platforms, "
        f"{int(private['rounds'].iloc[0])} rounds, DP seeds {seeds}; bars/bands = seed std"
    )
    return _save(fig, path)


def convergence(experiment: Experiment, tables: Tables, path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    history = tables.history
    if history.empty or history["val_sampled_hr"].isna().all():
        return False
    keys = [key for key in grid_keys(experiment) if key in history]
    by = ["arm", "mode", *keys]
    curves = group_mean(history, [*by, "round"], ["val_sampled_hr"])
    k = int(tables.cells["k"].iloc[0])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for _, group in curves.groupby(by, dropna=False, sort=False):
        group = group.sort_values("round")
        (line,) = ax.plot(
            group["round"], group["val_sampled_hr"], marker=".", label=_label(group.iloc[0], keys, experiment)
        )
        ax.fill_between(
            group["round"],
            group["val_sampled_hr"] - group["val_sampled_hr_std"],
            group["val_sampled_hr"] + group["val_sampled_hr_std"],
            color=line.get_color(),
            alpha=0.12,
        )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("round (federated) / epoch block (baselines)")
    ax.set_ylabel(f"validation sampled HR@{k} (fraction)")
    ax.set_title(f"Convergence per round ({title}); mean over seeds, band = seed std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    return _save(fig, path)


def platform_gains(experiment: Experiment, tables: Tables) -> pd.DataFrame:
    """Every non-local-only platform row with ``gain``: its test HR minus its local-only partner's
    on the same platform (:func:`crossfed.simulations.report.local_only_partners`); rows without a
    partner are left out."""
    platforms = tables.platforms
    others = platforms[platforms["mode"] != "local-only"]
    if others.empty:
        return others.assign(gain=pd.Series(dtype=float))
    partners = local_only_partners(experiment, tables.cells)
    reference = platforms.set_index(["cell", "platform"])["sampled_hr"]
    index = pd.MultiIndex.from_arrays([others["cell"].map(partners), others["platform"]])
    matched = reference.reindex(index).to_numpy()
    return others.assign(gain=others["sampled_hr"].to_numpy() - matched).dropna(subset=["gain"])


def platform_gain(experiment: Experiment, tables: Tables, path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    others = platform_gains(experiment, tables)
    if others.empty:
        return False
    keys = [key for key in grid_keys(experiment) if key in others]
    by = ["arm", "mode", *keys]
    gains = group_mean(others, [*by, "platform"], ["gain"])
    groups = list(gains.groupby(by, dropna=False, sort=False))
    ids = sorted(gains["platform"].unique())
    width = 0.8 / len(groups)
    k = int(tables.cells["k"].iloc[0])
    fig, ax = plt.subplots(figsize=(max(8, len(ids) * 0.9 + 3), 4.5))
    for i, (_, group) in enumerate(groups):
        group = group.set_index("platform").reindex(ids)
        ax.bar(
            np.arange(len(ids)) + (i - (len(groups) - 1) / 2) * width,
            group["gain"],
            width,
            yerr=group["gain_std"],
            capsize=2,
            label=_label(group.dropna(subset=["arm"]).iloc[0], keys, experiment),
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(ids)), [str(p) for p in ids])
    ax.set_xlabel("platform")
    ax.set_ylabel(f"test sampled HR@{k} minus local-only's (absolute)")
    ax.set_title(f"Per-platform gain over local-only ({title}); error bar = seed std")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def scaling(experiment: Experiment, tables: Tables, path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    cells = tables.cells[tables.cells["mode"] == "federated"]
    sizes = [
        key
        for key in ("num-platforms", "max-users", "extra-items")
        if key in cells and any(group[key].nunique() > 1 for _, group in cells.groupby("arm"))
    ]
    if not sizes:
        return False
    fig, axes = plt.subplots(len(sizes), 2, figsize=(10, 3.8 * len(sizes)), squeeze=False)
    for row, key in enumerate(sizes):
        arms = [arm for arm, group in cells.groupby("arm") if group[key].nunique() > 1]
        for arm in arms:
            group = group_mean(
                cells[cells["arm"] == arm], [key], ["round_seconds", "round_cpu_seconds", "peak_rss_mb", "peak_pss_mb"]
            ).sort_values(key)
            x = _users_per_platform(cells[cells["arm"] == arm], key) if key == "max-users" else group[key]
            axes[row][0].plot(x, group["round_seconds"], "o-", label=f"{arm}: wall time, mean of rounds 2..R")
            axes[row][0].plot(x, group["round_cpu_seconds"], "s--", label=f"{arm}: CPU time of the process tree")
            axes[row][1].plot(x, group["peak_rss_mb"], "o-", label=f"{arm}: RSS summed over the process tree")
            axes[row][1].plot(x, group["peak_pss_mb"], "s--", label=f"{arm}: PSS (shared pages split)")
        xlabel = _SIZE_LABELS[key]
        for ax, ylabel in ((axes[row][0], "seconds per round"), (axes[row][1], "peak memory (MiB)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            if key == "num-platforms":
                ax.set_xscale("log")
        axes[row][0].set_title(f"Round time against {xlabel}")
        axes[row][1].set_title(f"Peak memory against {xlabel}")
    fig.suptitle(f"Scaling ({title}); federated, Flower simulation engine on Ray, 2 CPUs")
    return _save(fig, path)


_SIZE_LABELS = {
    "num-platforms": "platforms",
    "max-users": "users per platform (mean)",
    "extra-items": "extra catalog items (unrated)",
}


def _users_per_platform(cells: pd.DataFrame, key: str) -> pd.Series:
    grouped = cells.groupby(key)
    return (grouped["users"].mean() / grouped["platforms"].mean()).sort_index().reset_index(drop=True)


def _save(fig, path: Path) -> bool:
    """Write and close a finished figure (closing frees it: a sweep draws many)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
