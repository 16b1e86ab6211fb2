"""Canaries: drawn from a recorded seed, injected through the ordinary data path, located on their platforms."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import load_dataset, source_tables
from crossfed.shared.data.interactions import leave_last_out
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.errors import UsageError
from crossfed.simulations.audit.canaries import (
    CANARIES_FILE,
    canary_platforms,
    draw_canaries,
    keep_users,
    write_audited_dataset,
)
from crossfed.simulations.synthetic import SyntheticSpec, write_music_dataset


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("music")
    write_music_dataset(folder, SyntheticSpec(users=80, items=120, file_format="parquet"))
    return source_tables(str(folder))


def test_random_canaries_are_reproducible_distinct_catalog_items_and_half_included(tables):
    first = draw_canaries(tables, 400, 6, seed=3, unit="user", kind="random")
    again = draw_canaries(tables, 400, 6, seed=3, unit="user", kind="random")
    other = draw_canaries(tables, 400, 6, seed=4, unit="user", kind="random")
    assert first == again and first != other
    assert all(len(set(c.items)) == 6 for c in first.canaries)
    assert 150 < first.included.sum() < 250
    catalog = set(tables.items["item_id"])
    assert all(set(c.items) <= catalog for c in first.canaries)


def test_own_items_canaries_train_on_new_items_only_they_rate(tables, tmp_path):
    canaries = draw_canaries(tables, 30, 6, seed=3, unit="user")
    assert canaries.kind == "own-items" and 5 < canaries.included.sum() < 25
    catalog = set(tables.items["item_id"])
    owned = [set(c.training_items) for c in canaries.canaries]
    assert all(len(items) == 4 and not items & catalog for items in owned)
    assert len(set().union(*owned)) == 4 * 30  # no two canaries share an item
    assert all(set(c.items[-2:]) <= catalog for c in canaries.canaries)  # held out: never trained on
    write_audited_dataset(tables, canaries, tmp_path)
    items = pd.read_parquet(tmp_path / "items.parquet").set_index("item_id")
    interactions = pd.read_parquet(tmp_path / "interactions.parquet")
    assert set(items.index) == catalog | set().union(*owned)  # every canary's items, included or not
    for canary in canaries.canaries:
        for item, template in zip(canary.training_items, canary.item_templates, strict=True):
            assert items.loc[item].equals(items.loc[template])  # ordinary features: a real item's
            assert set(interactions.loc[interactions["item_id"] == item, "user_id"]) == (
                {canary.user_id} if canary.included else set()
            )


def test_an_unknown_canary_kind_is_refused(tables):
    with pytest.raises(UsageError, match="canary-kind"):
        draw_canaries(tables, 10, 6, seed=0, unit="user", kind="crafted")


def test_too_few_items_per_canary_is_refused(tables):
    with pytest.raises(UsageError, match="canary-items 3"):
        draw_canaries(tables, 10, 3, seed=0, unit="user")


def platforms_with(tables, canaries, folder):
    write_audited_dataset(tables, canaries, folder)
    config = RunConfig().replace(dataset=str(folder), num_platforms=2, partition="natural")
    return all_platforms(config), load_dataset(str(folder)).item_ids


def rows_of(found, user_id):
    """(training items, held-out items) of ``user_id``, as item ids, or None when absent."""
    platforms, item_ids = found
    for platform in platforms:
        users = [str(u) for u in platform.user_ids]
        if user_id in users:
            code = users.index(user_id)
            split = leave_last_out(platform.interactions)
            train = split.train.items[split.train.users == code]
            held = [split.validation_items[code], split.test_items[code]]
            return {str(item_ids[i]) for i in train}, {str(item_ids[i]) for i in held}
    return None


def test_user_canaries_train_on_their_first_items_only_when_included(tables, tmp_path):
    canaries = draw_canaries(tables, 20, 6, seed=0, unit="user")
    found = platforms_with(tables, canaries, tmp_path / "data")
    for canary in canaries.canaries:
        rows = rows_of(found, canary.user_id)
        if not canary.included:
            assert rows is None
            continue
        train, held = rows
        assert train == set(canary.training_items) == set(canaries.targets(canary))
        assert held == set(canary.items[-2:])
    real = sum(p.num_users for p in found[0]) - int(canaries.included.sum())
    assert real == tables.interactions["user_id"].nunique()


def test_interaction_canaries_are_one_training_row(tables, tmp_path):
    canaries = draw_canaries(tables, 20, 6, seed=0, unit="interaction")
    found = platforms_with(tables, canaries, tmp_path / "data")
    for canary in canaries.canaries:
        train, _held = rows_of(found, canary.user_id)
        (audited,) = canaries.targets(canary)
        assert (audited in train) == canary.included
        assert set(canary.training_items[1:]) <= train
        support, query = canaries.support_and_query(canary)
        assert query == (audited,) and audited not in support


def test_each_canary_is_located_where_it_or_the_user_it_copies_trains(tables, tmp_path):
    canaries = draw_canaries(tables, 30, 6, seed=1, unit="user")
    platforms, _item_ids = platforms_with(tables, canaries, tmp_path / "data")
    located = canaries.with_platforms(canary_platforms(canaries, platforms))
    where = {str(u): p.platform for p in platforms for u in p.user_ids}
    for canary in located.canaries:
        expected = where[canary.user_id] if canary.included else where[canary.template_user]
        assert canary.platform == expected
    path = located.save(tmp_path, {"model": np.arange(30.0)})
    saved = json.loads(path.read_text())
    assert path.name == CANARIES_FILE and saved["seed"] == 1 and saved["canaries"][2]["score_model"] == 2.0


def test_keep_users_subsamples_real_users_only(tables):
    kept = keep_users(tables, 30, seed=0)
    assert kept.interactions["user_id"].nunique() == 30
    assert set(kept.users["user_id"]) == set(kept.interactions["user_id"])
    assert keep_users(tables, 0, seed=0) is tables
