"""SecAgg+ rounds: the coordinator's sum equals plain aggregation, and no single update leaves in the clear."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.protocol.secure_aggregation import QuantisationPlan, clip_update, quantisation_plan
from crossfed.shared.storage.checkpoint import Checkpoint
from tests.simulations.test_federation import recorded_run, recording_mod

SETTINGS = dict(num_platforms=3, num_server_rounds=1, max_users=150, seed=3, min_platforms=2)


@pytest.fixture(scope="module")
def inside_folder(tmp_path_factory):
    """Where a mod inside secure aggregation writes what it saw in the secure run."""
    return tmp_path_factory.mktemp("inside-secure-aggregation")


@pytest.fixture(scope="module")
def plain_and_secure(movielens_dir, tmp_path_factory, inside_folder):
    plain = recorded_run(tmp_path_factory, "plain", data_dir=str(movielens_dir), **SETTINGS)
    secure = recorded_run(
        tmp_path_factory,
        "secure",
        inner_mods=[recording_mod(str(inside_folder))],
        data_dir=str(movielens_dir),
        secagg=True,
        **SETTINGS,
    )
    return plain, secure


@pytest.fixture(scope="module")
def recorded_inside(plain_and_secure, inside_folder):
    """What the mod inside secure aggregation saw (after the runs of ``plain_and_secure``)."""
    return [json.loads(line) for path in inside_folder.glob("*.jsonl") for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.ray
def test_secure_mean_equals_plain_mean_within_quantisation(plain_and_secure):
    (plain_config, _, plain_replies), (secure_config, summary, _) = plain_and_secure
    assert summary["rounds_completed"] == 1
    plain = Checkpoint.load(plain_config.experiment.run_dir).arrays
    secure = Checkpoint.load(secure_config.experiment.run_dir).arrays
    weights = [r["metrics"]["num-examples"] for r in plain_replies if r["type"] == "train"]
    plan = quantisation_plan(secure_config)
    # Each platform's weighted update is quantised with error below one step; the mean divides
    # the summed error by the summed weight ratios.
    tolerance = len(weights) * plan.step / (sum(weights) / plan.max_weight)
    worst = max(float(np.max(np.abs(secure[name] - plain[name]))) for name in plain)
    assert 0 < worst <= tolerance, f"secure mean differs by {worst}, tolerance {tolerance}"


@pytest.mark.slow
@pytest.mark.ray
def test_no_update_leaves_a_platform_unmasked(plain_and_secure):
    _, (_, _, replies) = plain_and_secure
    train = [r for r in replies if r["type"] == "train"]
    assert train, "no training replies recorded"
    assert all(not r["arrays"] for r in train), "a SecAgg+ reply carried parameters in the clear"
    stages = [r for r in train if RECORD_KEY_CONFIGS in r["configs"]]
    assert len(stages) == len(train)


@pytest.mark.slow
@pytest.mark.ray
def test_a_mod_inside_secure_aggregation_sees_the_update_before_it_is_masked(plain_and_secure, recorded_inside):
    """Where a benchmark's hostile platform acts (benchmarks/item_promotion.py --secagg): the update is plain there."""
    inside = [r for r in recorded_inside if r["type"] == "train"]
    assert {r["platform"] for r in inside} == {0, 1, 2}
    assert all(r["arrays"] for r in inside), "a training reply inside secure aggregation had no update"
    _, (_, _, outside) = plain_and_secure
    assert all(not r["arrays"] for r in outside if r["type"] == "train")


def test_clip_update_counts_and_bounds_what_it_clips():
    plan = QuantisationPlan(clipping_range=0.5, max_weight=10.0)
    update = {"a": np.array([0.1, -3.0, 2.0], np.float32)}
    clipped, count = clip_update(update, weight=5, plan=plan)  # limit 0.5 * 10 / 5 = 1.0
    assert count == 2
    np.testing.assert_allclose(clipped["a"], [0.1, -1.0, 1.0])


def test_distributed_noise_needs_secure_aggregation():
    with pytest.raises(ConfigError, match="noise-mode"):
        RunConfig().replace(privacy_unit="user", noise_mode="distributed").validate()
    with pytest.raises(ConfigError, match="noise-multiplier"):
        RunConfig().replace(
            privacy_unit="user", user_dp_mechanism="dp-sgd", noise_mode="distributed", secagg=True
        ).validate()
    RunConfig().replace(privacy_unit="user", noise_mode="distributed", secagg=True, noise_multiplier=1.5).validate()


@pytest.fixture
def task_identity(monkeypatch):
    """Flower stamps messages with the running task's identity; a unit test has none, so it lends one."""
    from flwr.supercore.task_identity import TaskIdentity

    for attribute in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1)


def _request(message_type: str):
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

    content = RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord({"server-round": 1})})
    return Message(content=content, dst_node_id=7, message_type=message_type)


def test_a_platform_that_requires_secagg_refuses_a_plain_training_request(task_identity):
    from flwr.app import Context, MessageType, RecordDict

    from crossfed.client.secure import InsecureRequestError, guarded_secaggplus_mod

    context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
    passed = []

    def call_next(message, _context):
        passed.append(message.metadata.message_type)
        return message

    strict = guarded_secaggplus_mod(lambda _context: RunConfig().replace(secagg=True))
    with pytest.raises(InsecureRequestError, match="secagg = true"):
        strict(_request(MessageType.TRAIN), context, call_next)
    strict(_request(MessageType.EVALUATE), context, call_next)  # evaluation carries no update
    relaxed = guarded_secaggplus_mod(lambda _context: RunConfig().replace(secagg=False))
    relaxed(_request(MessageType.TRAIN), context, call_next)
    assert passed == [MessageType.EVALUATE, MessageType.TRAIN]
