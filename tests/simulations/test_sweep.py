"""Experiments as data: the TOML loader, the resumable sweep, its tidy tables and figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crossfed.shared.config import MODES, RunConfig
from crossfed.shared.runtime.monitor import sample
from crossfed.shared.runtime.proc import tree_pids
from crossfed.simulations.experiment import ExperimentError, load_experiment
from crossfed.simulations.sweep import CELL_FILE, cell_dir, run_sweep

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "simulations" / "experiments" / "quick.toml"
METRICS = ["sampled_hr", "sampled_ndcg", "full_hr", "full_ndcg", "global_sampled_hr", "global_sampled_ndcg"]


def _write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_shipped_experiment_loads() -> None:
    for path in sorted((ROOT / "simulations" / "experiments").glob("*.toml")):
        experiment = load_experiment(path)
        assert experiment.cells, path
        assert len({cell.name for cell in experiment.cells}) == len(experiment.cells), path


def test_the_acceptance_experiment_is_the_main_job_in_every_training_mode_over_three_seeds(tmp_path: Path) -> None:
    experiment = load_experiment(ROOT / "simulations" / "experiments" / "acceptance.toml")
    training_modes = [mode for mode in MODES if mode != "popularity"]
    assert sorted((cell.mode, cell.seed) for cell in experiment.cells) == sorted(
        (mode, seed) for mode in training_modes for seed in (0, 1, 2)
    )
    main_job = RunConfig.from_mapping({"run-dir": str(tmp_path)})
    for cell in experiment.cells:
        assert cell.config(tmp_path) == main_job.replace(seed=cell.seed)


def test_grid_expands_to_arms_times_points_times_modes_times_seeds(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        seeds = [0, 1]
        [base]
        num-server-rounds = 3
        [[arm]]
        name = "ref"
        modes = ["local-only", "centralized"]
        seeds = [4]
        [[arm]]
        name = "dp"
        modes = ["federated"]
        set = { privacy-unit = "user", user-dp-mechanism = "dp-sgd" }
        grid = { epsilon = [1.0, inf], num-platforms = [3, 5] }
    """,
    )
    experiment = load_experiment(path)
    assert experiment.name == "exp"
    names = [cell.name for cell in experiment.cells]
    assert len(names) == 2 * 1 + 2 * 2 * 2
    assert "ref_local-only_seed4" in names and "dp_federated_epsilon=inf_num-platforms=5_seed1" in names
    cell = next(c for c in experiment.cells if c.name == "dp_federated_epsilon=inf_num-platforms=5_seed1")
    config = cell.config(tmp_path / "run")
    assert (
        config.federation.num_server_rounds,
        config.privacy.privacy_unit,
        config.data.num_platforms,
        config.experiment.seed,
    ) == (3, "user", 5, 1)
    assert math.isinf(config.privacy.epsilon)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[[arm]]\nname = 'a'\nmodes = ['federated']\nset = { num-rounds = 3 }", ["num-rounds"]),
        (
            "[base]\nlearning-rat = 0.1\n[[arm]]\nname = 'a'\nmodes = ['federated']",
            ["base.learning-rat", "did you mean 'learning-rate'?"],
        ),
        ("[[arm]]\nname = 'a'\nmodes = ['federated']\ngrid = { num-platforms = [0, 2] }", ["num-platforms"]),
        ("[[arm]]\nname = 'a'\nmodes = ['fedrated']", ["modes"]),
        ("[[arm]]\nname = 'a'\nmodes = ['federated']\ngrid = { epsilon = 1.0 }", ["grid.epsilon"]),
        ("[[arm]]\nname = 'a'\nmodes = ['federated']\nset = { seed = 3 }", ["seed", "seeds"]),
        ("[[arm]]\nname = 'a'\nmodes = ['federated']\ncolour = 'red'", ["colour"]),
        ("seeds = [0]\n", ["[[arm]]"]),
        ("[[arm]]\nname = 'a'\nmodes = ['federated']\n[[arm]]\nname = 'a'\nmodes = ['local-only']", ["'a'"]),
        ("[[arm\nname = 'a'", ["not valid TOML"]),
    ],
)
def test_a_bad_experiment_is_rejected_naming_file_and_key(tmp_path: Path, text: str, names: list[str]) -> None:
    path = _write(tmp_path, text, "bad.toml")
    with pytest.raises(ExperimentError) as error:
        load_experiment(path)
    assert str(path) in str(error.value)
    for name in names:
        assert name in str(error.value)


def test_a_cell_finished_with_other_settings_stops_the_sweep_before_anything_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, "[base]\nnum-server-rounds = 2\n[[arm]]\nname = 'a'\nmodes = ['local-only']\n")
    experiment = load_experiment(path)
    out = tmp_path / "sweep"
    directory = cell_dir(out, experiment.cells[0])
    directory.mkdir(parents=True)
    (directory / CELL_FILE).write_text(json.dumps({"overrides": {"num-server-rounds": 5}}))
    with pytest.raises(ExperimentError, match="num-server-rounds"):
        run_sweep(experiment, out, progress=False)


