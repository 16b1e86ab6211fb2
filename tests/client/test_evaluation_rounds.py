"""A platform's validation ranks the whole catalog only on the rounds its config asks for; its test always does."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from crossfed.client import task
from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    CONFIG_RECORD,
    SERVER_ROUND,
    STAGE,
    STAGE_TEST,
    STAGE_VALIDATION,
)
from crossfed.shared.protocol.records import to_array_record
from tests.helpers import make_dataset

SMALL = {"embedding_dim": 4, "mlp_layers": "8", "eval_negatives": 10}


@pytest.fixture
def platform(monkeypatch, message_identity):
    dataset = make_dataset(20, 50)
    data = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    monkeypatch.setattr(task, "platform_data", lambda _config, _platform: data)
    return data


def _request(platform, server_round: int, stage: str) -> Message:
    model = build_model(RunConfig().replace(**SMALL).model, platform.num_items, platform.item_features, seed=0)
    content = RecordDict(
        {
            ARRAYS_RECORD: to_array_record(dict(shared_arrays(model))),
            CONFIG_RECORD: ConfigRecord({SERVER_ROUND: server_round, STAGE: stage}),
        }
    )
    return Message(content=content, message_type=MessageType.EVALUATE, dst_node_id=1)


def _protocols(platform, tmp_path, server_round: int, stage: str, every: int) -> set[str]:
    config = RunConfig().replace(run_dir=str(tmp_path), full_ranking_every=every, **SMALL)
    node = {"partition-id": 0, "num-partitions": 1}
    context = Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config=config.to_flat())
    metrics, _private = task.evaluate(_request(platform, server_round, stage), context)
    return {key.split("-")[0] for key in metrics if key.endswith("-hr") and not key.startswith("global-")}


def test_validation_ranks_the_whole_catalog_only_every_k_rounds(platform, tmp_path):
    assert _protocols(platform, tmp_path, 4, STAGE_VALIDATION, every=0) == {"sampled"}
    assert _protocols(platform, tmp_path, 3, STAGE_VALIDATION, every=2) == {"sampled"}
    assert _protocols(platform, tmp_path, 4, STAGE_VALIDATION, every=2) == {"sampled", "full"}


def test_the_test_always_reports_both_protocols(platform, tmp_path):
    assert _protocols(platform, tmp_path, 4, STAGE_TEST, every=0) == {"sampled", "full"}
