"""Files a hostile coordinator could hand a platform give one-line errors (a ``CrossfedError``), never tracebacks."""

from __future__ import annotations

import numpy as np
import pytest

from crossfed.shared.data.catalog import CatalogError, load_catalog
from crossfed.shared.storage.checked import CorruptStateError, read_record, save_checked
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.platform_state import PlatformState


def test_deeply_nested_catalog_json_is_refused_as_not_a_catalog(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CatalogError, match="nested too deeply"):
        load_catalog(path)


def test_catalog_items_that_are_not_objects_are_refused(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(
        '{"format": "crossfed-catalog/1", "version": "1", "sha256": "x", "feature_kinds": {}, "items": [1]}'
    )
    with pytest.raises(CatalogError):
        load_catalog(path)


def test_a_global_model_whose_arrays_are_not_a_mapping_is_refused(tmp_path):
    save_checked(
        tmp_path / FinalModel.FILE_NAME, {"record": FinalModel.FILE_NAME, "fields": {"arrays": [1, 2], "config": {}}}
    )
    with pytest.raises(CorruptStateError, match=r"'arrays'.*list, expected dict"):
        FinalModel.load(tmp_path)


def test_a_global_model_whose_arrays_hold_no_arrays_is_refused(tmp_path):
    fields = {"arrays": {"item_bias": "not an array"}, "config": {}}
    save_checked(tmp_path / FinalModel.FILE_NAME, {"record": FinalModel.FILE_NAME, "fields": fields})
    with pytest.raises(CorruptStateError, match="item_bias"):
        FinalModel.load(tmp_path)


def test_a_checkpoint_given_as_a_platform_state_is_refused(tmp_path):
    Checkpoint({"w": np.zeros(2, np.float32)}, 1, {}).save(tmp_path)
    with pytest.raises(CorruptStateError, match=r"platform_state\.pt"):
        read_record(tmp_path / Checkpoint.FILE_NAME, PlatformState)


def test_a_truncated_checkpoint_is_refused_on_resume(tmp_path):
    path = Checkpoint({"w": np.zeros(64, np.float32)}, 3, {}).save(tmp_path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptStateError, match="truncated"):
        Checkpoint.load(tmp_path)
