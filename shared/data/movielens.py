"""MovieLens: locate (or fetch) a built-in's raw files; turn ML-100K's into contract :class:`Tables`.

Why this goes through :func:`~crossfed.shared.data.contract.validate`: MovieLens is our stand-in for an
operator's export, so it must take exactly the path their data takes. This module knows where
the GroupLens archives live and the raw ``u.*`` formats (ML-1M's ``*.dat`` are parsed by
:mod:`.movielens_1m` with the helpers here); every check that applies to all data lives in the contract.

The data are never stored in the repository (the licence forbids redistribution): point
``--data-dir DIR`` / ``CROSSFED_DATA_DIR=DIR`` at an unzipped copy, or let
:func:`resolve_data_dir` download the official archive into a user cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossfed.shared.errors import CrossfedError

from .contract import DataValidationError, Tables, validate

logger = logging.getLogger(__name__)

__all__ = [
    "ML1M_MD5",
    "ML1M_URL",
    "ML100K_MD5",
    "ML100K_URL",
    "DatasetChecksumError",
    "DatasetUnavailableError",
    "load_movielens_100k",
    "resolve_data_dir",
]

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"
ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
_DOWNLOAD_TIMEOUT_S = 60
_ITEM_FIXED_FIELDS = ("item_id", "title", "release_date", "video_release_date", "imdb_url")


@dataclass(frozen=True)
class Archive:
    """One GroupLens archive: where it is published, and the files that identify an unzipped copy.

    ``name`` is both the archive's top folder and the cache folder. ``sha256`` pins the official
    files: many public copies are subtly altered (stripped accents, changed values); a mismatch is
    logged as a warning rather than refused, since results would merely be non-comparable.
    """

    name: str
    label: str
    url: str
    md5: str
    sha256: Mapping[str, str]

    @property
    def required_files(self) -> tuple[str, ...]:
        return tuple(self.sha256)


ML100K = Archive(
    name="ml-100k",
    label="MovieLens 100K",
    url=ML100K_URL,
    md5=ML100K_MD5,
    sha256={
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    },
)
ML1M = Archive(
    name="ml-1m",
    label="MovieLens 1M",
    url=ML1M_URL,
    md5=ML1M_MD5,
    sha256={
        "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
        "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
        "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
    },
)
BUILT_IN_ARCHIVES = ("ml-100k", "ml-1m")


def archive_of(dataset: str) -> Archive:
    """The archive of built-in ``dataset`` (looked up at call time, so a test can serve a fake one)."""
    return {"ml-100k": ML100K, "ml-1m": ML1M}[dataset]


#: Feature kinds for the MovieLens tables (given, not inferred: e.g. zip looks categorical only
#: because a few Canadian codes are not numbers).
ML100K_FEATURE_KINDS = {
    "items": {"title": "text", "year": "numeric", "genres": "multi"},
    "users": {
        "age": "numeric",
        "gender": "categorical",
        "occupation": "categorical",
        "zip": "categorical",
        "region": "categorical",
    },
}


class DatasetUnavailableError(CrossfedError, RuntimeError):
    """The dataset is neither available locally nor downloadable; the message says what to do."""


class DatasetChecksumError(DatasetUnavailableError):
    """The downloaded archive does not have the published md5; nothing was kept."""


# --------------------------------------------------------------------------------------------
# Locating the files


def _how_to_provide(archive: Archive, missing_from: str) -> str:
    return (
        f"{missing_from}\n"
        f"To use a local copy, unzip {archive.name}.zip and name the folder that holds "
        f"{', '.join(archive.required_files)} with `--data-dir DIR`, or set the environment variable "
        f"`CROSSFED_DATA_DIR=DIR` to that folder or to one holding an `{archive.name}/` subfolder. "
        f"The archive is published by GroupLens at {archive.url} (md5 {archive.md5})."
    )


def _missing_files(archive: Archive, directory: Path) -> list[str]:
    return [name for name in archive.required_files if not (directory / name).is_file()]


def _cache_root() -> Path:
    root = os.environ.get("CROSSFED_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "crossfed"


def _env_candidates(archive: Archive, named: Path) -> list[Path]:
    """Where ``$CROSSFED_DATA_DIR`` may hold ``archive``: the folder itself, its subfolder named
    after the archive, or - when it names another built-in's folder - that folder's sibling.

    Why several: CI points the variable at one dataset's folder, while a researcher keeping
    every dataset in one place points it at their common parent. Each place counts only if it
    holds the archive's own files, so one dataset's folder is never taken for another's.
    """
    candidates = [named, named / archive.name]
    if named.name in BUILT_IN_ARCHIVES and named.name != archive.name:
        candidates.append(named.parent / archive.name)
    return candidates


def resolve_data_dir(data_dir: str | Path | None = None, dataset: str = "ml-100k") -> Path:
    """Return the directory holding built-in ``dataset``'s raw files, downloading them if needed.

    Order: the explicit ``data_dir`` (the folder holding the files); else ``$CROSSFED_DATA_DIR``
    (see :func:`_env_candidates`); else the cache (``$CROSSFED_CACHE`` or ``~/.cache/crossfed``)
    ``/<dataset>``, which is filled from the archive's GroupLens URL on first use. A named
    directory is never downloaded into: if it lacks files that is the caller's mistake and is
    reported as such.

    Raises:
        DatasetUnavailableError: named directory incomplete, or download failed (the message
            says how to name a local copy and where to get the archive).
        DatasetChecksumError: the downloaded archive's md5 is wrong (nothing is kept).
    """
    archive = archive_of(dataset)
    if data_dir:
        directory = Path(data_dir).expanduser()
        missing = _missing_files(archive, directory)
        if missing:
            raise DatasetUnavailableError(
                _how_to_provide(archive, f"{directory} (from --data-dir) lacks {', '.join(missing)}.")
            )
        return directory
    from_env = os.environ.get("CROSSFED_DATA_DIR") or None  # "" means "not given"
    if from_env is not None:
        candidates = _env_candidates(archive, Path(from_env).expanduser())
        for directory in candidates:
            if not _missing_files(archive, directory):
                return directory
        raise DatasetUnavailableError(
            _how_to_provide(
                archive,
                f"{candidates[0]} (from CROSSFED_DATA_DIR) lacks {', '.join(_missing_files(archive, candidates[0]))}"
                f" (also looked in {' and '.join(str(c) for c in candidates[1:])}).",
            )
        )
    target = _cache_root() / archive.name
    if target.exists():
        missing = _missing_files(archive, target)
        if not missing:
            return target
        raise DatasetUnavailableError(
            _how_to_provide(
                archive,
                f"The cache directory {target} exists but lacks {', '.join(missing)}; delete it to download again.",
            )
        )
    _download_and_extract(archive, target)
    return target


def _download_and_extract(archive: Archive, target: Path) -> None:
    """Download the zip to a temp file, check its md5, extract to a temp dir, rename into place.

    Why the dance: a half-downloaded or half-extracted cache would look valid next time; the
    final ``rename`` is atomic, so the cache is either complete or absent. Concurrent callers
    (e.g. several simulated clients) may race; the loser discards its copy.
    """
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    url, md5 = archive.url, archive.md5
    logger.info("downloading %s from %s into %s", archive.label, url, root)
    fd, zip_name = tempfile.mkstemp(prefix=f".{archive.name}-", suffix=".zip", dir=root)
    zip_path = Path(zip_name)
    try:
        digest = hashlib.md5()
        try:
            with (
                os.fdopen(fd, "wb") as sink,
                urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response,
            ):
                while chunk := response.read(1 << 16):
                    digest.update(chunk)
                    sink.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DatasetUnavailableError(
                _how_to_provide(archive, f"Could not download {archive.label} from {url}: {exc}.")
            ) from exc
        if digest.hexdigest() != md5:
            raise DatasetChecksumError(
                _how_to_provide(
                    archive,
                    f"The archive downloaded from {url} has md5 {digest.hexdigest()}, "
                    f"not the published {md5}; it was discarded.",
                )
            )
        staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}-", dir=root))
        try:
            with zipfile.ZipFile(zip_path) as zipped:
                zipped.extractall(staging)  # extractall refuses absolute and '..' member paths
            extracted = staging / archive.name
            missing = _missing_files(archive, extracted)
            if missing:
                raise DatasetUnavailableError(
                    _how_to_provide(archive, f"The archive from {url} lacks {archive.name}/{missing[0]}.")
                )
            try:
                extracted.rename(target)
            except OSError:
                if _missing_files(archive, target):
                    raise
                logger.info("another process filled %s first; using its copy", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        zip_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Parsing the raw files


def read_fields(path: Path, sep: str, fields: list[str]) -> pd.DataFrame:
    """Split a header-less, separator-delimited file into str columns, checking field counts.

    Why not ``pd.read_csv``: it silently pads short rows with NaN; here a wrong field count is
    an error naming the line. Latin-1 is the files' encoding (u.item has accented titles) and
    decodes any byte, so a wrong copy shows up in the checksum warning, not as a crash.
    """
    text = path.read_bytes().decode("latin-1")
    lines = pd.Series(text.split("\n"), dtype="str").str.removesuffix("\r")
    filled = np.flatnonzero((lines != "").to_numpy())
    lines = lines.iloc[: (filled[-1] + 1) if len(filled) else 0]  # trailing blank lines
    if lines.empty:
        raise DataValidationError(str(path), "file is empty")
    counts = (lines.str.count(re.escape(sep)) + 1).to_numpy()
    wrong = np.flatnonzero(counts != len(fields))
    if len(wrong):
        i, found = int(wrong[0]), int(counts[wrong[0]])
        short = found < len(fields)
        column = fields[found] if short else fields[-1]
        raise DataValidationError(
            str(path),
            f"expected {len(fields)} {sep!r}-separated fields, found {found} "
            + (f"(field {column!r} onwards is absent)" if short else f"(extra fields after {column!r})"),
            row=i + 1,
            column=column,
        )
    parts = lines.str.split(sep, expand=True, regex=False)
    parts.columns = fields
    return parts.reset_index(drop=True)


def require_pattern(frame: pd.DataFrame, path: Path, column: str, pattern: str, what: str) -> None:
    bad = ~frame[column].str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(str(path), f"value {frame[column][i]!r} is not {what}", row=i + 1, column=column)


def title_and_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Each title without its year, and the year (str, NaN when absent) the title closes with.

    The film's year closes the title, "Toy Story (1995)", sometimes followed by "(V)".
    """
    title = titles.str.strip()
    year = title.str.extract(r"\((\d{4})\)(?:\s*\([^()]*\))*$", expand=False)
    bare = title.str.replace(r"\s*\(\d{4}\)(?=(?:\s*\([^()]*\))*$)", "", regex=True)
    return bare, year


