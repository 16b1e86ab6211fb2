"""An experiment arm can ask for the privacy audit: validated on load, run through the audit runner, tabulated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from crossfed.simulations import sweep
from crossfed.simulations.experiment import AUDIT_DEFAULTS, ExperimentError, load_experiment
from crossfed.simulations.sweep import CELL_FILE, cell_dir, run_cell_job
from crossfed.simulations.tidy import collect

ROOT = Path(__file__).resolve().parents[2]
#: A real audited run's results (ML-100K, user-level DP at epsilon 8, 200 own-items canaries).
MEASURED = ROOT / "docs" / "results" / "privacy-audit" / "own-items" / "ml-100k-user-dp-eps8-local"
TINY = """
[base]
dataset = "ml-100k"
max-users = 60
num-platforms = 2
num-server-rounds = 1
[[arm]]
name = "audited"
modes = ["federated"]
set = { privacy-unit = "user", user-dp-mechanism = "dp-sgd", epsilon = 8.0 }
audit = { canaries = 20, canary-items = 4 }
[[arm]]
name = "plain"
modes = ["federated"]
"""


def _experiment(tmp_path: Path, text: str = TINY, name: str = "exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_experiment(path)


def test_an_audit_arm_fills_in_the_audit_defaults_and_other_arms_stay_plain(tmp_path: Path) -> None:
    cells = {cell.arm: cell for cell in _experiment(tmp_path).cells}
    assert cells["audited"].audit == {**AUDIT_DEFAULTS, "canaries": 20, "canary-items": 4}
    assert cells["plain"].audit is None


@pytest.mark.parametrize(
    ("audit", "modes", "names"),
    [
        ("{ canaries = 1 }", "['federated']", ["'audited'.audit.canaries", ">= 2"]),
        ("{ canaries = 'many' }", "['federated']", ["'audited'.audit.canaries"]),
        ("{ canary-items = 3 }", "['federated']", ["'audited'.audit.canary-items", ">= 4"]),
        ("{ canary-kind = 'loud' }", "['federated']", ["'audited'.audit.canary-kind", "own-items"]),
        ("{ canarys = 20 }", "['federated']", ["canarys", "audited"]),
        ("{ canaries = 20 }", "['federated', 'local-only']", ["'audited'.audit", "federated"]),
        ("200", "['federated']", ["'audited'.audit", "dict"]),
    ],
)
def test_a_bad_audit_option_is_rejected_naming_file_arm_and_key(
    tmp_path: Path, audit: str, modes: str, names: list[str]
) -> None:
    text = f"[[arm]]\nname = 'audited'\nmodes = {modes}\naudit = {audit}\n"
    with pytest.raises(ExperimentError) as error:
        _experiment(tmp_path, text, "bad.toml")
    assert str(tmp_path / "bad.toml") in str(error.value)
    for name in names:
        assert name in str(error.value)


def test_an_audited_cell_runs_through_the_audit_runner_and_a_plain_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        "crossfed.simulations.audit.runner.run_audit",
        lambda config, count, items, out, kind: calls.append(("audit", (count, items, out, kind))),
    )
    monkeypatch.setattr("crossfed.simulations.runner.run_mode", lambda mode, config: calls.append(("run", mode)))
    cells = {cell.arm: cell for cell in _experiment(tmp_path).cells}
    for arm in ("audited", "plain"):
        run_cell_job(cells[arm].mode, cells[arm].config(tmp_path / arm), cells[arm].audit)
    assert calls == [("audit", (20, 4, tmp_path / "audited", "own-items")), ("run", "federated")]


def _finish(out: Path, cell, audited: bool) -> None:
    """A cell folder as the sweep leaves it, holding a real audited run's files."""
    directory = cell_dir(out, cell)
    directory.mkdir(parents=True)
    shutil.copy(MEASURED / "summary.json", directory / "summary.json")
    if audited:
        shutil.copy(MEASURED / "audit.json", directory / "audit.json")
    record = {
        "arm": cell.arm,
        "mode": cell.mode,
        "seed": cell.seed,
        "overrides": sweep.jsonable(dict(cell.overrides)),
        "audit": sweep.jsonable(cell.audit),
    }
    (directory / CELL_FILE).write_text(json.dumps(record))


def test_the_tidy_table_gains_the_audit_columns_for_audited_cells_only(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    out = tmp_path / "sweep"
    for cell in experiment.cells:
        _finish(out, cell, audited=cell.audit is not None)
    table = collect(experiment, out).cells.set_index("arm")
    audit = json.loads((MEASURED / "audit.json").read_text())
    assert table.loc["audited", "canaries"] == audit["canaries"]
    assert table.loc["audited", "ceiling"] == pytest.approx(audit["ceiling"])
    assert table.loc["audited", "epsilon_claimed"] == pytest.approx(audit["epsilon_claimed"])
    for adversary, figures in audit["adversaries"].items():
        for figure, value in figures.items():
            assert table.loc["audited", f"{adversary}_{figure}"] == pytest.approx(value)
    assert table.loc["plain", ["canaries", "ceiling", "coordinator_auroc", "model_auroc"]].isna().all()


def test_a_cell_finished_with_other_audit_settings_stops_the_sweep(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path)
    out = tmp_path / "sweep"
    audited = next(cell for cell in experiment.cells if cell.audit is not None)
    _finish(out, audited, audited=True)
    record = json.loads((cell_dir(out, audited) / CELL_FILE).read_text())
    (cell_dir(out, audited) / CELL_FILE).write_text(json.dumps({**record, "audit": None}))
    with pytest.raises(ExperimentError, match="audit settings"):
        sweep.run_sweep(experiment, out, progress=False)
