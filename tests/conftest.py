"""Shared fixtures. Tests that need MovieLens read it from ``CROSSFED_DATA_DIR`` (CI: ../shared/datasets/ml-100k)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from crossfed.shared.data.features import EncodedDataset
from tests.helpers import make_dataset


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """``CROSSFED_DATA_DIR`` if set, else the download cache (fetched once if the network allows)."""
    from crossfed.shared.data.movielens import DatasetUnavailableError, resolve_data_dir

    try:
        return resolve_data_dir(None)
    except DatasetUnavailableError as error:
        pytest.skip(f"MovieLens-100K unavailable: {error}")


@pytest.fixture(scope="session")
def movielens_1m_dir() -> Path:
    """The MovieLens-1M folder ``CROSSFED_DATA_DIR`` leads to (itself, its ``ml-1m/``, or an ``ml-100k``
    folder's sibling); never downloaded, since 1M ratings are too much to fetch for a test."""
    from crossfed.shared.data.movielens import DatasetUnavailableError, resolve_data_dir

    if not os.environ.get("CROSSFED_DATA_DIR"):
        pytest.skip("MovieLens-1M tests need CROSSFED_DATA_DIR naming a folder with ml-1m (or an ml-100k beside it)")
    try:
        return resolve_data_dir(None, "ml-1m")
    except DatasetUnavailableError as error:
        pytest.skip(f"MovieLens-1M unavailable: {error}")


@pytest.fixture(scope="session")
def crossfed_command() -> str:
    """The ``crossfed`` console script installed beside the Python running the tests."""
    return str(Path(sys.executable).with_name("crossfed"))


@pytest.fixture
def message_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps every message with the running task's identity; outside a run, give it one."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1, raising=False)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0, raising=False)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1, raising=False)


@pytest.fixture
def dataset() -> EncodedDataset:
    return make_dataset()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Deployment tests first: they are the longest (minutes of real processes), and under
    pytest-xdist the longest file started last would be the whole suite's tail."""
    items.sort(key=lambda item: item.get_closest_marker("deployment") is None)
