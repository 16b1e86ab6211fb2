"""The scale curve's reading of dp_item_subspace's cells: grouping, gains, shares and significance marks."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _scale_curve() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_curve", BENCHMARKS / "scale_curve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_curve"] = module
    spec.loader.exec_module(module)
    return module


def _cell(platforms: int, epsilon: float, seed: int | None, served: list[float], intervals: list[tuple]) -> dict:
    rows: list[dict[str, Any]] = [
        {
            "platform": p,
            "users": 300 * (p + 1) // platforms,
            "local_only": 0.5,
            "served": s,
            "difference": [s - 0.5, low, high],
        }
        for p, (s, (low, high)) in enumerate(zip(served, intervals))
    ]
    return {
        "dataset": "toy",
        "platform_count": platforms,
        "partition_attribute": "region",
        "epsilon": epsilon,
        "noise_seed": seed,
        "local_only": 0.5,
        "served": sum(served) / len(served),
        "platforms": rows,
    }


def _write(path: Path, cells: list[dict]) -> Path:
    path.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    return path


def test_a_curve_per_split_with_gains_shares_and_marks(tmp_path: Path) -> None:
    scale_curve = _scale_curve()
    better, worse, neither = (0.01, 0.05), (-0.05, -0.01), (-0.01, 0.01)
    local_only = (0.0, 0.0)  # weight 0 serves local-only exactly: no difference, not a gain
    two = _write(
        tmp_path / "two.json",
        [
            _cell(2, math.inf, None, [0.6, 0.5], [better, neither]),
            _cell(2, 8.0, 1, [0.55, 0.45], [better, worse]),
            _cell(2, 8.0, 0, [0.5, 0.5], [local_only, neither]),
        ],
    )
    one = _write(
        tmp_path / "one.json", [_cell(1, math.inf, None, [0.52], [neither]), _cell(1, 8.0, 0, [0.51], [neither])]
    )

    found = scale_curve.curves([two, one], 8.0, {("toy", 2): 0.62})

    assert [c.platforms for c in found] == [1, 2]  # most users per platform first
    split = found[1]
    assert split.users == [150, 300]
    assert split.noiseless_gain == pytest.approx(0.05)
    assert split.private_gains == pytest.approx([0.0, 0.0])  # draws in seed order: 0 then 1
    assert [c["noise_seed"] for c in split.private] == [0, 1]
    assert [scale_curve.mark(r) for r in split.private[1]["platforms"]] == ["+", "-"]
    assert [scale_curve.mark(r) for r in split.private[0]["platforms"]] == ["=", "="]
    summary = scale_curve.summary_table(found, 8.0)
    assert (
        "| toy | 2 (region) | 150 / 225 / 300 | 0.5000 | +0.0500 | +0.0000, +0.0000 | +0.0000 | 0% | 1 / 0 |" in summary
    )
    assert "0 / 0; 1 / 1 | +0.1200 |" in summary
    rows = scale_curve.platform_table(found, 8.0)
    assert "| toy | 2 | 1 | 300 | 0.5000 | +0.0000 = | +0.0000 =, -0.0500 - |" in rows


def test_a_split_without_its_noiseless_cell_is_refused(tmp_path: Path) -> None:
    scale_curve = _scale_curve()
    only_private = _write(tmp_path / "private.json", [_cell(2, 8.0, 0, [0.5, 0.5], [(0, 0), (0, 0)])])
    with pytest.raises(SystemExit, match="need one epsilon = inf cell"):
        scale_curve.curves([only_private], 8.0, {})
