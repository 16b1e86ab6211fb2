"""The baselines time training the way the federated run does: start-up apart from the rounds."""

from __future__ import annotations

import pytest

from shared.config import RunConfig
from simulations.baselines import run_centralized, run_local_only


@pytest.mark.parametrize("run", [run_centralized, run_local_only])
def test_start_up_is_timed_apart_from_the_epochs(run, movielens_dir, tmp_path):
    config = RunConfig(data_dir=str(movielens_dir), run_dir=str(tmp_path), max_users=60, num_platforms=2,
                       partition="iid", num_server_rounds=2, embedding_dim=8, mlp_layers="16,8")
    summary = run(config)
    elapsed = [entry["elapsed_seconds"] for entry in summary["history"]]
    assert len(elapsed) == 2 and 0 < elapsed[0] < elapsed[1]
    assert summary["startup_seconds"] > 0
    assert summary["wall_seconds"] >= summary["startup_seconds"] + elapsed[-1]