def us_zip_region(zips: pd.Series) -> np.ndarray:
    """A US ZIP code's first digit, "other" for anything else (Canadian codes, typos).

    The first digit is the code's national area (0 = New England ... 9 = West Coast): coarse
    enough to partition clients by geography without identifying anyone. ZIP+4 ("98107-2117")
    is a US code too.
    """
    us_zip = zips.str.fullmatch(r"\d{5}(-\d{4})?").fillna(False).to_numpy(dtype=bool)
    return np.where(us_zip, zips.str[0], "other")


def _read_genres(path: Path) -> list[str]:
    genres = read_fields(path, "|", ["name", "index"])
    genres = genres[genres["name"] != ""]  # u.genre ends with a blank line
    require_pattern(genres, path, "index", r"\d+", "a genre index")
    return genres.assign(index=genres["index"].astype(int)).sort_values("index")["name"].tolist()


def _read_items(path: Path, genres: list[str]) -> pd.DataFrame:
    raw = read_fields(path, "|", [*_ITEM_FIXED_FIELDS, *genres])
    require_pattern(raw, path, "item_id", r"\d+", "an item id")
    require_pattern(raw, path, "release_date", r"(\d{1,2}-[A-Za-z]{3}-\d{4})?", "a date like 01-Jan-1995")
    for genre in genres:
        require_pattern(raw, path, genre, r"[01]", "a 0/1 genre flag")
    bare_title, title_year = title_and_year(raw["title"])
    release_year = raw["release_date"].str.extract(r"(\d{4})$", expand=False)
    year = pd.to_numeric(release_year.fillna(title_year), errors="coerce")
    joined = pd.Series("", index=raw.index, dtype="str")
    for genre in genres:  # 19 column operations, not a loop over rows
        joined = joined + np.where(raw[genre] == "1", genre + "|", "")
    joined = joined.str.rstrip("|")
    return pd.DataFrame(
        {
            "item_id": raw["item_id"],
            "title": bare_title.where(bare_title != "", np.nan),
            "year": year.astype(np.float64),
            "genres": joined.where(joined != "", np.nan),
        }
    )


