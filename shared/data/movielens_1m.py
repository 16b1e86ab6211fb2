"""MovieLens 1M: its raw ``*.dat`` files turned into the same contract :class:`Tables` as ML-100K.

Locating and downloading the files is shared with ML-100K (:func:`.movielens.resolve_data_dir`);
this module only knows the ``::``-separated formats and how their codes map onto the columns and
features ML-100K has, so a model or partition scheme works on either without change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .contract import Tables, validate
from .movielens import (
    ML1M,
    ML100K_FEATURE_KINDS,
    check_sha256,
    read_fields,
    read_ratings,
    require_pattern,
    resolve_data_dir,
    title_and_year,
    us_zip_region,
)

__all__ = ["ML1M_OCCUPATIONS", "load_movielens_1m"]

_SEPARATOR = "::"
#: Occupation codes of ``users.dat``, as its README names them.
ML1M_OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
#: Age codes of ``users.dat``: each is the lower end of its range ("1" = under 18, "56" = 56+).
_AGE_CODES = r"1|18|25|35|45|50|56"


def _read_movies(path: Path) -> pd.DataFrame:
    raw = read_fields(path, _SEPARATOR, ["item_id", "title", "genres"])
    require_pattern(raw, path, "item_id", r"\d+", "a movie id")
    require_pattern(raw, path, "genres", r"[^|]+(\|[^|]+)*", "'|'-separated genres")
    title, year = title_and_year(raw["title"])
    return pd.DataFrame(
        {
            "item_id": raw["item_id"],
            "title": title.where(title != "", np.nan),
            "year": pd.to_numeric(year, errors="coerce").astype(np.float64),
            "genres": raw["genres"],
        }
    )


def _read_users(path: Path) -> pd.DataFrame:
    raw = read_fields(path, _SEPARATOR, ["user_id", "gender", "age", "occupation", "zip"])
    require_pattern(raw, path, "user_id", r"\d+", "a user id")
    require_pattern(raw, path, "gender", r"[MF]", "a gender M or F")
    require_pattern(raw, path, "age", _AGE_CODES, f"an age code ({_AGE_CODES.replace('|', ', ')})")
    require_pattern(raw, path, "occupation", r"1?\d|20", "an occupation code 0-20")
    occupation = np.asarray(ML1M_OCCUPATIONS)[raw["occupation"].astype(int).to_numpy()]
    return pd.DataFrame(
        {
            "user_id": raw["user_id"],
            "age": raw["age"].astype(np.float64),
            "gender": raw["gender"],
            "occupation": occupation,
            "zip": raw["zip"],
            "region": us_zip_region(raw["zip"]),
        }
    )


def load_movielens_1m(data_dir: str | Path | None = None) -> Tables:
    """Load MovieLens 1M as contract :class:`Tables` named ``"movielens-1m"``.

    Columns and feature kinds are ML-100K's (:func:`.movielens.load_movielens_100k`): items
    ``title`` (without its year), ``year`` (the title's), ``genres`` (multi); users ``age``
    (numeric: the range's lower end, 1 for under 18), ``gender``, ``occupation`` (the README's
    name for the code), ``zip``, ``region`` (a US ZIP's first digit, "other" otherwise).

    The catalog holds the 3,706 movies somebody rated: ``movies.dat`` also lists 177 movies
    without a rating, which published ML-1M results leave out; keeping them would only add
    items no split can ever test.

    Raises:
        DatasetUnavailableError: see :func:`.movielens.resolve_data_dir`.
        DataValidationError: a malformed raw row (names the ``*.dat`` file, line and field), or
            anything the contract rejects.
    """
    directory = resolve_data_dir(data_dir, "ml-1m")
    check_sha256(ML1M, directory)
    ratings = read_ratings(directory / "ratings.dat", _SEPARATOR)
    movies = _read_movies(directory / "movies.dat")
    rated = movies[movies["item_id"].isin(pd.unique(ratings["item_id"]))].reset_index(drop=True)
    return validate(
        ratings,
        rated,
        _read_users(directory / "users.dat"),
        sources={
            "interactions": str(directory / "ratings.dat"),
            "items": str(directory / "movies.dat"),
            "users": str(directory / "users.dat"),
        },
        feature_kinds=ML100K_FEATURE_KINDS,
        name="movielens-1m",
    )
