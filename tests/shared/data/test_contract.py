"""Tests for the data contract: every rejection must say file, row and column."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfed.shared.data import (
    DataValidationError,
    ValidationReport,
    infer_feature_kind,
    load_tables,
    read_table,
    validate,
)
from crossfed.shared.data.contract import _parse_timestamps

ITEMS_CSV = "item_id,title,price,color,tags\ni1,Red shoe,9.5,red,a|b\ni2,Blue hat,,blue,b\ni3,Green cap,3,,\n"
USERS_CSV = "user_id,age,country\nu1,30,DE\nu2,,FR\n"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write(tmp_path / "items.csv", ITEMS_CSV)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return write(tmp_path / "users.csv", USERS_CSV)


def load_error(interactions: Path, items: Path, users: Path | None = None) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        load_tables(interactions, items, users)
    return info.value


# ---------------------------------------------------------------------------------- happy path


def test_valid_csv_is_normalised(tmp_path: Path, catalog: Path, users_file: Path) -> None:
    inter = write(
        tmp_path / "interactions.csv",
        "user_id,item_id,timestamp,rating,comment\n"
        "u1,i1,100,4.5,nice\n"
        "u2,i2,1970-01-01T00:02:00Z,3,\n"
        "u1,i2,1970-01-01T01:00:00+01:00,5,\n",
    )
    tables = load_tables(inter, catalog, users_file, name="shop")
    df = tables.interactions
    assert list(df.columns) == ["user_id", "item_id", "timestamp", "weight"]
    assert df["timestamp"].dtype == np.int64 and df["weight"].dtype == np.float32
    assert all(pd.api.types.is_string_dtype(df[c]) for c in ("user_id", "item_id"))
    assert df["timestamp"].tolist() == [100, 120, 0]  # +01:00 offset honoured
    assert df["weight"].tolist() == [4.5, 3.0, 5.0]
    assert tables.name == "shop"
    assert tables.feature_kinds == {
        "items": {"title": "text", "price": "numeric", "color": "categorical", "tags": "multi"},
        "users": {"age": "numeric", "country": "categorical"},
    }
    assert tables.items["price"].dtype == np.float64
    assert tables.report == ValidationReport(
        rows_read=3,
        duplicates_dropped=0,
        users=2,
        items=3,
        items_interacted=2,
        missing_values={
            "items": {"title": 0, "price": 1, "color": 1, "tags": 1},
            "users": {"age": 1, "country": 0},
        },
    )
    lines = tables.report.lines()
    assert "items: 3 in catalog, 2 with interactions, 1 never interacted with" in lines
    assert "items.price: 1 missing values (imputed at encoding)" in lines


def test_no_rating_no_timestamp_defaults(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\nu1,i1\nu2,i3\nu1,i2\n")
    tables = load_tables(inter, catalog)
    assert tables.users is None
    assert tables.interactions["weight"].tolist() == [1.0, 1.0, 1.0]
    # timestamps are the row order after the exact duplicate (row 2) was dropped
    assert tables.interactions["timestamp"].tolist() == [0, 1, 2]
    assert tables.report.duplicates_dropped == 1


def test_exact_duplicates_dropped_repeats_kept(tmp_path: Path, catalog: Path) -> None:
    inter = write(
        tmp_path / "interactions.csv",
        "user_id,item_id,timestamp,weight\n"
        "u1,i1,10,1\n"
        "u1,i1,10,1\n"  # exact duplicate: dropped
        "u1,i1,1970-01-01T00:00:10,1\n"  # same instant written differently: also a duplicate
        "u1,i1,20,1\n"  # repeat consumption: kept
        "u1,i1,20,2\n",  # different weight: kept
    )
    tables = load_tables(inter, catalog)
    assert tables.report.rows_read == 5
    assert tables.report.duplicates_dropped == 2
    assert tables.report.rows_kept == 3
    kept = tables.interactions[["timestamp", "weight"]].values.tolist()
    assert kept == [[10, 1], [20, 1], [20, 2]]


def test_parquet_with_typed_columns_matches_csv_ids(tmp_path: Path, catalog: Path) -> None:
    """Integer ids (or floats from a column with gaps) must match the same ids written as text."""
    items = write(tmp_path / "items.csv", "item_id,genre\n7,x\n8,y\n")
    inter = tmp_path / "interactions.parquet"
    pd.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [7.0, 8.0],
            "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"]),
            "rating": [1, 2],
        }
    ).to_parquet(inter)
    tables = load_tables(inter, items)
    assert tables.interactions["user_id"].tolist() == ["1", "2"]
    assert tables.interactions["item_id"].tolist() == ["7", "8"]
    assert tables.interactions["timestamp"].tolist() == [1577836800, 1577923200]


def test_explicit_feature_kinds_override_inference(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["a", "b"], "code": ["1", "2"], "blurb": ["x", "y"]})
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a"]})
    tables = validate(inter, items, feature_kinds={"items": {"code": "categorical"}})
    assert tables.feature_kinds["items"] == {"code": "categorical", "blurb": "categorical"}
    assert tables.items["code"].tolist() == ["1", "2"]


@pytest.mark.parametrize(
    ("column", "values", "kind"),
    [
        ("price", ["1", "2.5", None], "numeric"),
        ("name", ["Al", "Bo", "Cy"], "text"),
        ("blurb", ["x" * 40, "y" * 35, None], "text"),
        ("tags", ["a|b", "c", None], "multi"),
        ("color", ["red", "blue", "red"], "categorical"),
        ("zip", ["85711", "T8H1N", "01002"], "categorical"),
        ("empty", [None, None, None], "categorical"),
    ],
)
def test_infer_feature_kind(column: str, values: list, kind: str) -> None:
    assert infer_feature_kind(column, pd.Series(values, dtype="str")) == kind


def test_infer_numeric_dtype() -> None:
    assert infer_feature_kind("n", pd.Series([1, 2, 3])) == "numeric"
    assert infer_feature_kind("flag", pd.Series([True, False])) == "categorical"


# ------------------------------------------------------------------------------------ errors


def test_missing_required_column(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item\nu1,i1\n")
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), None, "item_id")
    assert "required column is missing" in str(err)


def test_missing_catalog_id_column(tmp_path: Path) -> None:
    items = write(tmp_path / "items.csv", "id,title\ni1,x\n")
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\n")
    err = load_error(inter, items)
    assert (err.file, err.row, err.column) == (str(items), None, "item_id")


def test_missing_required_value(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\nu1,i2\n,i3\n ,i1\n")
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), 3, "user_id")
    assert "1 more rows have the same problem" in str(err)


def test_blank_interior_line_keeps_row_numbers(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\n\nu1,i2\n\n\n")
    err = load_error(inter, catalog)
    assert (err.row, err.column) == (2, "user_id")
    assert "row is empty" in str(err)


@pytest.mark.parametrize(
    ("header", "bad_value", "column"),
    [
        ("timestamp", "yesterday", "timestamp"),
        ("timestamp", "12.5", "timestamp"),
        ("rating", "five", "rating"),
        ("weight", "inf", "weight"),
    ],
)
def test_wrong_type(tmp_path: Path, catalog: Path, header: str, bad_value: str, column: str) -> None:
    inter = write(
        tmp_path / "interactions.csv",
        f"user_id,item_id,{header}\nu1,i1,1\nu1,i2,2\nu2,i3,{bad_value}\n",
    )
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), 3, column)
    assert repr(bad_value) in str(err)


def test_missing_optional_value_when_column_present(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id,rating\nu1,i1,1\nu1,i2,\n")
    err = load_error(inter, catalog)
    assert (err.row, err.column) == (2, "rating")


def test_rating_and_weight_together_is_ambiguous(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id,rating,weight\nu1,i1,1,1\n")
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), None, "weight")


def test_unknown_item_message(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\nu1,abc\n")
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), 2, "item_id")
    assert str(err) == (f"{inter}, row 2, column 'item_id': item 'abc' is not in the item catalog ({catalog})")


def test_unknown_item_message_with_relative_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "items.csv", ITEMS_CSV)
    lines = "".join(f"u1,i{1 + k % 3}\n" for k in range(16))
    write(tmp_path / "interactions.csv", "user_id,item_id\n" + lines + "u1,abc\n")
    err = load_error(Path("interactions.csv"), Path("items.csv"))
    assert str(err) == ("interactions.csv, row 17, column 'item_id': item 'abc' is not in the item catalog (items.csv)")


def test_unknown_user(tmp_path: Path, catalog: Path, users_file: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\nu9,i2\n")
    err = load_error(inter, catalog, users_file)
    assert (err.file, err.row, err.column) == (str(inter), 2, "user_id")
    assert f"user 'u9' is not in the user table ({users_file})" in str(err)


def test_duplicate_catalog_id(tmp_path: Path) -> None:
    items = write(tmp_path / "items.csv", "item_id,title\ni1,a\ni2,b\ni1,c\n")
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\n")
    err = load_error(inter, items)
    assert (err.file, err.row, err.column) == (str(items), 3, "item_id")
    assert "first at row 1" in str(err)


def test_duplicate_user_id(tmp_path: Path, catalog: Path) -> None:
    users = write(tmp_path / "users.csv", "user_id,age\nu1,3\nu1,4\n")
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\n")
    err = load_error(inter, catalog, users)
    assert (err.file, err.row, err.column) == (str(users), 2, "user_id")


def test_declared_numeric_feature_with_text(tmp_path: Path) -> None:
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "price": ["1", None, "cheap"]})
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a"]})
    with pytest.raises(DataValidationError) as info:
        validate(
            inter,
            items,
            sources={"items": "items.csv"},
            feature_kinds={"items": {"price": "numeric"}},
        )
    assert (info.value.file, info.value.row, info.value.column) == ("items.csv", 3, "price")
    assert "'cheap'" in str(info.value)


@pytest.mark.parametrize("kinds", [{"price": "number"}, {"nope": "numeric"}, {"item_id": "text"}])
def test_bad_feature_kinds(kinds: dict) -> None:
    items = pd.DataFrame({"item_id": ["a"], "price": ["1"]})
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a"]})
    with pytest.raises(DataValidationError) as info:
        validate(inter, items, feature_kinds={"items": kinds})
    assert (info.value.file, info.value.column) == ("items", next(iter(kinds)))


def test_bad_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "interactions.tsv", "user_id\titem_id\n")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    assert (info.value.file, info.value.row, info.value.column) == (str(path), None, None)
    assert ".csv or .parquet" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="file not found"):
        read_table(tmp_path / "nope.csv")


@pytest.mark.parametrize(("suffix", "content"), [(".csv", b""), (".csv", b"\n\n  \n"), (".parquet", b"")])
def test_empty_file(tmp_path: Path, suffix: str, content: bytes) -> None:
    path = write(tmp_path / f"interactions{suffix}", content)
    with pytest.raises(DataValidationError, match="file is empty") as info:
        read_table(path)
    assert (info.value.file, info.value.row) == (str(path), None)


def test_header_only_file(tmp_path: Path, catalog: Path) -> None:
    inter = write(tmp_path / "interactions.csv", "user_id,item_id\n")
    err = load_error(inter, catalog)
    assert (err.file, err.row) == (str(inter), None)
    assert "no data rows" in str(err)


def test_non_utf8_csv(tmp_path: Path) -> None:
    latin1 = "item_id,title\n1,Toy Story\n2,Mis\xe9rables\n".encode("latin-1")
    path = write(tmp_path / "items.csv", latin1)
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    err = info.value
    assert (err.file, err.row, err.column) == (str(path), 2, None)
    offset = path.read_bytes().index(b"\xe9")
    assert f"byte 0xe9 at byte offset {offset} (line 3)" in str(err)
    assert "UTF-8" in str(err)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "\ufeffitem_id,title\n1,Misérables\n".encode("utf-8"))
    assert read_table(path).columns.tolist() == ["item_id", "title"]


def test_malformed_csv_names_row(tmp_path: Path) -> None:
    path = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\nu1,i2,extra\n")
    with pytest.raises(DataValidationError) as info:
        read_table(path)
    assert (info.value.file, info.value.row) == (str(path), 2)


def test_parquet_missing_column(tmp_path: Path, catalog: Path) -> None:
    inter = tmp_path / "interactions.parquet"
    pd.DataFrame({"user": ["u1"], "item_id": ["i1"]}).to_parquet(inter)
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), None, "user_id")


def test_parquet_wrong_column_types(tmp_path: Path, catalog: Path) -> None:
    inter = tmp_path / "interactions.parquet"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "timestamp": [True, False]}).to_parquet(inter)
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), 1, "timestamp")

    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "rating": [[1, 2], [3]]}).to_parquet(inter)
    err = load_error(inter, catalog)
    assert (err.file, err.row, err.column) == (str(inter), 1, "rating")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "items.parquet", b"this is not parquet at all")
    with pytest.raises(DataValidationError, match="cannot be read as Parquet") as info:
        read_table(path)
    assert info.value.file == str(path)


def test_error_is_a_picklable_value_error() -> None:
    err = DataValidationError("a.csv", "bad", row=3, column="x")
    assert isinstance(err, ValueError)
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.file, clone.row, clone.column, str(clone)) == ("a.csv", 3, "x", str(err))
    assert str(DataValidationError("a.csv", "empty")) == "a.csv: empty"


def test_inputs_not_modified() -> None:
    items = pd.DataFrame({"item_id": [" a"], "x": ["1"]})
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["a "]})
    before = (items.copy(), inter.copy())
    validate(inter, items)
    pd.testing.assert_frame_equal(items, before[0])
    pd.testing.assert_frame_equal(inter, before[1])


# -------------------------------------------------------------------------- timestamp parsing


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.just(UTC),
        ).map(lambda d: d.replace(microsecond=0)),
        min_size=1,
        max_size=20,
    )
)
def test_iso_and_integer_timestamps_agree(moments: list[datetime]) -> None:
    """Whichever way an export writes an instant, it becomes the same unix second."""
    expected = [int(m.timestamp()) for m in moments]
    as_text = pd.Series([m.isoformat() for m in moments], dtype="str")
    as_ints = pd.Series([str(s) for s in expected], dtype="str")
    for series in (as_text, as_ints, pd.Series(expected, dtype=np.int64)):
        seconds, bad = _parse_timestamps(series)
        assert not bad.any()
        assert seconds.tolist() == expected
