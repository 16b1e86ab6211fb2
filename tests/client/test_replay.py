"""A saved training reply answers only the run and the global arrays it was computed for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from crossfed.client import task
from crossfed.client.local_metrics import LOCAL_METRICS_FILE
from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import shared_arrays
from tests.helpers import make_dataset


@pytest.fixture
def platform(monkeypatch):
    dataset = make_dataset(20, 50)
    data = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    monkeypatch.setattr(task, "platform_data", lambda _config, _platform: data)
    return data


def _context(tmp_path, run_id: int, **settings) -> Context:
    config = RunConfig().replace(embedding_dim=4, mlp_layers="8", run_dir=str(tmp_path), **settings)
    node = {"partition-id": 0, "num-partitions": 1}
    return Context(run_id=run_id, node_id=1, node_config=node, state=RecordDict(), run_config=config.to_flat())


def _trained_rounds(tmp_path) -> list[int]:
    log = tmp_path / "platforms" / "platform-0" / LOCAL_METRICS_FILE
    return [entry["round"] for entry in map(json.loads, log.read_text().splitlines()) if entry["stage"] == "train"]


def _global(platform, seed: int) -> dict[str, np.ndarray]:
    config = RunConfig().replace(embedding_dim=4, mlp_layers="8")
    return shared_arrays(build_model(config.model, platform.num_items, platform.item_features, seed=seed))


def test_the_same_request_again_gets_the_saved_reply(platform, tmp_path):
    sent = _global(platform, 0)
    _trainer, first, _ = task.train(sent, 1, _context(tmp_path, run_id=7))
    _trainer, again, _ = task.train(sent, 1, _context(tmp_path, run_id=7))
    assert again == first and _trained_rounds(tmp_path) == [1]


def test_a_new_run_reusing_the_state_directory_is_trained_not_replayed(platform, tmp_path):
    sent = _global(platform, 0)
    task.train(sent, 1, _context(tmp_path, run_id=7))
    task.train(sent, 1, _context(tmp_path, run_id=8))
    assert _trained_rounds(tmp_path) == [1, 1]


def test_a_resumed_run_sending_the_checkpointed_arrays_gets_the_saved_reply(platform, tmp_path):
    sent = _global(platform, 0)
    task.train(sent, 1, _context(tmp_path, run_id=7))
    task.train(sent, 1, _context(tmp_path, run_id=8, resume=True))
    assert _trained_rounds(tmp_path) == [1]


def test_other_global_arrays_for_the_same_round_are_trained_not_replayed(platform, tmp_path):
    task.train(_global(platform, 0), 1, _context(tmp_path, run_id=7))
    task.train(_global(platform, 1), 1, _context(tmp_path, run_id=7, resume=True))
    assert _trained_rounds(tmp_path) == [1, 1]
