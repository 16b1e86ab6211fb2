"""A platform's trainer kept between messages gives the very run that rebuilding it from disk gives.

The platforms are the real task functions and outbox behind an in-process grid (no Ray), run once
with trainers kept in the worker and once with every message rebuilding its trainer from the state
file, and everything the run produces is compared bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Context, RecordDict

import crossfed.server.federation as federation
from crossfed.client import resident, task
from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.storage.checkpoint import FinalModel
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.simulations.in_process import InProcessGrid

PLATFORMS = 2


@pytest.fixture(autouse=True)
def no_resident_trainers(message_identity):
    resident.clear()
    yield
    resident.clear()


def run(movielens_dir, run_dir: Path, monkeypatch) -> tuple[dict, dict]:
    """Four rounds whose coordinator-side scores select round 2, so the test restores a kept tower."""
    scores = iter([0.5, 0.6, 0.55, 0.5])
    monkeypatch.setattr(federation, "validation_score", lambda validation: next(scores))
    config = RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(run_dir),
        max_users=60,
        num_platforms=PLATFORMS,
        partition="iid",
        embedding_dim=4,
        mlp_layers="8",
        num_server_rounds=4,
        patience=2,
        seed=2,
    )
    summary = federation.run_federation(InProcessGrid(config), config)
    states = {p: PlatformState.load(platform_dir(run_dir, p)) for p in range(PLATFORMS)}
    return summary, {"final": FinalModel.load(run_dir), "states": states}


def same(first, second) -> bool:
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(same(first[key], second[key]) for key in first)
    if isinstance(first, (list, tuple)):
        return len(first) == len(second) and all(same(a, b) for a, b in zip(first, second, strict=True))
    if torch.is_tensor(first) or isinstance(first, np.ndarray):
        return np.array_equal(np.asarray(first), np.asarray(second))
    return first == second


def untimed(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key != "elapsed_seconds"}


def test_a_kept_trainer_gives_the_run_that_rebuilding_from_disk_gives(movielens_dir, tmp_path, monkeypatch):
    taken = []
    take = resident.take

    def counting_take(*args, **kwargs):
        trainer = take(*args, **kwargs)
        taken.append(trainer is not None)
        return trainer

    monkeypatch.setattr(resident, "take", counting_take)
    kept_summary, kept = run(movielens_dir, tmp_path / "kept", monkeypatch)
    assert sum(taken) >= len(taken) // 2  # most messages found their platform's trainer kept

    monkeypatch.setattr(resident, "take", lambda *args, **kwargs: None)
    rebuilt_summary, rebuilt = run(movielens_dir, tmp_path / "rebuilt", monkeypatch)

    assert (kept_summary["selected_round"], kept_summary["stopped_round"]) == (2, 4)
    assert [untimed(entry) for entry in kept_summary["history"]] == [
        untimed(entry) for entry in rebuilt_summary["history"]
    ]
    assert kept_summary["metrics"] == rebuilt_summary["metrics"]
    assert kept_summary["per_platform"] == rebuilt_summary["per_platform"]
    assert same(kept["final"].arrays, rebuilt["final"].arrays)
    for platform in range(PLATFORMS):
        a, b = kept["states"][platform], rebuilt["states"][platform]
        assert same(a.user_tower, b.user_tower) and same(a.optimizer, b.optimizer)
        assert same(a.kept_towers, b.kept_towers)


def test_a_state_written_by_another_process_is_read_again(movielens_dir, tmp_path):
    """A kept trainer is only used while the state file is the one it saw."""
    config = RunConfig().replace(
        data_dir=str(movielens_dir), run_dir=str(tmp_path), max_users=60, num_platforms=PLATFORMS, partition="iid"
    )
    node = {"partition-id": 0, "num-partitions": PLATFORMS}
    context = Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config=config.to_flat())
    trainer, directory, config = task.build_trainer(context, None)
    trainer.snapshot(1).save(directory)
    resident.keep(directory, 1, trainer)
    assert task.build_trainer(context, None)[0] is trainer  # the same file: kept
    resident.keep(directory, 1, trainer)
    trainer.snapshot(2).save(directory)  # the file is replaced
    assert task.build_trainer(context, None)[0] is not trainer
    resident.keep(directory, 1, trainer)
    assert (
        task.build_trainer(
            Context(run_id=2, node_id=1, node_config=node, state=RecordDict(), run_config=config.to_flat()), None
        )[0]
        is not trainer
    )
