"""Tests for MovieLens 100K: locating/downloading (offline, faked) and parsing.

Synthetic miniature ``u.*`` files (written to ``tmp_path``) test the parser without the data.
Tests against the real files need ``CROSSFED_DATA_DIR`` (e.g. ``/work/shared/datasets/ml-100k``);
they are skipped otherwise. No test touches the network: ``urlopen`` is always faked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfed.shared.data import (
    ML100K_URL,
    DatasetChecksumError,
    DatasetUnavailableError,
    DataValidationError,
    EncodedDataset,
    Tables,
    encode,
    load_movielens_100k,
    load_tables,
    movielens,
    resolve_data_dir,
)

REAL_DIR = os.environ.get("CROSSFED_DATA_DIR")
needs_real_data = pytest.mark.skipif(
    not REAL_DIR,
    reason="set CROSSFED_DATA_DIR to an unzipped ml-100k folder (or one holding ml-100k/) to test the real data",
)

GENRES = ["unknown", "Action", "Comedy"]
ITEM_ROWS = [
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1",
    "2|Mis\xe9rables, Les (1995)|4-Feb-1996||http://x|0|1|1",
    "3|unknown||||1|0|0",
    "4|Land Before Time III (1995) (V)|||http://x|0|0|0",
]
USER_ROWS = ["1|24|M|technician|85711", "2|53|F|other|T8H1N", "3|30|M|writer|02138"]
DATA_ROWS = ["1\t1\t5\t881250949", "2\t2\t3\t881250950", "3\t4\t1\t881250951", "1\t2\t4\t881250952"]


def write_mini(directory: Path, *, items=ITEM_ROWS, users=USER_ROWS, data=DATA_ROWS) -> Path:
    """A tiny, synthetic ml-100k in the raw formats (Latin-1, no headers)."""
    directory.mkdir(parents=True, exist_ok=True)
    genre_text = "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n"
    for name, lines in (("u.item", items), ("u.user", users), ("u.data", data)):
        (directory / name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (directory / "u.genre").write_bytes(genre_text.encode("latin-1"))
    return directory


def serve(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> list[str]:
    """Make urlopen return ``payload``; returns the list of requested URLs."""
    calls: list[str] = []

    def fake_urlopen(url, *args, **kwargs):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    return calls


def fake_zip(tmp_path: Path) -> bytes:
    source = write_mini(tmp_path / "zip-src" / "ml-100k")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(source.iterdir()):
            archive.write(path, f"ml-100k/{path.name}")
    return buffer.getvalue()


# ------------------------------------------------------------------------- resolve_data_dir


def test_offline_error_says_how_to_provide_a_copy(isolated_env: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        resolve_data_dir(None)
    message = str(info.value)
    assert "network is unreachable" in message
    assert "--data-dir DIR" in message and "CROSSFED_DATA_DIR=DIR" in message
    assert ML100K_URL in message
    assert not (isolated_env / "ml-100k").exists()
    assert list(isolated_env.iterdir()) == []  # the partial download was removed


def test_md5_mismatch_keeps_nothing(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    calls = serve(monkeypatch, fake_zip(tmp_path))
    with pytest.raises(DatasetChecksumError, match="md5") as info:
        resolve_data_dir(None)
    assert calls == [ML100K_URL]
    assert isinstance(info.value, DatasetUnavailableError)
    assert list(isolated_env.iterdir()) == []


def test_download_verifies_and_extracts_once(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    payload = fake_zip(tmp_path)
    monkeypatch.setattr(
        movielens, "ML100K", dataclasses.replace(movielens.ML100K, md5=hashlib.md5(payload).hexdigest())
    )
    calls = serve(monkeypatch, payload)
    directory = resolve_data_dir(None)
    assert directory == isolated_env / "ml-100k"
    assert sorted(p.name for p in isolated_env.iterdir()) == ["ml-100k"]  # no temp leftovers
    assert (directory / "u.item").read_bytes() == (tmp_path / "zip-src/ml-100k/u.item").read_bytes()
    assert resolve_data_dir(None) == directory
    assert calls == [ML100K_URL]  # the second call used the cache
    assert load_movielens_100k(None).report.rows_read == len(DATA_ROWS)


def test_incomplete_cache_is_reported_not_deleted(isolated_env: Path) -> None:
    (isolated_env / "ml-100k").mkdir(parents=True)
    (isolated_env / "ml-100k" / "u.data").write_text("keep me")
    with pytest.raises(DatasetUnavailableError, match="delete it"):
        resolve_data_dir(None)
    assert (isolated_env / "ml-100k" / "u.data").read_text() == "keep me"


def test_explicit_dir_wins_over_env(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    explicit = write_mini(tmp_path / "explicit")
    from_env = write_mini(tmp_path / "from-env")
    monkeypatch.setenv("CROSSFED_DATA_DIR", str(from_env))
    assert resolve_data_dir(explicit) == explicit
    assert resolve_data_dir(str(explicit)) == explicit
    assert resolve_data_dir(None) == from_env


@pytest.mark.parametrize("via_env", [False, True])
def test_named_dir_without_files(isolated_env: Path, tmp_path: Path, monkeypatch, via_env: bool) -> None:
    if via_env:
        monkeypatch.setenv("CROSSFED_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailableError) as info:
        resolve_data_dir(None if via_env else tmp_path)
    assert "u.data" in str(info.value)
    assert ("CROSSFED_DATA_DIR" if via_env else "--data-dir") in str(info.value)


# ------------------------------------------------------------------ parsing (synthetic files)


def test_mini_dataset_parses(tmp_path: Path) -> None:
    tables = load_movielens_100k(write_mini(tmp_path / "ml"))
    items = tables.items.set_index("item_id")
    assert items.loc["2", "title"] == "Misérables, Les"
    assert items.loc["1", "genres"] == "Comedy"
    assert items.loc["2", "genres"] == "Action|Comedy"
    assert items.loc["3", "genres"] == "unknown"
    assert pd.isna(items.loc["4", "genres"])
    assert items.loc["4", "title"] == "Land Before Time III (V)"
    assert items.loc["2", "year"] == 1996  # release date wins ("4-Feb-1996", one-digit day)
    assert items.loc["4", "year"] == 1995  # no release date: the title's year
    assert pd.isna(items.loc["3", "year"]) and items.loc["3", "title"] == "unknown"
    users = tables.users.set_index("user_id")
    assert users["region"].tolist() == ["8", "other", "0"]
    assert users.loc["3", "zip"] == "02138"  # leading zero kept
    assert tables.interactions["weight"].tolist() == [5, 3, 1, 4]
    assert tables.report.missing_values["items"] == {"title": 0, "year": 1, "genres": 1}


@pytest.mark.parametrize(
    ("name", "rows", "row", "column", "fragment"),
    [
        ("u.item", [*ITEM_ROWS[:2], "3|unknown||||1|0"], 3, "Comedy", "found 7"),
        ("u.item", [ITEM_ROWS[0], "2|X (1995)|01-Jan-1995||u|0|1|1|1"], 2, "Comedy", "extra"),
        ("u.item", [ITEM_ROWS[0], "2|X (1995)|01-Jan-1995||u|0|2|1"], 2, "Action", "0/1 genre"),
        ("u.item", [*ITEM_ROWS[:1], "2|X (1995)|1995-01-01||u|0|1|1"], 2, "release_date", "date"),
        ("u.user", [USER_ROWS[0], "2|old|F|other|T8H1N"], 2, "age", "'old'"),
        ("u.user", [USER_ROWS[0], "2|53|F"], 2, "occupation", "found 3"),
        ("u.data", [DATA_ROWS[0], "2\t2\t3"], 2, "timestamp", "found 3"),
        ("u.data", [*DATA_ROWS[:2], "2\t2\t9\t881250950"], 3, "rating", "'9'"),
        ("u.data", [DATA_ROWS[0], "2\t99\t3\t881250950"], 2, "item_id", "not in the item catalog"),
        ("u.data", [DATA_ROWS[0], "7\t1\t3\t881250950"], 2, "user_id", "not in the user table"),
    ],
)
def test_malformed_raw_rows(tmp_path: Path, name, rows, row, column, fragment) -> None:
    key = {"u.item": "items", "u.user": "users", "u.data": "data"}[name]
    directory = write_mini(tmp_path / "ml", **{key: rows})
    with pytest.raises(DataValidationError) as info:
        load_movielens_100k(directory)
    err = info.value
    assert (Path(err.file).name, err.row, err.column) == (name, row, column)
    assert fragment in str(err)


def test_altered_copy_is_warned_about(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="crossfed.shared.data.movielens"):
        load_movielens_100k(write_mini(tmp_path / "ml"))
    assert "altered" in caplog.text


# --------------------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def ml100k() -> Tables:
    if not REAL_DIR:
        pytest.skip("CROSSFED_DATA_DIR is not set")
    return load_movielens_100k(None)


@pytest.fixture(scope="module")
def ml100k_encoded(ml100k: Tables) -> EncodedDataset:
    return encode(ml100k)


@needs_real_data
def test_real_counts(ml100k: Tables, ml100k_encoded: EncodedDataset) -> None:
    report = ml100k.report
    assert (report.rows_read, report.duplicates_dropped) == (100_000, 0)
    assert (report.users, report.items, report.items_interacted) == (943, 1682, 1682)
    assert len(ml100k.interactions) == 100_000 and len(ml100k.users) == 943
    assert (ml100k_encoded.num_users, ml100k_encoded.num_items) == (943, 1682)
    assert len(ml100k_encoded.users) == 100_000
    counts = ml100k.interactions["weight"].value_counts().sort_index()
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]  # published rating histogram
    first = ml100k.interactions.iloc[0]
    assert (first["user_id"], first["item_id"], first["timestamp"]) == ("196", "242", 881250949)


@needs_real_data
def test_real_files_are_the_official_ones(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="crossfed.shared.data.movielens"):
        movielens.check_sha256(movielens.ML100K, resolve_data_dir(None))
    assert caplog.text == ""


@needs_real_data
def test_real_items(ml100k: Tables) -> None:
    items = ml100k.items.set_index("item_id")
    assert ml100k.items["item_id"].tolist()[:3] == ["1", "2", "3"]
    assert items.loc["1", "title"] == "Toy Story"
    assert items.loc["1", "year"] == 1995
    assert items.loc["1", "genres"] == "Animation|Children's|Comedy"
    assert items.loc["543", "title"] == "Misérables, Les"  # Latin-1 decoded
    assert ml100k.items["title"].str.contains("Misérables").sum() == 1
    assert items.loc["1633", "title"] == "Á köldum klaka (Cold Fever)"
    assert items.loc["1252", "year"] == 1997  # release date "27-Jun-1997" (film from 1963)
    assert items.loc["1128", "year"] == 1996
    assert items.loc["267", "title"] == "unknown" and pd.isna(items.loc["267", "year"])
    assert items.loc["267", "genres"] == "unknown"
    assert ml100k.items["year"].between(1922, 1998).sum() == 1681
    assert not ml100k.items["title"].str.contains(r"\(\d{4}\)").any()
    assert ml100k.feature_kinds["items"] == {"title": "text", "year": "numeric", "genres": "multi"}


@needs_real_data
def test_real_users(ml100k: Tables) -> None:
    users = ml100k.users.set_index("user_id")
    assert users.loc["1"].tolist() == [24.0, "M", "technician", "85711", "8"]
    non_us = ~users["zip"].str.fullmatch(r"\d{5}")
    assert set(users.loc[non_us, "region"]) == {"other"}
    assert non_us.sum() == 18
    assert users.loc[users["zip"] == "T8H1N", "region"].tolist() == ["other"] * 2
    assert (users.loc[~non_us, "region"] == users.loc[~non_us, "zip"].str[0]).all()
    assert users["gender"].value_counts().to_dict() == {"M": 670, "F": 273}


@needs_real_data
def test_real_encoded_features(ml100k_encoded: EncodedDataset) -> None:
    genres = ml100k_encoded.item_features["genres"]
    assert genres.values.shape == (1682, 19) and "unknown" in genres.vocabulary
    title = ml100k_encoded.item_features["title"]
    assert title.values.shape == (1682, 256)
    assert list(title.vocabulary) == sorted(title.vocabulary) and "the" in title.vocabulary
    assert (title.values.sum(axis=1) > 0).mean() > 0.5  # most titles use a frequent word
    occupation = ml100k_encoded.user_features["occupation"]
    assert occupation.cardinality == 22  # 21 occupations + missing
    assert ml100k_encoded.user_attributes["region"].notna().all()


@needs_real_data
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_through_contract_files(
    ml100k: Tables, ml100k_encoded: EncodedDataset, tmp_path: Path, suffix: str
) -> None:
    """An operator exporting MovieLens in the contract's columns gets the same dataset back."""
    paths = {}
    frames = {"interactions": ml100k.interactions, "items": ml100k.items, "users": ml100k.users}
    for key, frame in frames.items():
        paths[key] = tmp_path / f"{key}{suffix}"
        if suffix == ".csv":
            frame.to_csv(paths[key], index=False)
        else:
            frame.to_parquet(paths[key], index=False)
    reloaded = load_tables(paths["interactions"], paths["items"], paths["users"], name=ml100k.name)
    assert reloaded.feature_kinds == ml100k.feature_kinds  # inferred from the files alone
    assert reloaded.report == ml100k.report
    assert_same_dataset(encode(reloaded), ml100k_encoded)


def assert_same_dataset(a: EncodedDataset, b: EncodedDataset) -> None:
    assert a.name == b.name
    for field in ("user_ids", "item_ids", "users", "items", "timestamps", "weights"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, field
        np.testing.assert_array_equal(x, y, err_msg=field)
    for features in ("user_features", "item_features"):
        fa, fb = getattr(a, features), getattr(b, features)
        assert fa.keys() == fb.keys()
        for column in fa:
            assert (fa[column].kind, fa[column].vocabulary, fa[column].cardinality) == (
                fb[column].kind,
                fb[column].vocabulary,
                fb[column].cardinality,
            ), column
            np.testing.assert_array_equal(fa[column].values, fb[column].values, err_msg=column)
    pd.testing.assert_frame_equal(a.user_attributes, b.user_attributes)
