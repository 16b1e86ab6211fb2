"""Out-of-range settings are rejected before anything runs, naming the key and the allowed range."""

from __future__ import annotations

import pytest

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.datasets import check_platforms_fit, load_platforms


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("epsilon", -1.0, "a number > 0"),
        ("epsilon", 0, "a number > 0"),
        ("num-platforms", 0, "an integer >= 1"),
        ("delta", 1.0, "a number in (0, 1)"),
        ("delta", 1.5, "a number in (0, 1)"),
        ("partition", "by-planet", "one of ('natural', 'dirichlet', 'iid', 'overlap')"),
        ("aggregation", "krum", "one of ('mean', 'median', 'trimmed-mean')"),
        ("trim-fraction", 0.5, "a number in [0, 0.5)"),
        ("trim-fraction", -0.1, "a number in [0, 0.5)"),
        ("max-update-norm", -1.0, "a number >= 0 (0 = no bound)"),
        ("min-platforms", 0, "an integer >= 1"),
        ("fraction-train", 0.0, "a number in (0, 1]"),
        ("full-ranking-every", -1, "an integer >= 0"),
        ("user-dp-mechanism", "laplace", "one of ('gram-subspace', 'dp-sgd')"),
        ("subspace-ranks", "8,0", "comma-separated positive integers"),
        ("subspace-weights", "0,-1", "comma-separated numbers >= 0"),
    ],
)
def test_an_out_of_range_value_is_rejected_with_its_key_and_range(key, value, allowed):
    with pytest.raises(ConfigError) as error:
        RunConfig.from_mapping({key: value})
    assert f"'{key}'" in str(error.value) and allowed in str(error.value)


def test_a_value_of_the_wrong_type_names_its_key():
    with pytest.raises(ConfigError, match="'max-update-norm' = 'big' is not a valid float"):
        RunConfig.from_mapping({"max-update-norm": "big"})


def test_a_user_batch_larger_than_the_smallest_platform_is_rejected(movielens_dir):
    config = (
        RunConfig()
        .replace(
            data_dir=str(movielens_dir),
            num_platforms=4,
            max_users=200,
            partition="iid",
            privacy_unit="user",
            user_batch=64,
        )
        .replace(user_dp_mechanism="dp-sgd")
    )
    platforms = load_platforms(config)
    smallest = min(p.num_users for p in platforms)
    assert smallest < 64
    with pytest.raises(ConfigError, match=rf"'user-batch' = 64 is out of range: expected at most .*\({smallest}, "):
        check_platforms_fit(config.privacy, platforms)
    check_platforms_fit(config.replace(user_batch=smallest).privacy, platforms)  # the limit itself is fine
    check_platforms_fit(config.replace(privacy_unit="none").privacy, platforms)  # without user-level DP it is unused


def test_the_simulation_refuses_a_bad_user_batch_before_any_round(movielens_dir, tmp_path):
    from crossfed.simulations.federated import run_federated

    run_dir = tmp_path / "run"
    config = RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(run_dir),
        num_platforms=4,
        max_users=200,
        partition="iid",
        privacy_unit="user",
        user_dp_mechanism="dp-sgd",
        user_batch=500,
    )
    with pytest.raises(ConfigError, match="user-batch"):
        run_federated(config)
    assert not run_dir.exists()  # nothing ran, nothing was written


def test_the_cli_rejects_a_bad_value_before_creating_the_run_folder(tmp_path, capsys):
    from crossfed.shared.cli import main

    out = tmp_path / "run"
    status = main(["run", "--out", str(out), "--epsilon", "-2"])
    assert status == 2
    assert "epsilon" in capsys.readouterr().err
    assert not out.exists()


def test_median_and_trimmed_mean_refuse_one_secagg_instance():
    for aggregation in ("median", "trimmed-mean"):
        with pytest.raises(ConfigError, match=r"'secagg-groups' = 1 .*at least \d with aggregation"):
            RunConfig.from_mapping({"aggregation": aggregation, "secagg": True})
    RunConfig.from_mapping({"aggregation": "mean", "secagg": True, "max-update-norm": 2.0})  # norm bound combines