def test_time_to_quality_is_the_time_to_centralized_s_selected_validation_hr() -> None:
    from crossfed.simulations.report import time_to_quality_section, time_to_reach
    from crossfed.simulations.tidy import Tables

    def cell(name: str, arm: str, mode: str, startup: float = math.nan, selected: float = math.nan) -> dict:
        return {
            "cell": name,
            "arm": arm,
            "mode": mode,
            "privacy_unit": "none",
            "seed": 0,
            "platforms": 5,
            "partition": "natural",
            "startup_seconds": startup,
            "selected_round": selected,
        }

    curves = {  # (elapsed seconds, validation HR@10) per round or epoch
        "fed-a": [(5, 0.50), (11, 0.60), (30, 0.66), (40, 0.64)],
        "fed-b": [(5, 0.55), (10, 0.58), (15, 0.57)],  # best 0.58 at round 2: reaches neither target
        "cen-a": [(4, 0.40), (8, 0.59), (12, 0.58)],  # selected epoch 2: target 0.59 reached at 8 s
        "cen-b": [(3, 0.62), (6, 0.65), (9, 0.65)],  # no selected round recorded: the first best, epoch 2
        "fed-c": [(7, math.nan)],  # no validation metric at all (e.g. under DP)
    }
    alone = {**cell("fed-c", "fc", "federated"), "platforms": 20}  # no centralized cell to compare with
    cells = pd.DataFrame(
        [
            cell("fed-a", "fa", "federated", startup=6, selected=3),
            cell("fed-b", "fb", "federated", selected=2),
            alone,
            cell("cen-a", "ca", "centralized", startup=2, selected=2),
            cell("cen-b", "cb", "centralized"),
        ]
    )
    history = pd.DataFrame(
        [
            {"cell": name, "round": i + 1, "elapsed_seconds": t, "val_sampled_hr": hr}
            for name, curve in curves.items()
            for i, (t, hr) in enumerate(curve)
        ]
    )
    tables = Tables(cells, pd.DataFrame(), history)
    reach = time_to_reach(tables).set_index(["federated_arm", "centralized_arm"])
    assert len(reach) == 4
    fa_ca = reach.loc[("fa", "ca")]
    assert fa_ca["target_val_hr"] == 0.59 and fa_ca["centralized_epoch"] == 2 and fa_ca["centralized_seconds"] == 8
    assert fa_ca["federated_round"] == 2 and fa_ca["federated_seconds"] == 11  # 0.60 >= 0.59
    assert fa_ca["ratio"] == pytest.approx(11 / 8)
    assert fa_ca["ratio_with_startup"] == pytest.approx((11 + 6) / (8 + 2))
    fa_cb = reach.loc[("fa", "cb")]
    assert fa_cb["target_val_hr"] == 0.65 and fa_cb["centralized_epoch"] == 2 and fa_cb["centralized_seconds"] == 6
    assert fa_cb["federated_round"] == 3 and fa_cb["ratio"] == pytest.approx(30 / 6)
    # Federated's final figure (0.64 for fa, 0.57 for fb) is not the bar: it is centralized's best.
    for centralized_arm in ("ca", "cb"):
        never = reach.loc[("fb", centralized_arm)]
        assert never["federated_round"] == -1 and math.isinf(never["ratio"]) and math.isnan(never["federated_seconds"])
        assert never["federated_best_val_hr"] == 0.58 and never["federated_best_round"] == 2

    table = "\n".join(time_to_quality_section(time_to_reach(tables), 10))
    assert "| fb | ca | 0 | 5 | 0.5900 | 8.0 (2) | never | ∞ |" in table
    assert "training 1 of 4, with start-up 0 of 4" in table


def _fake_summary(mode: str, **stopping: object) -> dict:
    """The parts of a run's ``summary.json`` the tidy tables read, two platforms."""
    block = {protocol: {"hr@10": 0.5, "ndcg@10": 0.3} for protocol in ("sampled", "full")}
    return {
        "config": {"top-k": 10, "privacy-unit": "none"},
        "platforms": 2,
        "partition": "iid",
        "rounds": 6,
        "wall_seconds": 9.0,
        "metrics": block,
        "global_metrics": block,
        "per_platform": [{"platform": p, "users": 3, "metrics": block, "global_metrics": block} for p in (0, 1)],
        "history": [{"round": r, "elapsed_seconds": float(r), "validation": {"sampled_hr": 0.5}} for r in (1, 2)],
        **stopping,
    }


