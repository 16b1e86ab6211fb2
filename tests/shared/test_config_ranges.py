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
    config = RunConfig(data_dir=str(movielens_dir), num_platforms=4, max_users=200, partition="iid",
                       privacy_unit="user", user_batch=64)
    platforms = load_platforms(config)
    smallest = min(p.num_users for p in platforms)
    assert smallest < 64
    with pytest.raises(ConfigError, match=rf"'user-batch' = 64 is out of range: expected at most .*\({smallest}, "):
        check_platforms_fit(config, platforms)
    check_platforms_fit(config.replace(user_batch=smallest), platforms)  # the limit itself is fine
    check_platforms_fit(config.replace(privacy_unit="none"), platforms)  # without user-level DP it is unused


def test_the_simulation_refuses_a_bad_user_batch_before_any_round(movielens_dir, tmp_path):
    from crossfed.simulations.federated import run_federated

    run_dir = tmp_path / "run"
    config = RunConfig(data_dir=str(movielens_dir), run_dir=str(run_dir), num_platforms=4, max_users=200,
                       partition="iid", privacy_unit="user", user_batch=500)
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


def test_median_and_trimmed_mean_refuse_secure_aggregation():
    for aggregation in ("median", "trimmed-mean"):
        with pytest.raises(ConfigError, match="'aggregation'.*SecAgg"):
            RunConfig.from_mapping({"aggregation": aggregation, "secagg": True})
    RunConfig.from_mapping({"aggregation": "mean", "secagg": True, "max-update-norm": 2.0})  # norm bound combines