GROUPED = {"secagg": True, "num-platforms": 15, "min-platforms": 3}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"aggregation": "median", "secagg-groups": 2}, r"'secagg-groups' = 2 .*expected at least 3"),
        (  # int(0.2 * 4) cuts nothing from either tail
            {"aggregation": "trimmed-mean", "trim-fraction": 0.2, "secagg-groups": 4},
            r"'secagg-groups' = 4 .*expected at least 5",
        ),
        ({"aggregation": "trimmed-mean", "trim-fraction": 0.0, "secagg-groups": 5}, r"'trim-fraction' = 0.0 "),
        (  # 15 platforms cannot form 6 groups of min-platforms = 3
            {"aggregation": "median", "secagg-groups": 6},
            r"'secagg-groups' = 6 .*expected at most 5: each group of the 15 platforms",
        ),
        (  # half of 15 sampled: 7 platforms, 2 groups of 3 at most
            {"aggregation": "median", "secagg-groups": 3, "fraction-train": 0.5},
            r"expected at most 2: each group of the 7",
        ),
    ],
)
def test_too_few_secagg_groups_or_groups_too_small_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_mapping({**GROUPED, **settings})


def test_groups_that_can_outvote_one_and_meet_min_platforms_are_accepted():
    assert RunConfig.from_mapping({**GROUPED, "aggregation": "median", "secagg-groups": 5}).secure_aggregation
    RunConfig.from_mapping({**GROUPED, "aggregation": "median", "secagg-groups": 3})
    RunConfig.from_mapping({**GROUPED, "aggregation": "trimmed-mean", "trim-fraction": 0.25, "secagg-groups": 4})
    RunConfig.from_mapping({**GROUPED, "aggregation": "mean", "secagg-groups": 5})  # legal, though it only costs


def test_secagg_groups_need_secure_aggregation():
    with pytest.raises(ConfigError, match=r"'secagg-groups' = 3 .*1 unless secagg = true"):
        RunConfig.from_mapping({"num-platforms": 15, "secagg-groups": 3})


def test_a_misspelled_run_config_key_is_refused_with_the_nearest_valid_name():
    with pytest.raises(ConfigError, match=r"unknown key 'epsilonn' in run config; did you mean 'epsilon'\?"):
        RunConfig.from_mapping({"epsilonn": 1.0})
    with pytest.raises(ConfigError, match=r"unknown key 'lerning-rate' in sweep file; did you mean 'learning-rate'\?"):
        RunConfig.from_mapping({"seed": 1}, {"lerning-rate": 0.1}, source="sweep file")


def test_a_key_like_no_other_is_refused_with_a_pointer_to_the_reference():
    with pytest.raises(ConfigError, match=r"unknown key 'zzz' in run config \(every key is listed in docs/"):
        RunConfig.from_mapping({"zzz": 1})


def test_a_config_error_is_a_usage_error_exiting_with_code_2():
    from crossfed.shared.errors import UsageError

    with pytest.raises(UsageError) as error:
        RunConfig.from_mapping({"epsilonn": 1.0})
    assert error.value.exit_code == 2


def test_a_misspelled_pinned_key_in_node_config_stops_the_platform():
    from flwr.app import Context, RecordDict

    from crossfed.client.task import platform_config

    node = {"partition-id": 0, "num-partitions": 2, "state-dir": "/srv/state", "epsilonn": 1.0}
    context = Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config={"epsilon": 8.0})
    with pytest.raises(ConfigError, match=r"unknown key 'epsilonn' in node config; did you mean 'epsilon'\?"):
        platform_config(context)


def test_node_config_allows_flowers_keys_and_the_state_folder_by_name():
    from flwr.common.constant import NUM_PARTITIONS_KEY, PARTITION_ID_KEY

    from crossfed.shared.config import NODE_ONLY_KEYS, pinned_run_config
    from crossfed.shared.config.node import FLOWER_NODE_KEYS

    assert {PARTITION_ID_KEY, NUM_PARTITIONS_KEY} == FLOWER_NODE_KEYS
    assert FLOWER_NODE_KEYS | {"state-dir"} == NODE_ONLY_KEYS
    node = {"partition-id": 1, "num-partitions": 3, "state-dir": "/srv/state", "epsilon": 4.0}
    assert pinned_run_config(node) == {"epsilon": 4.0}
    with pytest.raises(ConfigError, match=r"unknown key 'partition-idx' in node config; did you mean 'partition-id'\?"):
        pinned_run_config({"partition-idx": 1})


def test_the_cli_refuses_a_misspelled_flag_with_the_nearest_key(tmp_path, capsys):
    from crossfed.shared.cli import main

    out = tmp_path / "run"
    status = main(["run", "--out", str(out), "--epsilonn", "1"])
    assert status == 2
    assert "unknown option '--epsilonn'; did you mean --epsilon?" in capsys.readouterr().err
    assert not out.exists()
