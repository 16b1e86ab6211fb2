"""``benchmarks/tuning.py``: the setting each mode's validation picks, and time to centralized's best.

Two small sweep folders written by hand stand in for ``crossfed sweep`` output: the benchmark
must score every cell at its selected round (a local-only cell per platform, weighted by users),
let a later folder replace a cell of an earlier one, and find federated's first round at
centralized's selected validation HR@10 at the same batch size and learning rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def tuning(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import tuning as module

    return module


def cell(name: str, mode: str, seed: int, rate: float, selected: int, epochs: int = 1) -> dict:
    return {
        "cell": name,
        "mode": mode,
        "privacy_unit": "none",
        "seed": seed,
        "batch-size": 64,
        "learning-rate": rate,
        "local-epochs": epochs,
        "selected_round": selected,
        "stopped_round": selected + 2,
        "sampled_hr": 0.6,
        "sampled_ndcg": 0.3,
        "cpu_seconds": 10.0,
        "round_cpu_seconds": 1.0,
        "load_average_at_start": 1.0,
    }


def write_sweep(folder: Path, cells: list[dict], curves: dict[str, list[float]]) -> Path:
    folder.mkdir()
    pd.DataFrame(cells).to_csv(folder / "results.csv", index=False)
    rows = [
        {"cell": name, "round": r + 1, "elapsed_seconds": 10.0 * (r + 1), "val_sampled_hr": hr}
        for name, curve in curves.items()
        for r, hr in enumerate(curve)
    ]
    pd.DataFrame(rows).to_csv(folder / "history.csv", index=False)
    return folder


def local_only_summary(folder: Path, name: str, by_round: dict[int, dict[str, float]], selected: dict) -> None:
    """Platform 0 has 1 validation user, platform 1 has 3."""
    directory = folder / "cells" / name
    directory.mkdir(parents=True)
    summary = {
        "history": [
            {"round": r, "per_platform": {p: {"sampled_hr": hr} for p, hr in platforms.items()}}
            for r, platforms in by_round.items()
        ],
        "per_platform": [{"platform": 0, "users": 1}, {"platform": 1, "users": 3}],
        "selected_rounds": selected,
    }
    (directory / "summary.json").write_text(json.dumps(summary))


def test_each_mode_is_scored_at_its_selected_round_and_time_to_quality_follows(tuning, tmp_path, capsys):
    first = write_sweep(
        tmp_path / "first",
        [
            cell("fed-slow-0", "federated", 0, 0.002, 3),
            cell("fed-slow-1", "federated", 1, 0.002, 3),
            cell("fed-fast-0", "federated", 0, 0.004, 2),
            cell("fed-fast-1", "federated", 1, 0.004, 2),
            cell("cen-fast-0", "centralized", 0, 0.004, 2),
            cell("cen-fast-1", "centralized", 1, 0.004, 1),
            cell("alone-0", "local-only", 0, 0.004, 2),
            cell("alone-gone", "local-only", 1, 0.004, 2),
        ],
        {
            "fed-slow-0": [0.50, 0.55, 0.60],
            "fed-slow-1": [0.50, 0.55, 0.62],
            "fed-fast-0": [0.60, 0.50, 0.40],  # replaced by the second folder
            "fed-fast-1": [0.64, 0.70, 0.66],
            "cen-fast-0": [0.60, 0.66, 0.65],
            "cen-fast-1": [0.69, 0.68],
            "alone-0": [0.0],
            "alone-gone": [0.0],
        },
    )
    local_only_summary(first, "alone-0", {1: {"0": 0.0, "1": 1.0}, 2: {"0": 1.0, "1": 0.0}}, {"0": 2, "1": 1})
    second = write_sweep(
        tmp_path / "second",
        [cell("fed-fast-0", "federated", 0, 0.004, 3)],
        {"fed-fast-0": [0.60, 0.65, 0.67]},
    )

    cells, history = tuning.read_sweeps([first, second])
    scored = tuning.score_cells(cells, history, [first, second]).set_index("cell")["val_selected"]
    assert scored["fed-fast-0"] == 0.67  # the second folder's curve and selected round
    assert scored["alone-0"] == pytest.approx((1 * 1.0 + 3 * 1.0) / 4)  # each platform at its own round
    assert pd.isna(scored["alone-gone"])

    assert tuning.main([str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "Best mean: batch-size 64, learning-rate 0.004, local-epochs 1 (0.6850" in out  # (0.67 + 0.70) / 2
    assert "Left out, no per-platform validation history in any folder: alone-gone." in out
    # Seed 0: centralized's best 0.66 (epoch 2, 20 s), federated first at or above it in round 3 (30 s).
    assert "| 0 | 0.6600 (2) | 20.0 | round 3 | 30.0 | 1.50 | 0.6700 (3) |" in out
    # Seed 1: centralized's selected 0.69 (epoch 1), federated reaches it in round 2.
    assert "| 1 | 0.6900 (1) | 10.0 | round 2 | 20.0 | 2.00 | 0.7000 (2) |" in out
    assert "| 1.0 / 1.0 | 3 / 2 (1.50) |" in out  # rounds x each cell's CPU seconds per round
