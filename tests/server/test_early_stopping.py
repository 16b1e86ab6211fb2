"""Federated early stopping: the coordinator stops on the pooled validation HR, keeps the best round's global
parameters and checkpoint state, and the platforms test with that round's user tower.

The platforms are the real ones (``crossfed.client.task`` and the outbox) behind an in-process grid, so no
Ray is needed; only the validation scores the coordinator selects on are scripted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Message, MessageType

import crossfed.server.federation as federation
from crossfed.client import task
from crossfed.server.federation import run_federation
from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.model.sharing import local_parameters, shared_arrays
from crossfed.shared.protocol.keys import BEST_ROUND, CONFIG_RECORD, PREPARE_MESSAGE_TYPE, STAGE, STAGE_VALIDATION
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.shared.trainer import PlatformTrainer
from crossfed.simulations.in_process import InProcessGrid

PLATFORMS = 2


pytestmark = pytest.mark.usefixtures("message_identity")


class RecordingGrid(InProcessGrid):
    """The in-process grid, recording the global parameters of every validation request and every
    platform's user tower as validated, by round, so a test can tell which round's model was tested."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.validated_arrays: dict[int, dict[str, np.ndarray]] = {}
        self.validated_towers: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        self.best_rounds_sent: list[int] = []

    def answer(self, message: Message) -> Message:
        reply = super().answer(message)
        kind = message.metadata.message_type
        if kind not in (PREPARE_MESSAGE_TYPE, MessageType.TRAIN):
            config = message.content[CONFIG_RECORD]
            if config[STAGE] == STAGE_VALIDATION:
                platform = message.metadata.dst_node_id - 1
                arrays, server_round = task.request_contents(message)
                self.validated_arrays[server_round] = arrays
                self.best_rounds_sent.append(int(config[BEST_ROUND]))
                state = PlatformState.load(platform_dir(self.run_config["run-dir"], platform))
                self.validated_towers[(platform, server_round)] = state.user_tower
        return reply


def scripted(scores: Sequence[float]) -> Iterator[float]:
    return iter(scores)


def config_for(movielens_dir, run_dir: Path, **settings) -> RunConfig:
    return RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(run_dir),
        max_users=60,
        num_platforms=PLATFORMS,
        partition="iid",
        embedding_dim=4,
        mlp_layers="8",
        seed=2,
        **settings,
    )


def record_tests(monkeypatch) -> dict[int, dict[str, dict]]:
    """Each platform's model as tested: its user tower and its shared parameters."""
    tested: dict[int, dict[str, dict]] = {}
    test = PlatformTrainer.test_outcome

    def recording_test(self):
        tested[self.data.platform] = {
            "tower": {name: value.clone() for name, value in local_parameters(self.model).items()},
            "shared": dict(shared_arrays(self.model)),
        }
        return test(self)

    monkeypatch.setattr(PlatformTrainer, "test_outcome", recording_test)
    return tested


def equal_arrays(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(
        np.array_equal(np.asarray(first[name]), np.asarray(second[name])) for name in first
    )


def test_the_federation_stops_after_patience_and_tests_the_best_rounds_model(movielens_dir, tmp_path, monkeypatch):
    # Best in round 2; rounds 3 and 4 do not beat it strictly (a tie included): stop after round 4 of 6.
    scores = scripted([0.30, 0.50, 0.40, 0.50, 0.90, 0.95])
    monkeypatch.setattr(federation, "validation_score", lambda validation: next(scores))
    tested = record_tests(monkeypatch)
    config = config_for(movielens_dir, tmp_path, num_server_rounds=6, patience=2)
    grid = RecordingGrid(config)
    summary = run_federation(grid, config)

    assert [entry["round"] for entry in summary["history"]] == [1, 2, 3, 4]
    assert (summary["selected_round"], summary["stopped_round"], summary["rounds_completed"]) == (2, 4, 4)
    # Each validation request named the best round so far: none, 1, then 2 for rounds 3 and 4.
    assert grid.best_rounds_sent == [0] * PLATFORMS + [1] * PLATFORMS + [2] * PLATFORMS * 2
    assert not equal_arrays(grid.validated_arrays[2], grid.validated_arrays[4])
    assert equal_arrays(FinalModel.load(tmp_path).arrays, grid.validated_arrays[2])
    assert FinalModel.load(tmp_path).selected_round == 2
    for platform in range(PLATFORMS):
        model = tested[platform]
        assert equal_arrays(model["shared"], grid.validated_arrays[2])
        assert equal_arrays(model["tower"], grid.validated_towers[(platform, 2)])
        assert not equal_arrays(model["tower"], grid.validated_towers[(platform, 4)])
        # Only the towers early stopping could still select are kept: the best round's and the latest.
        state = PlatformState.load(platform_dir(tmp_path, platform))
        assert set(state.kept_towers) == {2, 4}


def test_a_resumed_federation_keeps_the_best_round_and_the_count(movielens_dir, tmp_path, monkeypatch):
    # Run 1 (3 rounds): best round 1, then two rounds without improvement (patience 3 not reached).
    scores = scripted([0.50, 0.40, 0.45, 0.30, 0.60])
    monkeypatch.setattr(federation, "validation_score", lambda validation: next(scores))
    tested = record_tests(monkeypatch)
    first = config_for(movielens_dir, tmp_path, num_server_rounds=3, patience=3)
    first_grid = RecordingGrid(first)
    run_federation(first_grid, first)
    checkpoint = Checkpoint.load(tmp_path)
    assert checkpoint.early_stopping["best_round"] == 1
    assert checkpoint.early_stopping["rounds_without_improvement"] == 2
    assert equal_arrays(checkpoint.best_arrays, first_grid.validated_arrays[1])

    # Resumed with a budget of 6: round 4 is the third round without improvement, so it stops there,
    # and tests round 1's model - which only the checkpoint and the platform states still hold.
    resumed = first.replace(num_server_rounds=6, resume=True)
    grid = RecordingGrid(resumed)
    summary = run_federation(grid, resumed)
    assert [entry["round"] for entry in summary["history"]] == [1, 2, 3, 4]
    assert (summary["selected_round"], summary["stopped_round"]) == (1, 4)
    assert grid.best_rounds_sent == [1] * PLATFORMS
    for platform in range(PLATFORMS):
        assert equal_arrays(tested[platform]["shared"], first_grid.validated_arrays[1])
        assert equal_arrays(tested[platform]["tower"], first_grid.validated_towers[(platform, 1)])


def test_patience_zero_runs_every_round(movielens_dir, tmp_path, monkeypatch):
    scores = scripted([0.50, 0.40, 0.30])
    monkeypatch.setattr(federation, "validation_score", lambda validation: next(scores))
    config = config_for(movielens_dir, tmp_path, num_server_rounds=3, patience=0)
    summary = run_federation(RecordingGrid(config), config)
    assert (summary["selected_round"], summary["stopped_round"]) == (1, 3)