def _read_users(path: Path) -> pd.DataFrame:
    raw = read_fields(path, "|", ["user_id", "age", "gender", "occupation", "zip"])
    require_pattern(raw, path, "user_id", r"\d+", "a user id")
    require_pattern(raw, path, "age", r"\d+", "an age in years")
    return raw.assign(age=raw["age"].astype(np.float64), region=us_zip_region(raw["zip"]))


def read_ratings(path: Path, sep: str) -> pd.DataFrame:
    """``user_id``, ``item_id``, ``rating`` 1-5 and ``timestamp`` (unix seconds), checked per row."""
    raw = read_fields(path, sep, ["user_id", "item_id", "rating", "timestamp"])
    for column, what in (
        ("user_id", "a user id"),
        ("item_id", "an item id"),
        ("rating", "a rating 1-5"),
        ("timestamp", "unix seconds"),
    ):
        require_pattern(raw, path, column, r"[1-5]" if column == "rating" else r"\d+", what)
    return raw


def check_sha256(archive: Archive, directory: Path) -> None:
    """Warn about every file of ``directory`` that differs from ``archive``'s official one."""
    for name, expected in archive.sha256.items():
        actual = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        if actual != expected:
            logger.warning(
                "%s has sha256 %s, not the official %s: this copy of %s was altered "
                "(results will not be comparable to published ones)",
                directory / name,
                actual,
                expected,
                archive.name,
            )