def test_tidy_tables_carry_the_early_stopping_rounds_per_run_and_per_local_only_platform(tmp_path: Path) -> None:
    from crossfed.simulations.tidy import collect

    experiment = load_experiment(
        _write(
            tmp_path,
            'name = "stop"\ndescription = ""\nseeds = [0]\n[base]\nnum-platforms = 2\n'
            '[[arm]]\nname = "local-only"\nmodes = ["local-only"]\n'
            '[[arm]]\nname = "centralized"\nmodes = ["centralized"]\n'
            '[[arm]]\nname = "old"\nmodes = ["federated"]\n',
        )
    )
    summaries = {
        "local-only": _fake_summary(
            "local-only",
            selected_round=4,
            stopped_round=6,
            selected_rounds={"0": 4, "1": 2},
            stopped_rounds={"0": 6, "1": 3},
        ),
        "centralized": _fake_summary("centralized", selected_round=3, stopped_round=5),
        "old": _fake_summary("federated"),  # written before early stopping existed
    }
    for cell in experiment.cells:
        directory = cell_dir(tmp_path / "out", cell)
        directory.mkdir(parents=True)
        (directory / "summary.json").write_text(json.dumps(summaries[cell.arm]))
        (directory / CELL_FILE).write_text(json.dumps({"arm": cell.arm, "mode": cell.mode, "seed": cell.seed}))

    tables = collect(experiment, tmp_path / "out")
    runs = tables.cells.set_index("arm")
    assert (runs.loc["local-only", "selected_round"], runs.loc["local-only", "stopped_round"]) == (4, 6)
    assert (runs.loc["centralized", "selected_round"], runs.loc["centralized", "stopped_round"]) == (3, 5)
    assert math.isnan(runs.loc["old", "selected_round"]) and math.isnan(runs.loc["old", "stopped_round"])
    platforms = tables.platforms.set_index(["arm", "platform"])
    assert list(platforms.loc["local-only", "selected_round"]) == [4, 2]
    assert list(platforms.loc["local-only", "stopped_round"]) == [6, 3]
    assert list(platforms.loc["centralized", "selected_round"]) == [3, 3]


