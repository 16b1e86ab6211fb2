"""A platform lost before it shares its SecAgg+ keys costs the round one platform, not the round.

flwr 1.42's ``SecAggPlusWorkflow`` alone fails the whole round here (survivors are asked for
key shares they never received); ``crossfed.server.secagg_workflow`` forgets such a platform instead.
A client mod makes platform 2 fail the setup stage (stage 0) of round 1 - what a SuperNode
restart between rounds does in a deployment (tests/simulations/test_loopback.py).
"""

from __future__ import annotations

import pytest
from flwr.app import Context, Message, MessageType
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from crossfed.shared.config import RunConfig
from crossfed.simulations.federated import run_federated

pytestmark = [pytest.mark.slow, pytest.mark.ray]

DROPPED = 2


def drop_platform_at_setup(message: Message, context: Context, call_next) -> Message:
    """Platform ``DROPPED`` fails SecAgg+'s setup stage in round 1, as if its SuperNode had just stopped."""
    configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
    if (
        message.metadata.message_type == MessageType.TRAIN
        and configs is not None
        and configs.get(Key.STAGE) == Stage.SETUP
        and message.metadata.group_id == "1"
        and int(context.node_config.get("partition-id", -1)) == DROPPED
    ):
        raise RuntimeError("simulated dropout before sharing keys")
    return call_next(message, context)


def test_round_completes_without_a_platform_lost_at_setup(movielens_dir, tmp_path):
    config = RunConfig().replace(
        run_dir=str(tmp_path / "run"),
        data_dir=str(movielens_dir),
        num_platforms=3,
        num_server_rounds=1,
        max_users=150,
        seed=3,
        min_platforms=2,
        secagg=True,
        embedding_dim=8,
        mlp_layers="16,8",
    )
    summary = run_federated(config, client_mods=[drop_platform_at_setup])
    assert summary["rounds_completed"] == 1
    # The round trained on the two platforms that stayed; the dropped one still evaluates.
    assert [entry["platform"] for entry in summary["per_platform"]] == [0, 1, 2]
