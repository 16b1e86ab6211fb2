"""A deployed platform takes its privacy settings, paths and peers' terms from its operator, not the coordinator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.supercore.task_identity import TaskIdentity

from crossfed.client import task
from crossfed.client.failures import codes_only
from crossfed.client.secure import WeakSecureAggregationError, check_setup
from crossfed.server.secure_groups import partition_groups
from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.config.node import is_deployed
from crossfed.shared.config.trust import RevealingSettingError, UnpinnedPrivacySetting
from crossfed.shared.data.contract import DataValidationError
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.privacy import PrivacyLedger
from crossfed.shared.protocol.failures import FailureCode
from crossfed.shared.protocol.secure_aggregation import AnnouncedSetup, required_shares, setup_problem
from tests.helpers import make_dataset

USER_TABLE_ERROR = DataValidationError("interactions.csv", "user 'u13' is not in the user table", row=4)


@pytest.fixture(autouse=True)
def message_identity(monkeypatch):
    """Flower stamps messages with the running task's identity; outside a run, give it one."""
    for attribute in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1, raising=False)


def _context(run_config: dict, node_config: dict) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config=run_config)


def _deployed(run_config: dict, **pins) -> Context:
    return _context(run_config, {"partition-id": 0, "num-partitions": 2, "state-dir": "/srv/state", **pins})


# -- 4. privacy settings are the platform's own ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [("epsilon", 50.0), ("privacy-unit", "interaction"), ("secagg-threshold", 0.1), ("clip-norm", 10.0)],
)
def test_a_deployed_platform_refuses_a_privacy_setting_its_operator_did_not_pin(key, value):
    with pytest.raises(UnpinnedPrivacySetting, match=f"'{key}'"):
        task.platform_config(_deployed({key: value}))


def test_a_pinned_or_default_privacy_setting_is_accepted_and_the_pin_wins():
    config = task.platform_config(_deployed({"epsilon": 50.0, "delta": 1e-5}, epsilon=2.0))
    assert (config.privacy.epsilon, config.privacy.delta) == (2.0, 1e-5)


def test_a_simulated_platform_takes_the_researchers_run_config_as_it_is():
    node = {"partition-id": 0, "num-partitions": 2}
    assert not is_deployed(node, program="pytest")
    assert task.platform_config(_context({"epsilon": 50.0}, node)).privacy.epsilon == 50.0


def test_noise_scaling_keys_must_be_pinned_once_the_operator_chose_distributed_noise():
    submitted = {
        "privacy-unit": "user",
        "user-dp-mechanism": "dp-sgd",
        "secagg": True,
        "noise-multiplier": 1.0,
        "min-platforms": 10000,
    }
    pins = {
        "privacy-unit": "user",
        "user-dp-mechanism": "dp-sgd",
        "secagg": True,
        "noise-multiplier": 1.0,
        "noise-mode": "distributed",
    }
    with pytest.raises(UnpinnedPrivacySetting, match="'min-platforms'"):
        task.platform_config(_deployed({**submitted, "noise-mode": "distributed"}, **pins))
    # under local noise min-platforms scales nothing: the coordinator may choose it
    local = {key: value for key, value in pins.items() if key != "noise-mode"}
    assert task.platform_config(_deployed(submitted, **local)).federation.min_platforms == 10000


def test_distributed_noise_the_operator_did_not_choose_is_priced_on_the_platforms_own_share(monkeypatch, tmp_path):
    dataset = make_dataset(20, 50)
    platform = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    monkeypatch.setattr(task, "platform_data", lambda _config, _platform: platform)
    pins = {
        "privacy-unit": "user",
        "user-dp-mechanism": "dp-sgd",
        "secagg": True,
        "noise-multiplier": 1.0,
        "delta": 1e-3,
        "eval-negatives": 10,
    }
    submitted = {**pins, "noise-mode": "distributed", "min-platforms": 100, "embedding-dim": 4, "mlp-layers": "8"}
    trusted, _directory, _config = task.build_trainer(
        _deployed(submitted, **pins, **{"noise-mode": "distributed", "min-platforms": 100, "state-dir": str(tmp_path)}),
        None,
    )
    untrusted, _directory, _config = task.build_trainer(
        _deployed(submitted, **pins, **{"state-dir": str(tmp_path)}), None
    )
    assert (trusted.budget_on_own_noise, untrusted.budget_on_own_noise) == (False, True)


def test_the_budget_check_on_own_noise_refuses_what_the_full_noise_would_allow():
    ledger = PrivacyLedger("user", budget=4.0, delta=1e-5, noise_multiplier=1.0, noise_share=0.01)
    ledger.sample_rate, ledger.steps_per_round = 0.05, 1
    assert ledger.can_train_round()
    assert not ledger.can_train_round(own_noise_only=True)


def _setup(sample: int, shares: int, threshold: int) -> AnnouncedSetup:
    return AnnouncedSetup(sample_num=sample, share_num=shares, threshold=threshold)


def test_a_secagg_setup_weaker_than_the_platforms_own_settings_is_refused():
    config = RunConfig().replace(secagg=True, min_platforms=5, secagg_shares=1.0, secagg_threshold=0.5)
    shares, threshold = required_shares(8, config)
    assert setup_problem(_setup(8, shares, threshold), config) is None
    assert "min-platforms" in setup_problem(_setup(4, 4, 2), config)
    assert "secagg-shares" in setup_problem(_setup(8, 3, 2), config)
    assert "secagg-threshold" in setup_problem(_setup(8, shares, 2), config)