def test_report_only_runs_nothing(movielens_dir: Path, tmp_path: Path, crossfed_command: str) -> None:
    out = tmp_path / "sweep"
    result = subprocess.run(
        [crossfed_command, "sweep", str(QUICK), "--out", str(out), "--data-dir", str(movielens_dir), "--report-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"0 of {len(load_experiment(QUICK).cells)} cells finished" in result.stdout
    assert not (out / "cells").exists()
    assert "No finished cell yet" in (out / "report.md").read_text()


def test_memory_is_measured_over_the_whole_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50 * 2**20); time.sleep(30)"])
    try:
        for _ in range(50):
            if child.pid in tree_pids(os.getpid()) and sample(child.pid).rss_mb > 40:
                break
            subprocess.run(["sleep", "0.1"])
        assert child.pid in tree_pids(os.getpid())
        assert sample(child.pid).rss_mb > 40  # the child's 50 MiB buffer counts
        assert sample(os.getpid()).rss_mb > sample(child.pid).rss_mb  # the tree includes the child
    finally:
        child.kill()
        child.wait()


def _sweep(crossfed_command: str, out: Path, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [crossfed_command, "sweep", str(QUICK), "--out", str(out), "--data-dir", str(data_dir), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard, not a speed check
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"},
    )


@pytest.mark.slow
@pytest.mark.ray
def test_quick_sweep_runs_every_cell_tabulates_plots_and_resumes(
    movielens_dir: Path, tmp_path: Path, crossfed_command: str
) -> None:
    out = tmp_path / "quick"
    first = _sweep(crossfed_command, out, movielens_dir)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    experiment = load_experiment(QUICK)

    table = pd.read_csv(out / "results.csv")
    assert sorted(table["cell"]) == sorted(cell.name for cell in experiment.cells)
    assert set(table["mode"]) == {"federated", "local-only"}
    private = table[table["privacy_unit"] == "user"]
    assert sorted(private["epsilon"]) == [2.0, 8.0]
    assert table.loc[table["mode"] == "local-only", "epsilon"].isna().all()  # no effect there, so empty
    values = table[METRICS].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    assert (private["epsilon_spent_max"] <= private["epsilon"] + 1e-9).all()
    assert (private["bytes_up_per_round"] > 0).all() and (table["peak_rss_mb"] > 0).all()

    history = pd.read_csv(out / "history.csv")
    assert sorted(history.groupby("cell")["round"].max().unique()) == [2]
    per_platform = pd.read_csv(out / "per_platform.csv")
    assert sorted(per_platform["platform"].unique()) == [0, 1]
    assert (out / "report.md").read_text().count("| federated-dp | federated |") == 2
    for figure in ("privacy_utility", "convergence", "platform_gain"):
        assert (out / "plots" / f"{figure}.png").stat().st_size > 10_000

    stamps = {cell.name: (cell_dir(out, cell) / CELL_FILE).stat().st_mtime_ns for cell in experiment.cells}
    second = _sweep(crossfed_command, out, movielens_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"0 cells run, {len(experiment.cells)} skipped" in second.stdout
    assert stamps == {cell.name: (cell_dir(out, cell) / CELL_FILE).stat().st_mtime_ns for cell in experiment.cells}
    assert pd.read_csv(out / "results.csv")[METRICS].equals(table[METRICS])


def test_each_cell_meets_the_local_only_cell_of_its_own_grid_point(tmp_path: Path) -> None:
    from crossfed.simulations.plots import platform_gains
    from crossfed.simulations.tidy import collect

    experiment = load_experiment(
        _write(
            tmp_path,
            'name = "pairs"\ndescription = ""\nseeds = [0]\n[base]\nnum-platforms = 2\n'
            '[[arm]]\nname = "alone"\nmodes = ["local-only"]\ngrid = { batch-size = [64, 256] }\n'
            '[[arm]]\nname = "fed"\nmodes = ["federated"]\ngrid = { batch-size = [64, 256] }\n'
            '[[arm]]\nname = "dp"\nmodes = ["federated"]\ngrid = { epsilon = [4.0] }\n',
        )
    )
    hr = {("alone", 64): 0.40, ("alone", 256): 0.30, ("fed", 64): 0.45, ("fed", 256): 0.50, ("dp", None): 0.33}
    for cell in experiment.cells:
        summary = _fake_summary(cell.mode)
        summary["config"]["batch-size"] = cell.point.get("batch-size", 64)  # the base's batch size
        value = hr[cell.arm, cell.point.get("batch-size")]
        for row in summary["per_platform"]:
            row["metrics"] = {"sampled": {"hr@10": value, "ndcg@10": 0.3}, "full": {"hr@10": 0.1, "ndcg@10": 0.1}}
        directory = cell_dir(tmp_path / "out", cell)
        directory.mkdir(parents=True)
        (directory / "summary.json").write_text(json.dumps(summary))
        (directory / CELL_FILE).write_text(json.dumps({"arm": cell.arm, "mode": cell.mode, "seed": cell.seed}))

    gains = platform_gains(experiment, collect(experiment, tmp_path / "out"))
    by_cell = gains.groupby(["arm", "batch-size"], dropna=False)["gain"].unique()
    assert by_cell["fed", 64] == pytest.approx([0.05]) and by_cell["fed", 256] == pytest.approx([0.20])
    # The epsilon arm runs at the base's batch size, so it meets local-only at that batch size.
    assert by_cell["dp", 64] == pytest.approx([-0.07])


def test_time_to_quality_pairs_cells_of_the_same_grid_point() -> None:
    """A sweep that grids the learning rate over both modes compares each rate with itself, never across."""
    from crossfed.simulations.report import time_to_reach
    from crossfed.simulations.tidy import Tables

    def cell(name: str, mode: str, rate: float) -> dict:
        return {
            "cell": name,
            "arm": "grid",
            "mode": mode,
            "privacy_unit": "none",
            "seed": 0,
            "platforms": 5,
            "partition": "natural",
            "learning-rate": rate,
            "selected_round": 2,
        }

    curves = {
        "fed-slow": [(5, 0.50), (10, 0.61), (15, 0.70)],
        "fed-fast": [(5, 0.62), (10, 0.66), (15, 0.64)],
        "cen-slow": [(4, 0.55), (8, 0.60), (12, 0.58)],
        "cen-fast": [(4, 0.60), (8, 0.65), (12, 0.63)],
    }
    cells = pd.DataFrame(
        [
            cell("fed-slow", "federated", 0.002),
            cell("fed-fast", "federated", 0.004),
            cell("cen-slow", "centralized", 0.002),
            cell("cen-fast", "centralized", 0.004),
        ]
    )
    history = pd.DataFrame(
        [
            {"cell": name, "round": i + 1, "elapsed_seconds": t, "val_sampled_hr": hr}
            for name, curve in curves.items()
            for i, (t, hr) in enumerate(curve)
        ]
    )
    tables = Tables(cells, pd.DataFrame(), history)
    reach = time_to_reach(tables, ["learning-rate"]).set_index("target_val_hr")
    assert sorted(reach.index) == [0.60, 0.65]  # one pair per rate, not four
    assert reach.loc[0.60, "federated_round"] == 2 and reach.loc[0.60, "ratio"] == pytest.approx(10 / 8)
    assert reach.loc[0.65, "federated_round"] == 2 and reach.loc[0.65, "ratio"] == pytest.approx(10 / 8)
    assert len(time_to_reach(tables)) == 4  # without a grid every federated cell meets every centralized one
