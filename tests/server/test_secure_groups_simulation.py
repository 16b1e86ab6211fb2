"""A simulated SecAgg+ round in groups: one SecAgg+ instance per group, the model moved by the median of group means.

Six platforms in three groups of two (``min-platforms = 2``). A mod inside secure aggregation
keeps each platform's update as it is masked; one outside notes the peer count each SecAgg+ setup
announces. The coordinator's model must be the initial one plus the coordinate-wise median of the
three groups' weighted mean updates (within SecAgg+'s quantisation), the groups must be the
recorded ones, and every platform must have been set up in a round of exactly its group's size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message, MessageType
from flwr.common import parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from crossfed.server.federation import initial_arrays
from crossfed.shared.config import RunConfig
from crossfed.shared.protocol.keys import LEGACY_PARAMETERS_RECORD, SHARED_NAMES
from crossfed.shared.protocol.secure_aggregation import quantisation_plan
from crossfed.shared.storage.checkpoint import Checkpoint
from crossfed.simulations.federated import run_federated

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def update_keeper(directory: str):
    """Inside secure aggregation: each platform's plain update and weight, as it is about to be masked."""

    def mod(message: Message, context, call_next) -> Message:
        reply = call_next(message, context)
        if (
            message.metadata.message_type == MessageType.TRAIN
            and LEGACY_PARAMETERS_RECORD in message.content.array_records
            and not reply.has_error()
        ):
            names = str(compat.recorddict_to_fitins(message.content, keep_input=True).config[SHARED_NAMES]).split(",")
            result = compat.recorddict_to_fitres(reply.content, keep_input=True)
            arrays = dict(zip(names, parameters_to_ndarrays(result.parameters), strict=True))
            np.savez(Path(directory) / f"update-{context.node_id}.npz", weight=result.num_examples, **arrays)
        return reply

    return mod


def setup_recorder(directory: str):
    """Outside secure aggregation: the peer count each SecAgg+ setup message announces to this platform."""

    def mod(message: Message, context, call_next) -> Message:
        configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None and configs.get(Key.STAGE) == Stage.SETUP:
            with open(Path(directory) / f"setup-{os.getpid()}.jsonl", "a") as stream:
                stream.write(json.dumps({"node": context.node_id, "peers": int(configs[Key.SAMPLE_NUMBER])}) + "\n")
        return call_next(message, context)

    return mod


def test_a_grouped_secagg_round_moves_the_model_by_the_median_of_the_group_means(movielens_dir, tmp_path):
    kept, setups = tmp_path / "updates", tmp_path / "setups"
    kept.mkdir()
    setups.mkdir()
    config = RunConfig().replace(
        run_dir=str(tmp_path / "run"),
        data_dir=str(movielens_dir),
        num_platforms=6,
        num_server_rounds=1,
        max_users=180,
        partition="iid",
        seed=3,
        min_platforms=2,
        secagg=True,
        secagg_groups=3,
        aggregation="median",
        embedding_dim=8,
        mlp_layers="16,8",
    )
    summary = run_federated(
        config, client_mods=[setup_recorder(str(setups))], inner_client_mods=[update_keeper(str(kept))]
    )
    assert summary["rounds_completed"] == 1
    groups = summary["history"][0]["secagg_groups"]
    updates = {int(path.stem.split("-")[1]): dict(np.load(path)) for path in kept.glob("update-*.npz")}
    assert sorted(node for group in groups for node in group) == sorted(updates)
    assert [len(group) for group in groups] == [2, 2, 2]
    announced = [json.loads(line) for path in setups.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(entry["node"] for entry in announced) == sorted(updates)
    assert {entry["peers"] for entry in announced} == {2}  # each platform saw its group's instance, not all six

    start, trained = initial_arrays(config), Checkpoint.load(config.experiment.run_dir).arrays
    plan = quantisation_plan(config)
    worst_tolerance, worst = 0.0, 0.0
    for name in start:
        means = []
        for group in groups:
            weights = np.asarray([float(updates[node]["weight"]) for node in group])
            stacked = np.stack([updates[node][name].astype(np.float64) for node in group])
            means.append(np.tensordot(weights / weights.sum(), stacked, axes=1))
            # the quantisation error of a group's mean: one step per member over its summed weight ratios
            worst_tolerance = max(worst_tolerance, len(group) * plan.step / (weights.sum() / plan.max_weight))
        expected = start[name] + np.median(np.stack(means), axis=0)
        worst = max(worst, float(np.max(np.abs(trained[name] - expected))))
    assert worst <= worst_tolerance + 1e-6, f"model differs from the median of group means by {worst}"
