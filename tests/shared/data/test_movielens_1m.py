"""Tests for MovieLens 1M: finding the files beside ML-100K, parsing, and a short run.

Synthetic miniature ``*.dat`` files (written to ``tmp_path``) test the parser and the search
for a local copy without the data. Tests against the real files use the ``movielens_1m_dir``
fixture (``CROSSFED_DATA_DIR``); they are skipped otherwise. No test touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from crossfed.shared.config import RunConfig
from crossfed.shared.data import (
    ML1M_URL,
    DatasetUnavailableError,
    DataValidationError,
    EncodedDataset,
    Tables,
    encode,
    load_movielens_1m,
    movielens,
    resolve_data_dir,
)
from crossfed.shared.data.datasets import BUILT_IN_DATASETS, load_dataset
from crossfed.shared.data.movielens_1m import ML1M_OCCUPATIONS
from crossfed.shared.data.partition import PartitionSpec, assign_platforms

MOVIE_ROWS = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Misérables, Les (1995)::Drama|Musical",
    "3::Nobody Rated Me (1990)::Drama",
]
USER_ROWS = ["1::F::1::10::48067", "2::M::56::16::98107-2117", "3::M::25::0::T8H1N"]
RATING_ROWS = ["1::1::5::978300760", "2::2::3::978302109", "3::1::4::978301968", "1::2::1::978301969"]


def write_mini(directory: Path, *, movies=MOVIE_ROWS, users=USER_ROWS, ratings=RATING_ROWS) -> Path:
    """A tiny, synthetic ml-1m in the raw formats (``::``-separated, Latin-1, no headers)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in (("movies.dat", movies), ("users.dat", users), ("ratings.dat", ratings)):
        (directory / name).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return directory


