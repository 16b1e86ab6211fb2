"""A federation of platforms that bring their own files (CSV on one, Parquet on the other)."""

from __future__ import annotations

import pytest

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.contract import DataValidationError
from crossfed.shared.data.loader import platform_data
from crossfed.simulations.federated import run_federated
from crossfed.simulations.operator_demo import CATALOG_VERSION, export_movielens


@pytest.fixture(scope="module")
def own_files(movielens_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("operators")
    first = export_movielens(movielens_dir, root / "platform-0", suffix=".csv", max_users=60, seed=0)
    export_movielens(movielens_dir, root / "platform-1", suffix=".parquet", max_users=60, seed=1)
    return root, first.catalog


@pytest.mark.slow
@pytest.mark.ray
def test_platforms_train_a_federation_on_their_own_files(own_files, tmp_path):
    root, catalog = own_files
    config = RunConfig().replace(
        run_dir=str(tmp_path / "run"),
        num_platforms=2,
        num_server_rounds=2,
        min_platforms=2,
        operator_data=str(root / "platform-{partition-id}"),
        catalog=str(catalog),
        catalog_version=CATALOG_VERSION,
        embedding_dim=8,
        mlp_layers="16,8",
    )
    summary = run_federated(config)
    assert summary["rounds_completed"] == 2
    users = {entry["platform"]: entry["users"] for entry in summary["per_platform"]}
    assert users == {0: platform_data(config, 0).num_users, 1: platform_data(config, 1).num_users}
    assert all(0 <= entry["metrics"]["sampled"]["hr@10"] <= 1 for entry in summary["per_platform"])


def test_own_files_need_the_catalog_and_an_interactions_file(own_files, tmp_path):
    root, catalog = own_files
    with pytest.raises(ConfigError, match="operator-data"):
        RunConfig.from_mapping({"operator-data": str(root / "platform-0")})
    empty = tmp_path / "empty"
    empty.mkdir()
    config = RunConfig().replace(operator_data=str(empty), catalog=str(catalog), catalog_version=CATALOG_VERSION)
    with pytest.raises(DataValidationError, match=r"no interactions\.csv or interactions\.parquet"):
        platform_data(config, 0)
