"""Tests for feature encoding: deterministic vocabularies, imputation, alignment to ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfed.shared.data import EncodedFeature, encode, encode_features, validate

NAN = np.nan


def table(**columns) -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c", "d"], **columns})


def test_categorical_codes_reserve_zero_for_missing() -> None:
    t = table(color=["red", NAN, "blue", "red"])
    f = encode_features(t, "id", ["a", "b", "c", "d"], {"color": "categorical"})["color"]
    assert f.kind == "categorical"
    assert f.vocabulary == ("blue", "red")
    assert f.cardinality == 3
    assert f.values.dtype == np.int64
    assert f.values.tolist() == [2, 0, 1, 2]


def test_multi_hot_splits_on_pipe() -> None:
    t = table(tags=["x|y", "y", NAN, " z | x "])
    f = encode_features(t, "id", ["a", "b", "c", "d"], {"tags": "multi"})["tags"]
    assert f.kind == "multi_hot"
    assert f.vocabulary == ("x", "y", "z")
    assert f.cardinality == 3
    assert f.values.dtype == np.float32
    np.testing.assert_array_equal(f.values, [[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]])


def test_numeric_imputes_median_and_standardises() -> None:
    t = table(size=[1.0, NAN, 3.0, 10.0])
    f = encode_features(t, "id", ["a", "b", "c", "d"], {"size": "numeric"})["size"]
    assert (f.kind, f.vocabulary, f.cardinality) == ("numeric", (), 1)
    assert f.values.dtype == np.float32
    filled = np.array([1.0, 3.0, 3.0, 10.0])  # median of 1, 3, 10 is 3
    np.testing.assert_allclose(f.values, (filled - filled.mean()) / filled.std(), rtol=1e-6)
    assert abs(f.values.mean()) < 1e-6 and abs(f.values.std() - 1) < 1e-6


@pytest.mark.parametrize("values", [[2.0, 2.0, NAN, 2.0], [NAN, NAN, NAN, NAN]])
def test_numeric_without_spread_is_zero(values: list[float]) -> None:
    f = encode_features(table(v=values), "id", list("abcd"), {"v": "numeric"})["v"]
    np.testing.assert_array_equal(f.values, np.zeros(4, dtype=np.float32))


def test_text_keeps_top_n_words_by_document_frequency() -> None:
    t = table(title=["The Cat", "the dog, THE end", "A cat", "Dog days"])
    f = encode_features(t, "id", list("abcd"), {"title": "text"}, max_text_tokens=3)["title"]
    # document frequency: the 2, cat 2, dog 2, then a/days/end 1 -> top 3 = cat, dog, the
    assert f.kind == "multi_hot"
    assert f.vocabulary == ("cat", "dog", "the")
    np.testing.assert_array_equal(f.values, [[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 1, 0]])


def test_text_tie_break_is_alphabetical() -> None:
    t = table(title=["zeta", "alpha", "mid", NAN])
    f = encode_features(t, "id", list("abcd"), {"title": "text"}, max_text_tokens=2)["title"]
    assert f.vocabulary == ("alpha", "mid")


def test_aligned_to_requested_ids_and_unknown_ids_are_missing() -> None:
    t = table(color=["red", "green", "blue", NAN], size=[1.0, 2.0, 3.0, 4.0])
    out = encode_features(t, "id", ["c", "zz", "a"], {"color": "categorical", "size": "numeric"})
    assert out["color"].vocabulary == ("blue", "red")  # only what the requested rows hold
    assert out["color"].values.tolist() == [1, 0, 2]
    assert len(out["size"].values) == 3
    assert out["size"].values[1] == pytest.approx(0.0)  # imputed median 2.0 of {3, 1} -> mean


def test_encoding_does_not_depend_on_row_order() -> None:
    t = table(color=["red", "green", "blue", NAN], tags=["a|b", "b", NAN, "c"], size=[1.0, NAN, 3, 4])
    kinds = {"color": "categorical", "tags": "multi", "size": "numeric"}
    ids = list("dcba")
    first = encode_features(t, "id", ids, kinds)
    second = encode_features(t.sample(frac=1.0, random_state=3), "id", ids, kinds)
    for column in kinds:
        assert_feature_equal(first[column], second[column])


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown feature kind"):
        encode_features(table(x=[1, 2, 3, 4]), "id", list("abcd"), {"x": "vector"})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["x", "y", "zz", "Ä", "10"])), min_size=1, max_size=30))
def test_categorical_codes_decode_to_values(values: list[str | None]) -> None:
    ids = [f"id{k}" for k in range(len(values))]
    t = pd.DataFrame({"id": ids, "v": pd.Series(values, dtype="str")})
    f = encode_features(t, "id", ids, {"v": "categorical"})["v"]
    assert list(f.vocabulary) == sorted(f.vocabulary)
    decoded = [None if code == 0 else f.vocabulary[code - 1] for code in f.values]
    assert decoded == values


# ---------------------------------------------------------------------------------- encode


def small_tables(with_users: bool = True):
    items = pd.DataFrame({"item_id": ["i3", "i1", "i2"], "genre": ["a|b", "b", NAN], "price": [1.0, 2.0, 3.0]})
    users = pd.DataFrame({"user_id": ["u2", "u10", "u1", "idle"], "region": ["n", "s", NAN, "s"]})
    inter = pd.DataFrame(
        {
            "user_id": ["u2", "u10", "u2", "u1"],
            "item_id": ["i1", "i3", "i3", "i1"],
            "timestamp": ["5", "6", "7", "8"],
            "rating": ["1", "2", "3", "4"],
        }
    )
    return validate(inter, items, users if with_users else None, name="toy")


def test_encode_codes_and_alignment() -> None:
    data = encode(small_tables())
    assert data.name == "toy"
    assert data.user_ids.tolist() == ["u1", "u10", "u2"]  # sorted ids; "idle" never interacted
    assert data.item_ids.tolist() == ["i3", "i1", "i2"]  # catalog order, i2 never interacted
    assert (data.num_users, data.num_items) == (3, 3)
    assert data.users.tolist() == [2, 1, 2, 0]
    assert data.items.tolist() == [1, 0, 0, 1]
    assert data.users.dtype == data.items.dtype == data.timestamps.dtype == np.int64
    assert data.timestamps.tolist() == [5, 6, 7, 8]
    assert data.weights.dtype == np.float32 and data.weights.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(data.user_ids[data.users], ["u2", "u10", "u2", "u1"])
    np.testing.assert_array_equal(data.item_ids[data.items], ["i1", "i3", "i3", "i1"])

    genre = data.item_features["genre"]
    np.testing.assert_array_equal(genre.values, [[1, 1], [0, 1], [0, 0]])
    region = data.user_features["region"]
    assert region.vocabulary == ("n", "s") and region.values.tolist() == [0, 2, 1]

    attrs = data.user_attributes
    assert attrs.index.tolist() == [0, 1, 2] and attrs.index.name == "user"
    assert attrs["user_id"].tolist() == ["u1", "u10", "u2"]
    assert attrs["region"].tolist()[1:] == ["s", "n"] and pd.isna(attrs["region"][0])


def test_encode_without_user_table() -> None:
    data = encode(small_tables(with_users=False))
    assert data.user_features == {}
    assert data.user_attributes.columns.tolist() == []
    assert len(data.user_attributes) == data.num_users


def assert_feature_equal(a: EncodedFeature, b: EncodedFeature) -> None:
    assert (a.kind, a.vocabulary, a.cardinality) == (b.kind, b.vocabulary, b.cardinality)
    assert a.values.dtype == b.values.dtype
    np.testing.assert_array_equal(a.values, b.values)
