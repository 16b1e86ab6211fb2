"""``crossfed validate`` and the catalog on bad input: a clean message naming file, row and column, never a
traceback, never a file written. Hypothesis throws malformed files at it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossfed.shared.cli import main as crossfed
from crossfed.shared.data.catalog import CatalogError, load_catalog, publish

ITEMS = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "genres": ["a|b", "b", None], "year": [1990.0, None, 2001.0]})


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    publish(ITEMS, "v1", path, feature_kinds={"genres": "multi", "year": "numeric"})
    return path


def run_validate(path: Path, catalog: Path, *extra: str) -> int:
    return crossfed(["validate", "--interactions", str(path), "--catalog", str(catalog), *extra])


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------------------- each listed case


BAD_CSV = {
    "wrong encoding": (b"user_id,item_id\nu1,i1\nu\xe9,i2\n", "not valid UTF-8", 2, None),
    "ragged rows": (b"user_id,item_id\nu1,i1\nu2,i2,extra,more\n", "cannot be parsed as CSV", 2, None),
    "huge rating": (b"user_id,item_id,rating\nu1,i1,4\nu2,i2,1e400\n", "not a finite number", 2, "rating"),
    "huge timestamp": (b"user_id,item_id,timestamp\nu1,i1,5\nu2,i2,1e30\n", "unix seconds", 2, "timestamp"),
    "empty file": (b"", "file is empty", None, None),
    "header only": (b"user_id,item_id\n", "no data rows", None, None),
    "wrong type": (b"user_id,item_id,timestamp\nu1,i1,yesterday\n", "neither integer unix seconds", 1, "timestamp"),
    "missing column": (b"user,item_id\nu1,i1\n", "required column is missing", None, "user_id"),
    "missing id": (b"user_id,item_id\nu1,i1\n,i2\n", "missing value", 2, "user_id"),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_each_bad_csv_is_a_clean_error_naming_file_row_and_column(case, tmp_path, catalog_path, capsys):
    content, message, row, column = BAD_CSV[case]
    path = tmp_path / "interactions.csv"
    path.write_bytes(content)
    assert run_validate(path, catalog_path) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    error = captured.err.strip()
    assert error.startswith(f"error: {path}") and message in error and "Traceback" not in error
    if row is not None:
        assert f"row {row}" in error
    if column is not None:
        assert f"column {column!r}" in error
    assert files_in(tmp_path) == ["interactions.csv"]


@pytest.mark.parametrize(
    "frame, message, column",
    [
        (pd.DataFrame({"user": [1], "item": [2]}), "required column is missing", "user_id"),
        (pd.DataFrame({"user_id": [1], "item_id": ["i1"], "timestamp": [[1, 2]]}), "timestamp", "timestamp"),
        (pd.DataFrame({"user_id": [1], "item_id": ["i1"], "rating": ["lots"]}), "not a finite number", "rating"),
        (pd.DataFrame({"user_id": [1], "item_id": ["i1"], "rating": [True]}), "not a finite number", "rating"),
    ],
    ids=["wrong columns", "list column", "text rating", "bool rating"],
)
def test_parquet_with_the_wrong_schema_is_a_clean_error(frame, message, column, tmp_path, catalog_path, capsys):
    path = tmp_path / "interactions.parquet"
    frame.to_parquet(path)
    assert run_validate(path, catalog_path) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}") and message in error and f"column {column!r}" in error


def test_as_a_process_bad_input_is_one_line_and_status_1(tmp_path, catalog_path, crossfed_command):
    import subprocess

    path = tmp_path / "interactions.csv"
    path.write_bytes(b"user_id,item_id\nu1,i1\nu2,i2,extra,more\n")
    done = subprocess.run(
        [crossfed_command, "validate", "--interactions", str(path), "--catalog", str(catalog_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert done.stderr.startswith(f"error: {path}, row 2: cannot be parsed as CSV")


def test_not_parquet_at_all(tmp_path, catalog_path, capsys):
    path = tmp_path / "interactions.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    assert run_validate(path, catalog_path) == 1
    assert "cannot be read as Parquet" in capsys.readouterr().err


def test_a_good_file_passes_and_counts_what_it_drops(tmp_path, catalog_path, capsys):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,1\nu1,i1,1\nu1,zz,2\nu2,i2,3\n")
    users = tmp_path / "users.csv"
    users.write_text("user_id,age,job\nu1,30,\nu2,,x\n")
    assert (
        crossfed(
            ["validate", "--interactions", str(path), "--user-features", str(users), "--catalog", str(catalog_path)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "rows: 4 read, 1 exact duplicates dropped, 1 with unknown items dropped, 2 kept" in out
    assert "users: 2 with interactions" in out
    assert "unknown items: 1 (in 1 rows; e.g. 'zz')" in out
    assert "  users.age: 1" in out and "  users.job: 1" in out and "  items.genres: 1" in out


# ------------------------------------------------------------------------------------ fuzzing

CELL = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "i1",
            "i2",
            "i3",
            "u1",
            "1e400",
            "-1e309",
            "nan",
            "inf",
            "99999999999999999999999",
            "1970-01-01",
            "",
            '"',
            "\r",
            "\x00",
            ",",
            "|",
        ]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
HEADER = st.lists(
    st.sampled_from(["user_id", "item_id", "timestamp", "rating", "weight", "x", "", "user_id"]), min_size=0, max_size=5
)


@st.composite
def csv_bytes(draw) -> bytes:
    header = draw(HEADER)
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=6), max_size=6))
    text = "\n".join(",".join(r) for r in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(csv_bytes(), st.binary(max_size=200)))
def test_fuzzed_csv_never_escapes_as_a_traceback(content, tmp_path_factory, catalog_path):
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "interactions.csv"
    path.write_bytes(content)
    assert run_validate(path, catalog_path) in (0, 1)
    assert files_in(directory) == ["interactions.csv"]


PARQUET_COLUMN = st.one_of(
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=3, max_size=3),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.just([b"\x00", b"\xff", b""]),
    st.just(list(pd.to_datetime(["2020-01-01", "1677-09-22", "2262-04-11"]))),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    columns=st.dictionaries(
        st.sampled_from(["user_id", "item_id", "timestamp", "rating", "weight", "extra"]), PARQUET_COLUMN, max_size=5
    )
)
def test_fuzzed_parquet_never_escapes_as_a_traceback(columns, tmp_path_factory, catalog_path):
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "interactions.parquet"
    pd.DataFrame(columns or {"nothing": [1, 2, 3]}).to_parquet(path)
    assert run_validate(path, catalog_path) in (0, 1)
    assert files_in(directory) == ["interactions.parquet"]


# ------------------------------------------------------------------------------------- catalog


def test_catalog_round_trips_and_detects_any_edit(catalog_path, tmp_path):
    catalog = load_catalog(catalog_path, "v1")
    assert catalog.item_ids.tolist() == ["i1", "i2", "i3"] and catalog.version == "v1"
    assert catalog.codes(["i3", "nope", "i1"]).tolist() == [2, -1, 0]
    document = json.loads(catalog_path.read_text())
    document["items"][1]["genres"] = "a"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    with pytest.raises(CatalogError, match="checksum mismatch"):
        load_catalog(edited)
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(catalog_path.read_bytes()[:100])
    with pytest.raises(CatalogError, match="not a catalog file"):
        load_catalog(truncated)


def test_a_new_catalog_version_may_only_append(catalog_path, tmp_path):
    previous = load_catalog(catalog_path)
    grown = pd.concat([ITEMS, pd.DataFrame({"item_id": ["i4"], "genres": ["c"], "year": [2020.0]})])
    v2 = publish(grown, "v2", tmp_path / "v2.json", feature_kinds=previous.feature_kinds, previous=previous)
    assert v2.item_ids.tolist()[:3] == previous.item_ids.tolist()
    with pytest.raises(CatalogError, match=r"item 'i2' \(position 2\) is missing or moved"):
        publish(grown.iloc[[0, 2, 1, 3]], "v3", tmp_path / "v3.json", previous=previous)
    with pytest.raises(CatalogError, match="already published"):
        publish(grown, "v1", tmp_path / "again.json", previous=previous)
    assert not (tmp_path / "v3.json").exists() and not (tmp_path / "again.json").exists()


def test_catalog_cli_publishes_movielens_with_the_features_the_simulation_encodes(movielens_dir, tmp_path, capsys):
    from crossfed.shared.data.datasets import load_dataset

    out = tmp_path / "catalog.json"
    assert (
        crossfed(["catalog", "publish", "--movielens", str(movielens_dir), "--version", "ml-1", "--out", str(out)]) == 0
    )
    assert "catalog ml-1: 1682 items, sha256" in capsys.readouterr().out
    features = load_catalog(out, "ml-1").item_features()
    simulated = load_dataset("ml-100k", str(movielens_dir)).item_features
    assert features.keys() == simulated.keys()
    for name in features:  # a federation's global model fits a platform coded by the catalog
        np.testing.assert_array_equal(features[name].values, simulated[name].values)
    bad = tmp_path / "items.csv"
    bad.write_text("item_id,genres\ni1,a\ni1,b\n")
    assert (
        crossfed(["catalog", "publish", "--items", str(bad), "--version", "x", "--out", str(tmp_path / "x.json")]) == 1
    )
    assert "row 2, column 'item_id': item_id 'i1' appears more than once" in capsys.readouterr().err
