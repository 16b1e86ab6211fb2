"""End to end: a short federated simulation on a MovieLens subset, every client message recorded."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import load_platforms
from crossfed.shared.evaluation.per_user_results import PerUserResults
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.protocol.keys import PREPARE_MESSAGE_TYPE
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.simulations.federated import run_federated

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ALLOWED_METRICS = {
    "platform",
    "num-examples",
    "train-loss",
    "train-seconds",
    "pairs-per-second",
    "num-users",
    "sampled-hr",
    "sampled-ndcg",
    "full-hr",
    "full-ndcg",
    "global-sampled-hr",
    "global-sampled-ndcg",
    "global-full-hr",
    "global-full-ndcg",
}


def recording_mod(directory: str):
    """A client mod that writes down everything a platform sends back (runs inside Ray workers)."""

    def record(message, context, call_next):
        reply = call_next(message, context)
        entry = {
            "platform": int(context.node_config["partition-id"]),
            "type": message.metadata.message_type,
            "arrays": {
                name: list(array.shape)
                for record_name, record in reply.content.array_records.items()
                for name, array in record.items()
            },
            "metrics": {
                name: value for record in reply.content.metric_records.values() for name, value in record.items()
            },
            "configs": list(reply.content.config_records),
        }
        with open(Path(directory) / f"messages-{os.getpid()}.jsonl", "a") as stream:
            stream.write(json.dumps(entry) + "\n")
        return reply

    return record


#: Seconds each platform's "prepare" takes on top of its own work in ``federated_run``: start-up
#: that the history's clock must leave out.
PREPARE_DELAY = 3.0


def slow_prepare(message, context, call_next):
    if message.metadata.message_type == PREPARE_MESSAGE_TYPE:
        time.sleep(PREPARE_DELAY)
    return call_next(message, context)


def recorded_run(tmp_path_factory, name: str, mods=(), inner_mods=(), **settings):
    """Run a simulation with every client reply recorded; returns (config, summary, recorded replies).

    ``inner_mods`` run inside secure aggregation (``build_app``'s ``inner_mods``)."""
    messages = tmp_path_factory.mktemp(f"{name}-messages")
    config = RunConfig().replace(run_dir=str(tmp_path_factory.mktemp(name)), **settings)
    summary = run_federated(
        config, client_mods=[*mods, recording_mod(str(messages))], inner_client_mods=list(inner_mods)
    )
    recorded = [json.loads(line) for path in messages.glob("*.jsonl") for line in path.read_text().splitlines()]
    return config, summary, recorded


@pytest.fixture(scope="module")
def federated_run(movielens_dir, tmp_path_factory):
    return recorded_run(
        tmp_path_factory,
        "federated",
        mods=[slow_prepare],
        data_dir=str(movielens_dir),
        num_platforms=3,
        max_users=300,
        num_server_rounds=3,
        local_epochs=2,
        partition="iid",
        seed=3,
    )


def test_federation_learns_well_above_random(federated_run):
    _config, summary, _ = federated_run
    assert summary["mode"] == "federated" and len(summary["per_platform"]) == 3
    assert summary["metrics"]["sampled"]["hr@10"] > 0.3  # random ranking of 1 + 99 candidates gives 0.10
    assert summary["metrics"]["full"]["hr@10"] > 10 / 1682 * 3
    losses = [entry["train_loss"] for entry in summary["history"]]
    assert losses[-1] < losses[0]


def test_start_up_is_timed_apart_from_the_rounds(federated_run):
    """The history's clock starts once every platform is ready; the whole run is both parts."""
    _config, summary, _ = federated_run
    elapsed = [entry["elapsed_seconds"] for entry in summary["history"]]
    # The slow prepare is start-up; were it also on the history's clock, start-up and rounds
    # together would exceed the whole run. Both checks hold under any load: no timing bound.
    assert summary["startup_seconds"] >= PREPARE_DELAY
    assert summary["wall_seconds"] >= summary["startup_seconds"] + elapsed[-1]


def test_no_message_carries_user_side_data(federated_run):
    config, _summary, recorded = federated_run
    platforms = load_platforms(config)
    expected = {
        name: list(a.shape)
        for name, a in shared_arrays(
            build_model(config.model, platforms[0].num_items, platforms[0].item_features)
        ).items()
    }
    train_replies = [m for m in recorded if m["type"] == "train"]
    evaluate_replies = [m for m in recorded if m["type"] == "evaluate"]
    assert len(train_replies) == 3 * 3  # every platform, every round
    assert len(evaluate_replies) == 3 * 4  # validation each round + the final test
    prepare_replies = [m for m in recorded if m["type"] == "query.prepare"]
    assert sorted(m["platform"] for m in prepare_replies) == [0, 1, 2]  # each got ready once, before round 1
    assert all(m["arrays"] == {} and set(m["metrics"]) == {"platform"} for m in prepare_replies)
    assert len(recorded) == len(train_replies) + len(evaluate_replies) + len(prepare_replies)
    for message in recorded:
        assert message["configs"] == []
        assert set(message["metrics"]) <= ALLOWED_METRICS
        assert all(isinstance(v, (int, float)) for v in message["metrics"].values())
    for message in train_replies:
        assert message["arrays"] == expected  # the shared parameters, exactly, and nothing else
        assert not any("user" in name for name in message["arrays"])
    for message in evaluate_replies:
        assert message["arrays"] == {}
    users_per_platform = {p.platform: p.num_users for p in platforms}
    for message in recorded:
        assert (
            message["metrics"].get("num-users", users_per_platform[message["platform"]])
            <= users_per_platform[message["platform"]]
        )


def test_the_same_seed_gives_the_same_global_model_bit_for_bit(federated_run, tmp_path):
    config, summary, _ = federated_run
    again = run_federated(config.replace(run_dir=str(tmp_path / "again")))
    first = FinalModel.load(config.experiment.run_dir).arrays
    second = FinalModel.load(tmp_path / "again").arrays
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert again["metrics"] == summary["metrics"]


def test_run_folder_holds_checkpoint_final_model_and_local_states(federated_run):
    config, summary, _ = federated_run
    run_dir = Path(config.experiment.run_dir)
    assert (run_dir / "summary.json").exists() and (run_dir / Checkpoint.FILE_NAME).exists()
    assert (run_dir / FinalModel.FILE_NAME).exists()
    for platform in range(3):
        local = run_dir / "platforms" / f"platform-{platform}"
        assert (local / PlatformState.FILE_NAME).exists()
        per_user = PerUserResults.load(local)
        entry = summary["per_platform"][platform]
        assert len(per_user.users) == entry["users"]
        assert per_user.hits["sampled"].mean() == pytest.approx(entry["metrics"]["sampled"]["hr@10"])


@pytest.fixture(scope="module")
def private_run(movielens_dir, tmp_path_factory):
    """User-level DP with a fixed noise multiplier and a budget that lasts two of four rounds."""
    return recorded_run(
        tmp_path_factory,
        "private",
        data_dir=str(movielens_dir),
        num_platforms=3,
        max_users=240,
        num_server_rounds=4,
        partition="iid",
        seed=4,
        privacy_unit="user",
        user_dp_mechanism="dp-sgd",
        noise_multiplier=2.0,
        epsilon=2.5,
        delta=1e-4,
        item_id_embedding=False,
        embedding_dim=8,
        mlp_layers="16",
        user_batch=40,
        finetune_epochs=1,
    )


def test_private_run_respects_every_budget_and_stops_cleanly(private_run):
    config, summary, _ = private_run
    privacy = summary["privacy"]
    assert privacy["unit"] == "user" and privacy["delta"] == config.privacy.delta
    assert len(privacy["epsilon"]) == 3
    assert all(0 < spent <= config.privacy.epsilon for spent in privacy["epsilon"].values())
    trained_rounds = [entry for entry in summary["history"] if "declined" not in entry]
    assert 1 <= len(trained_rounds) < config.federation.num_server_rounds  # the budget ran out before the last round
    assert summary["history"][-1]["declined"]  # the round that found budgets spent is logged, then the run stops
    epsilons = [max(entry["epsilon"].values()) for entry in summary["history"]]
    assert epsilons == sorted(epsilons)
    # Metrics were measured on the platforms, never sent: the summary says where they come from.
    assert summary["metrics_source"].startswith("platform-local")
    assert summary["global_metrics"]["sampled"]["hr@10"] >= 0
    # Serving local-first (the default under DP), each platform paired its served model with local-only.
    local_first = summary["local_first"]
    assert [p["platform"] for p in local_first["per_platform"]] == [0, 1, 2]
    for platform in local_first["per_platform"]:
        assert platform["weight"] in config.serving.local_first_weight_grid
        gain = platform["served_minus_local_only"]
        assert gain["low"] <= gain["mean"] <= gain["high"]
        served_hr = summary["per_platform"][platform["platform"]]["metrics"]["sampled"]["hr@10"]
        assert np.isclose(served_hr - platform["local_only_metrics"]["sampled"]["hr@10"], gain["mean"])


def test_under_dp_nothing_but_dp_parameters_and_privacy_status_leaves(private_run):
    _config, _summary, recorded = private_run
    allowed = {"platform", "num-examples", "declined", "epsilon", "epsilon-alone", "noise-multiplier", "delta"}
    assert recorded
    for message in recorded:
        assert set(message["metrics"]) <= allowed, message["metrics"]
        if message["type"] == "train" and message["metrics"].get("declined") == 0:
            assert message["metrics"]["num-examples"] == 1
            assert message["arrays"] and not any("user" in name for name in message["arrays"])
        else:
            assert message["arrays"] == {}


def test_a_resumed_run_continues_after_its_last_checkpoint(movielens_dir, tmp_path):
    settings = {
        "data_dir": str(movielens_dir),
        "run_dir": str(tmp_path),
        "num_platforms": 3,
        "max_users": 150,
        "partition": "iid",
        "seed": 5,
    }
    first = run_federated(RunConfig().replace(num_server_rounds=2, **settings))
    resumed = run_federated(RunConfig().replace(num_server_rounds=3, resume=True, **settings))
    assert [entry["round"] for entry in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == first["history"]
    assert resumed["rounds_completed"] == 3
    with pytest.raises(Exception, match="other settings"):
        run_federated(RunConfig().replace(num_server_rounds=4, resume=True, **{**settings, "learning_rate": 0.1}))