def write_mini_100k(directory: Path) -> Path:
    """Just enough of an ml-100k folder to be recognised as one."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("u.data", "u.item", "u.user", "u.genre"):
        (directory / name).write_text("")
    return directory


# ------------------------------------------------------------------------- finding the files


def test_ml1m_is_a_built_in() -> None:
    assert "ml-1m" in BUILT_IN_DATASETS


def test_offline_without_a_copy_says_how_to_provide_one(isolated_env: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        resolve_data_dir(None, "ml-1m")
    message = str(info.value)
    assert "network is unreachable" in message and ML1M_URL in message
    assert "--data-dir DIR" in message and "ratings.dat" in message
    assert list(isolated_env.iterdir()) == []


def test_download_goes_to_the_same_cache_verified(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    source = write_mini(tmp_path / "zip-src" / "ml-1m")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(source.iterdir()):
            archive.write(path, f"ml-1m/{path.name}")
    payload = buffer.getvalue()
    calls: list[str] = []
    monkeypatch.setattr("urllib.request.urlopen", lambda url, *a, **k: calls.append(url) or io.BytesIO(payload))
    with pytest.raises(DatasetUnavailableError, match="md5"):
        resolve_data_dir(None, "ml-1m")
    assert list(isolated_env.iterdir()) == []
    monkeypatch.setattr(movielens, "ML1M", dataclasses.replace(movielens.ML1M, md5=hashlib.md5(payload).hexdigest()))
    directory = resolve_data_dir(None, "ml-1m")
    assert directory == isolated_env / "ml-1m"
    assert sorted(p.name for p in isolated_env.iterdir()) == ["ml-1m"]
    assert calls == [ML1M_URL, ML1M_URL]
    assert load_movielens_1m(None).report.rows_read == len(RATING_ROWS)


def test_an_ml100k_folder_is_not_taken_for_ml1m(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSFED_DATA_DIR", str(write_mini_100k(tmp_path / "ml-100k")))
    with pytest.raises(DatasetUnavailableError, match=r"ratings\.dat") as info:
        resolve_data_dir(None, "ml-1m")
    assert "CROSSFED_DATA_DIR" in str(info.value)


def test_the_sibling_of_a_named_ml100k_folder_is_used(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSFED_DATA_DIR", str(write_mini_100k(tmp_path / "ml-100k")))
    sibling = write_mini(tmp_path / "ml-1m")
    assert resolve_data_dir(None, "ml-1m") == sibling
    assert resolve_data_dir(None, "ml-100k") == tmp_path / "ml-100k"


def test_a_folder_holding_both_serves_both(isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSFED_DATA_DIR", str(tmp_path / "datasets"))
    small = write_mini_100k(tmp_path / "datasets" / "ml-100k")
    large = write_mini(tmp_path / "datasets" / "ml-1m")
    assert resolve_data_dir(None, "ml-100k") == small
    assert resolve_data_dir(None, "ml-1m") == large


def test_data_dir_names_the_folder_holding_ratings(isolated_env: Path, tmp_path: Path) -> None:
    copy = write_mini(tmp_path / "my-copy")
    assert resolve_data_dir(copy, "ml-1m") == copy
    with pytest.raises(DatasetUnavailableError, match="--data-dir"):
        resolve_data_dir(tmp_path, "ml-1m")


# ------------------------------------------------------------------ parsing (synthetic files)


def test_mini_dataset_maps_onto_the_ml100k_columns(tmp_path: Path) -> None:
    tables = load_movielens_1m(write_mini(tmp_path / "ml"))
    items = tables.items.set_index("item_id")
    assert sorted(items.index) == ["1", "2"]  # the unrated movie 3 is not in the catalog
    assert items.loc["2", "title"] == "Misérables, Les" and items.loc["2", "year"] == 1995
    assert items.loc["1", "genres"] == "Animation|Children's|Comedy"
    users = tables.users.set_index("user_id")
    assert users["age"].tolist() == [1.0, 56.0, 25.0]
    assert users["occupation"].tolist() == ["K-12 student", "self-employed", "other"]
    assert users["region"].tolist() == ["4", "9", "other"]  # ZIP+4 is a US code
    assert tables.feature_kinds == {
        "items": {"title": "text", "year": "numeric", "genres": "multi"},
        "users": {
            "age": "numeric",
            "gender": "categorical",
            "occupation": "categorical",
            "zip": "categorical",
            "region": "categorical",
        },
    }
    assert tables.interactions["weight"].tolist() == [5, 3, 4, 1]


@pytest.mark.parametrize(
    ("name", "rows", "row", "column", "fragment"),
    [
        ("movies.dat", [MOVIE_ROWS[0], "2::X (1995)"], 2, "genres", "found 2"),
        ("users.dat", [USER_ROWS[0], "2::M::30::16::98107"], 2, "age", "'30'"),
        ("users.dat", [USER_ROWS[0], "2::M::56::21::98107"], 2, "occupation", "'21'"),
        ("ratings.dat", [RATING_ROWS[0], "2::2::6::978302109"], 2, "rating", "'6'"),
        ("ratings.dat", [RATING_ROWS[0], "7::1::3::978302109"], 2, "user_id", "not in the user table"),
    ],
)
def test_malformed_raw_rows_are_named(tmp_path: Path, name, rows, row, column, fragment) -> None:
    key = name.removesuffix(".dat")
    with pytest.raises(DataValidationError) as info:
        load_movielens_1m(write_mini(tmp_path / "ml", **{key: rows}))
    err = info.value
    assert (Path(err.file).name, err.row, err.column) == (name, row, column)
    assert fragment in str(err)


def test_a_rating_of_a_movie_missing_from_movies_dat_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not in the item catalog") as info:
        load_movielens_1m(write_mini(tmp_path / "ml", ratings=[*RATING_ROWS, "1::9::5::978300761"]))
    assert (Path(info.value.file).name, info.value.row) == ("ratings.dat", 5)


# --------------------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def ml1m(movielens_1m_dir: Path) -> Tables:
    return load_movielens_1m(movielens_1m_dir)


@pytest.fixture(scope="module")
def ml1m_encoded(ml1m: Tables) -> EncodedDataset:
    return encode(ml1m)


def test_real_counts(ml1m: Tables, ml1m_encoded: EncodedDataset) -> None:
    report = ml1m.report
    assert (report.rows_read, report.users, report.items, report.items_interacted) == (1_000_209, 6040, 3706, 3706)
    assert (ml1m_encoded.num_users, ml1m_encoded.num_items) == (6040, 3706)
    counts = ml1m.interactions["weight"].value_counts().sort_index()
    assert counts.tolist() == [56_174, 107_557, 261_197, 348_971, 226_310]  # the README's histogram


def test_real_files_are_the_official_ones(movielens_1m_dir: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="crossfed.shared.data.movielens"):
        movielens.check_sha256(movielens.ML1M, movielens_1m_dir)
    assert caplog.text == ""


def test_real_features(ml1m: Tables, ml1m_encoded: EncodedDataset) -> None:
    items = ml1m.items.set_index("item_id")
    assert (items.loc["1", "title"], items.loc["1", "year"]) == ("Toy Story", 1995)
    assert items.loc["73", "title"] == "Misérables, Les"  # Latin-1 decoded
    assert set(ml1m.users["occupation"]) == set(ML1M_OCCUPATIONS)
    assert set(ml1m_encoded.item_features) == {"title", "year", "genres"}
    assert set(ml1m_encoded.user_features) == {"age", "gender", "occupation", "zip", "region"}
    assert set(ml1m.users["region"]) == {*"0123456789", "other"}


def test_the_simulation_hides_zip_codes_from_the_model(movielens_1m_dir: Path) -> None:
    dataset = load_dataset("ml-1m", str(movielens_1m_dir))
    assert set(dataset.user_features) == {"age", "gender", "occupation", "region"}
    assert "zip" in dataset.user_attributes.columns


def test_region_partition_gives_five_natural_platforms(movielens_1m_dir: Path) -> None:
    dataset = load_dataset("ml-1m", str(movielens_1m_dir))
    platform = assign_platforms(dataset, PartitionSpec(scheme="natural", num_platforms=5, attribute="region"))
    per_platform = np.bincount(platform, minlength=5)
    assert len(per_platform) == 5 and per_platform.min() > 0 and per_platform.sum() == 1_000_209
    users_on = {p: set(np.unique(dataset.users[platform == p])) for p in range(5)}
    assert all(not (users_on[a] & users_on[b]) for a in range(5) for b in range(a + 1, 5))  # a user is on one


@pytest.mark.slow  # about 20 s: parsing a million ratings, then one epoch
def test_a_short_centralized_run_on_ml1m_completes(movielens_1m_dir: Path, tmp_path: Path) -> None:
    from crossfed.simulations.runner import run_mode

    config = RunConfig().replace(
        dataset="ml-1m",
        data_dir=str(movielens_1m_dir),
        max_users=200,
        num_server_rounds=1,
        embedding_dim=8,
        mlp_layers="16,8",
        run_dir=str(tmp_path / "run"),
    )
    summary = run_mode("centralized", config)
    assert summary["dataset"] == "ml-1m"
    assert summary["data"]["users"] == 200 and summary["data"]["items"] == 3706
    assert 0 < summary["metrics"]["sampled"]["hr@10"] <= 1