def load_movielens_100k(data_dir: str | Path | None = None) -> Tables:
    """Load MovieLens 100K as contract :class:`Tables` named ``"movielens-100k"``.

    Interactions: ratings 1-5 become ``weight``, timestamps are unix seconds. Items: ``title``
    (text, without its "(1995)" year), ``year`` (numeric: the release date's year, else the
    title's; missing for item 267 "unknown"), ``genres`` (multi, u.genre names joined by "|",
    the "unknown" genre included). Users: ``age`` (numeric), ``gender``, ``occupation``,
    ``zip``, ``region`` (categorical; region is a US ZIP's first digit, "other" for non-US).

    Raises:
        DatasetUnavailableError: see :func:`resolve_data_dir`.
        DataValidationError: a malformed raw row (names the ``u.*`` file, line and field), or
            anything the contract rejects.
    """
    directory = resolve_data_dir(data_dir, "ml-100k")
    check_sha256(ML100K, directory)
    genres = _read_genres(directory / "u.genre")
    items = _read_items(directory / "u.item", genres)
    users = _read_users(directory / "u.user")
    ratings = read_ratings(directory / "u.data", "\t")
    return validate(
        ratings,
        items,
        users,
        sources={
            "interactions": str(directory / "u.data"),
            "items": str(directory / "u.item"),
            "users": str(directory / "u.user"),
        },
        feature_kinds=ML100K_FEATURE_KINDS,
        name="movielens-100k",
    )