def test_each_platform_refuses_a_secagg_group_smaller_than_its_own_min_platforms():
    """Groups (``secagg-groups``) are SecAgg+ instances: the platform checks the one it is in, whatever the
    coordinator's configuration said, so a hostile coordinator cutting 15 platforms into groups of 2 is refused."""
    config = RunConfig().replace(secagg=True, num_platforms=15, min_platforms=3, secagg_groups=5, aggregation="median")
    for group in partition_groups(list(range(15)), 7, seed=0, server_round=1):  # groups of 2 or 3
        shares, threshold = required_shares(len(group), config)
        problem = setup_problem(_setup(len(group), shares, threshold), config)
        assert (problem is None) == (len(group) >= 3)
        if problem is not None:
            assert "min-platforms = 3" in problem
    shares, threshold = required_shares(3, config)
    record = ConfigRecord(
        {Key.STAGE: Stage.SETUP, Key.SAMPLE_NUMBER: 2, Key.SHARE_NUMBER: 2, Key.THRESHOLD: 2}
    )  # one group of 2: each member would see the other's update from the group sum
    message = Message(content=RecordDict({RECORD_KEY_CONFIGS: record}), dst_node_id=1, message_type=MessageType.TRAIN)
    with pytest.raises(WeakSecureAggregationError, match="2 peer"):
        check_setup(message, config)


def test_the_guard_refuses_the_setup_message_itself():
    config = RunConfig().replace(secagg=True, min_platforms=5)
    record = ConfigRecord({Key.STAGE: Stage.SETUP, Key.SAMPLE_NUMBER: 6, Key.SHARE_NUMBER: 3, Key.THRESHOLD: 2})
    message = Message(content=RecordDict({RECORD_KEY_CONFIGS: record}), dst_node_id=1, message_type=MessageType.TRAIN)
    with pytest.raises(WeakSecureAggregationError):
        check_setup(message, config)


# -- 5. error codes, never texts ---------------------------------------------------------------------------------


def _failing(error: Exception):
    def call_next(message: Message, context: Context) -> Message:
        raise error

    return call_next


@pytest.mark.parametrize(
    "error, code",
    [
        (
            DataValidationError("interactions.csv", "user 'u13' is not in the user table", row=4, column="user_id"),
            FailureCode.DATA,
        ),
        (ValueError("a user has interacted with all but 1622 items; 1623 negatives needed"), FailureCode.INTERNAL),
        (ConfigError("config key 'epsilon' = 3 is out of range"), FailureCode.CONFIGURATION),
    ],
)
def test_a_failure_reaches_the_coordinator_as_a_code_without_its_text(error, code, caplog):
    request = Message(content=RecordDict(), dst_node_id=1, message_type=MessageType.EVALUATE)
    reply = codes_only(request, _context({}, {}), _failing(error))
    assert reply.has_error() and reply.error.code == int(code)
    assert str(error) not in reply.error.reason and "u13" not in reply.error.reason and "1622" not in reply.error.reason
    assert str(error) in caplog.text  # the details stay in the platform's own log


def test_eval_negatives_is_bounded_by_the_catalog_size_on_a_deployed_platform(monkeypatch, tmp_path):
    dataset = make_dataset(20, 50)
    platform = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    monkeypatch.setattr(task, "platform_data", lambda _config, _platform: platform)
    small = {"embedding-dim": 4, "mlp-layers": "8"}
    with pytest.raises(RevealingSettingError, match="eval-negatives"):
        task.build_trainer(_deployed({**small, "eval-negatives": 49}, **{"state-dir": str(tmp_path)}), None)
    trainer, _directory, _config = task.build_trainer(
        _deployed({**small, "eval-negatives": 25}, **{"state-dir": str(tmp_path)}), None
    )
    assert trainer.config.evaluation.eval_negatives == 25


# -- 6. paths come from node config ------------------------------------------------------------------------------


def test_a_deployed_platform_will_not_start_without_a_pinned_state_dir():
    node = {"partition-id": 0, "num-partitions": 2, "data-dir": "/srv/data"}
    with pytest.raises(ConfigError, match="state-dir"):
        task.state_dir(_context({}, node), RunConfig().experiment, 0)


def test_only_flowers_keys_inside_a_supernodes_program_is_still_a_deployment():
    engine_keys = {"partition-id": 0, "num-partitions": 2}
    assert is_deployed(engine_keys, program="/usr/bin/flwr-clientapp")
    assert is_deployed(engine_keys, program="flower-supernode")
    assert not is_deployed(engine_keys, program="/usr/bin/flwr-simulation")


def test_a_deployed_platform_takes_no_path_from_the_coordinators_run_config(tmp_path):
    submitted = {"run-dir": "../../elsewhere", "catalog": "/coordinator/catalog.json", "data-dir": "/tmp/x"}
    context = _deployed(submitted, **{"state-dir": str(tmp_path)})
    config = task.platform_config(context)
    defaults = RunConfig()
    assert (config.experiment.run_dir, config.data.catalog, config.data.data_dir) == (
        defaults.experiment.run_dir,
        "",
        "",
    )
    assert task.state_dir(context, config.experiment, 0) == Path(tmp_path)
