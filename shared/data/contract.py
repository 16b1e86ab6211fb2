"""The data contract that every dataset goes through: operators' own exports and MovieLens alike.

Why a contract: the model and the federated clients only ever see :class:`Tables` (and, after
``features.encode``, an ``EncodedDataset``). Whatever a platform exports (CSV or Parquet,
integer or string ids, unix seconds or ISO datetimes) is checked and normalised here, once, and
every problem is reported with the file, data row and column a person needs to fix it. Running
MovieLens through the same code keeps the demo honest: it exercises the very path an operator's
data takes.

Tables
------
* **interactions** (required): ``user_id``, ``item_id``; optional ``timestamp`` (integer unix
  seconds or an ISO 8601 datetime string; naive datetimes are taken as UTC), optional ``rating``
  *or* ``weight`` (a finite float; giving both is ambiguous and rejected). Other columns are
  ignored (and logged).
* **item catalog** (required): ``item_id`` plus any feature columns. Every interacted item must be
  in it; catalog items nobody interacted with are kept (they are still recommendable).
* **user features** (optional): ``user_id`` plus any feature columns. When given, every
  interacting user must be in it.

Feature values may be missing; they are counted in the :class:`ValidationReport` and imputed later
by ``features.py``. Ids, timestamps and weights may not be missing.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from crossfed.shared.errors import CrossfedError

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURE_KINDS",
    "MULTI_SEPARATOR",
    "DataValidationError",
    "Tables",
    "ValidationReport",
    "infer_feature_kind",
    "load_tables",
    "read_table",
    "validate",
    "validate_features",
]

#: Allowed feature kinds. "multi" holds several values separated by :data:`MULTI_SEPARATOR`.
FEATURE_KINDS: tuple[str, ...] = ("categorical", "multi", "numeric", "text")
MULTI_SEPARATOR = "|"
#: Columns with these names (case-insensitive) are free text whatever their length.
_TEXT_COLUMN_NAMES = frozenset({"title", "description", "name"})
#: A string column whose values average more than this many characters is free text.
_TEXT_MEAN_LENGTH = 30
_TABLES = ("interactions", "items", "users")
_INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "weight")
_EPOCH = pd.Timestamp(0, tz="UTC")
_ONE_SECOND = pd.Timedelta(seconds=1)
_MILLISECONDS_LIKELY = 10**11  # as unix seconds: year 5138
_LARGEST_SECONDS = 2**53


class DataValidationError(CrossfedError, ValueError):
    """Input data breaks the contract; says where, so that a person can fix the file.

    Attributes:
        file: the file (as the caller named it) or table label the problem is in.
        row: 1-based *data* row number as a person counts rows in the file, header excluded:
            row 1 is the first line after the CSV header (for a header-less file such as
            MovieLens' ``u.data`` it is simply the line number). ``None`` when the problem
            concerns the whole file or a whole column.
        column: the column (or raw field) at fault, or ``None``.
        detail: the message without the location prefix.
    """

    def __init__(self, file: str, detail: str, row: int | None = None, column: str | None = None) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.detail = detail
        where = [file]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {detail}")

    def __reduce__(self):  # keep picklable: Flower/Ray ship exceptions between processes
        return (type(self), (self.file, self.detail, self.row, self.column))


@dataclass(frozen=True)
class ValidationReport:
    """What validation found, for the operator to read before training starts.

    ``users`` counts distinct users *with interactions* (the ones a model can learn from);
    ``items`` is the catalog size and ``items_interacted`` how many of those were interacted with.
    ``missing_values`` maps ``"items"``/``"users"`` to ``{feature column: missing count}``; those
    values are imputed by ``features.py``, not rejected.
    """

    rows_read: int
    duplicates_dropped: int
    users: int
    items: int
    items_interacted: int
    missing_values: dict[str, dict[str, int]] = field(default_factory=dict)
    #: With ``unknown_items="drop"``: distinct item ids absent from the catalog, the rows that
    #: held them (dropped, never mapped to another item) and a few of those ids to look up.
    unknown_items: int = 0
    unknown_item_rows: int = 0
    unknown_item_examples: tuple[str, ...] = ()

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.duplicates_dropped - self.unknown_item_rows

    def lines(self) -> list[str]:
        """Human-readable summary, one finding per line."""
        out = [
            (
                f"interactions: {self.rows_read} rows read, {self.duplicates_dropped} exact duplicate "
                f"rows dropped, {self.rows_kept} kept"
            ),
        ]
        if self.unknown_item_rows:
            examples = ", ".join(repr(x) for x in self.unknown_item_examples)
            out.append(
                f"unknown items: {self.unknown_items} item ids in {self.unknown_item_rows} rows are "
                f"not in the catalog; those rows were dropped (e.g. {examples})"
            )
        out += [
            f"users: {self.users} with interactions",
            (
                f"items: {self.items} in catalog, {self.items_interacted} with interactions, "
                f"{self.items - self.items_interacted} never interacted with"
            ),
        ]
        gaps = [
            f"{table}.{column}: {count} missing values (imputed at encoding)"
            for table, columns in self.missing_values.items()
            for column, count in columns.items()
            if count
        ]
        return out + (gaps or ["features: no missing values"])


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare by
class Tables:
    """Validated, normalised tables; the only input ``features.encode`` accepts.

    * ``interactions``: ``user_id`` and ``item_id`` (str), ``timestamp`` (int64 unix seconds; if
      the source had no timestamp it is the row order 0..n-1 after duplicate removal, so that
      "later" still means "later in the file"), ``weight`` (float32: the rating or weight if
      given, else 1.0). File order is kept.
    * ``items``: ``item_id`` (str) + feature columns, in catalog order.
    * ``users``: ``user_id`` (str) + feature columns, or ``None``.
    * ``feature_kinds``: ``{"items": {column: kind}, "users": {column: kind}}``, kinds from
      :data:`FEATURE_KINDS`. Numeric features are float64, all others str (missing = NaN).
    * ``has_timestamps``: whether the source had a ``timestamp`` column (the split needs to know
      whether "latest" means anything).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None
    feature_kinds: dict[str, dict[str, str]]
    report: ValidationReport
    name: str
    has_timestamps: bool = True


# --------------------------------------------------------------------------------------------
# Reading files


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv`` or ``.parquet`` table without interpreting its values.

    CSV is read with every column as str (empty cells and the usual NA markers become NaN) so
    that :func:`validate` does the type conversion and can name the offending row. Blank lines
    are kept as empty rows, so that row numbers stay those of the file; trailing blank lines are
    dropped. Parquet keeps its own column types; :func:`validate` accepts those too.

    Raises:
        DataValidationError: unknown suffix, missing or empty file, CSV not in UTF-8 (with the
            byte offset and line), unparseable CSV or Parquet.
    """
    p = Path(path)
    name = str(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataValidationError(name, f"unsupported file type {p.suffix or '(no suffix)'!r}; use .csv or .parquet")
    if not p.is_file():
        raise DataValidationError(name, "file not found")
    if p.stat().st_size == 0:
        raise DataValidationError(name, "file is empty")
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises a zoo of types for corrupt files
            raise DataValidationError(name, f"cannot be read as Parquet: {exc}") from exc
        _reject_nested_values(df, name)
        return df
    return _read_csv(p, name)


def _reject_nested_values(df: pd.DataFrame, name: str) -> None:
    """Parquet may hold bytes, lists or maps; the contract's columns hold scalars only."""
    for position, column in enumerate(df.columns):
        values = df.iloc[:, position]
        if values.dtype != object:
            continue
        nested = values.map(lambda v: isinstance(v, (bytes, bytearray, list, tuple, dict, np.ndarray))).to_numpy(
            dtype=bool
        )
        if nested.any():
            i = int(np.flatnonzero(nested)[0])
            kind = type(values.iloc[i]).__name__
            raise DataValidationError(
                name,
                f"holds a {kind} value; columns must hold numbers, text or datetimes",
                row=i + 1,
                column=str(column),
            )


def _read_csv(p: Path, name: str) -> pd.DataFrame:
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataValidationError(
            name,
            f"is not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
            f"(line {line}); re-save the file as UTF-8 "
            f"(for example: iconv -f latin1 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix})",
            row=line - 1 if line > 1 else None,
        ) from exc
    text = text.removeprefix("\ufeff")  # Excel writes a byte-order mark
    if not text.strip():
        raise DataValidationError(name, "file is empty")
    _check_header(text, name)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=True, skip_blank_lines=False)
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(name, "file is empty") from exc
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        row = int(m.group(1)) - 1 if m else None
        raise DataValidationError(name, f"cannot be parsed as CSV: {exc}", row=row) from exc
    if not isinstance(df.index, pd.RangeIndex):
        # pandas takes the leading fields as an index when the first data row is longer than the header
        # (a later longer row is a ParserError above): every value would shift one column and a row be lost.
        header = len(df.columns)
        raise DataValidationError(
            name,
            f"has more fields than the header's {header} column(s); field {header + 1} has no column name",
            row=1,
            column=f"field {header + 1}",
        )
    df.columns = [str(c).strip() for c in df.columns]
    blank = np.ones(len(df), dtype=bool)
    for column in df.columns:
        blank &= (df[column].isna() | (df[column].str.strip() == "")).to_numpy()
    if blank.any():
        filled = np.flatnonzero(~blank)
        df = df.iloc[: (filled[-1] + 1) if len(filled) else 0]
    return df


def _check_header(text: str, name: str) -> None:
    """Refuse a header naming a column twice: pandas would silently rename the second ``name.1``."""
    first_line = next(iter(text.splitlines()), "")
    names = [field.strip() for field in next(csv.reader([first_line]), [])]
    seen: set[str] = set()
    for column in names:
        if column in seen:
            raise DataValidationError(name, "the header names this column more than once", column=column)
        seen.add(column)


# --------------------------------------------------------------------------------------------
# Value conversion helpers (vectorised; each returns values plus a mask of rows that failed)


def _as_str(values: pd.Series) -> pd.Series:
    """Canonical str form: stripped, empty → NaN, integral floats without '.0'.

    Why: ids written by one tool as ``7`` and by another as ``7.0`` (pandas turns int columns
    with gaps into floats) or ``" 7"`` must still match.
    """
    values = values.reset_index(drop=True)
    missing = values.isna().to_numpy()
    present = values[~missing]
    if ptypes.is_float_dtype(present.dtype):
        finite = np.isfinite(present.to_numpy(dtype=np.float64))
        if finite.all() and (present == np.floor(present)).all():
            present = present.astype(np.int64)
    elif ptypes.is_integer_dtype(present.dtype):
        present = present.astype(np.int64)
    out = pd.Series(np.nan, index=values.index, dtype="str")
    out[~missing] = present.astype(str).str.strip().to_numpy()
    out[out == ""] = np.nan
    return out


def _parse_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and a mask of entries that are not finite numbers."""
    if ptypes.is_bool_dtype(values.dtype):
        return np.zeros(len(values)), np.ones(len(values), dtype=bool)
    if ptypes.is_numeric_dtype(values.dtype):
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        out = pd.to_numeric(_as_str(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out, ~np.isfinite(out)


def _parse_timestamps(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Int64 unix seconds and a mask of entries that are neither integer seconds nor ISO 8601."""
    values = values.reset_index(drop=True)
    n = len(values)
    if ptypes.is_datetime64_any_dtype(values.dtype):
        stamps = values if values.dt.tz is not None else values.dt.tz_localize("UTC")
        return _to_seconds(stamps), np.zeros(n, dtype=bool)
    if ptypes.is_numeric_dtype(values.dtype) and not ptypes.is_bool_dtype(values.dtype):
        return _integral_seconds(values.to_numpy(dtype=np.float64, na_value=np.nan))
    text = _as_str(values)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    out, bad = _integral_seconds(numbers)
    dated = np.isnan(numbers)  # not a number at all: try ISO 8601
    if dated.any():
        stamps = pd.to_datetime(text[dated], format="ISO8601", utc=True, errors="coerce")
        ok = stamps.notna().to_numpy()
        idx = np.flatnonzero(dated)
        bad[idx] = ~ok
        out[idx[ok]] = _to_seconds(stamps[ok])
    return out, bad


def _integral_seconds(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore"):
        # Beyond 2**53 seconds a float is no longer an exact integer (and int64 may overflow).
        bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers)) | (np.abs(numbers) > _LARGEST_SECONDS)
    out = np.zeros(len(numbers), dtype=np.int64)
    out[~bad] = numbers[~bad].astype(np.int64)
    return out, bad


def _to_seconds(stamps: pd.Series) -> np.ndarray:
    return ((stamps - _EPOCH) // _ONE_SECOND).to_numpy(dtype=np.int64)


def _show(value: object, limit: int = 60) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _fail_rows(file: str, column: str, bad: np.ndarray, describe: Callable[[int], str]) -> None:
    """Raise for the first bad row (1-based data row), mentioning how many more there are."""
    positions = np.flatnonzero(bad)
    if not len(positions):
        return
    first = int(positions[0])
    detail = describe(first)
    if len(positions) > 1:
        detail += f" ({len(positions) - 1} more rows have the same problem)"
    raise DataValidationError(file, detail, row=first + 1, column=column)


def _require_columns(df: pd.DataFrame, file: str, columns: tuple[str, ...]) -> None:
    for column in columns:
        if column not in df.columns:
            found = ", ".join(repr(c) for c in df.columns) or "none"
            raise DataValidationError(file, f"required column is missing (columns found: {found})", column=column)


def _ids(df: pd.DataFrame, file: str, column: str) -> pd.Series:
    ids = _as_str(df[column])
    blank_rows = df.isna().all(axis=1).to_numpy()

    def describe(i: int) -> str:
        return "row is empty" if blank_rows[i] else "missing value in a required column"

    _fail_rows(file, column, ids.isna().to_numpy(), describe)
    return ids


def _absent_from(values: pd.Series, reference) -> np.ndarray:
    """Mask of ``values`` not in ``reference`` (hash lookup; ``isin`` on Arrow strings is slow)."""
    return pd.Index(reference).get_indexer(values) < 0


def _check_columns_unique(df: pd.DataFrame, file: str) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    df.columns = [str(c).strip() for c in df.columns]
    dupes = df.columns[df.columns.duplicated()]
    if len(dupes):
        raise DataValidationError(file, "column appears more than once", column=dupes[0])
    return df


# --------------------------------------------------------------------------------------------
# Feature tables


def infer_feature_kind(column: str, values: pd.Series) -> str:
    """Guess a feature column's kind when the operator did not say.

    Order matters: numbers first (a numeric dtype, or every present value parses as a finite
    number); then text by name (title/description/name); then "multi" if any value contains
    ``|``; then text by length (mean > 30 characters); else "categorical". "multi" is checked
    before the length rule because long tag lists are common and free text with ``|`` is not.
    Integer-coded categories would come out numeric: pass ``feature_kinds`` for those.
    """
    if ptypes.is_bool_dtype(values.dtype):
        return "categorical"
    if ptypes.is_numeric_dtype(values.dtype):
        return "numeric"
    present = _as_str(values).dropna()
    if present.empty:
        return "categorical"
    numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isfinite(numbers).all():
        return "numeric"
    if column.lower() in _TEXT_COLUMN_NAMES:
        return "text"
    if present.str.contains(MULTI_SEPARATOR, regex=False).any():
        return "multi"
    if present.str.len().mean() > _TEXT_MEAN_LENGTH:
        return "text"
    return "categorical"


def _feature_table(
    df: pd.DataFrame, table: str, id_column: str, file: str, given: Mapping[str, str]
) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """Validate one feature table; return it normalised, its kinds and missing counts."""
    df = _check_columns_unique(df, file)
    _require_columns(df, file, (id_column,))
    if df.empty:
        raise DataValidationError(file, f"the {table} table has no data rows")
    for column, kind in given.items():
        if column not in df.columns or column == id_column:
            raise DataValidationError(
                file,
                "a feature kind was given for a column the table does not have",
                column=column,
            )
        if kind not in FEATURE_KINDS:
            raise DataValidationError(file, f"unknown feature kind {kind!r}; use one of {FEATURE_KINDS}", column=column)
    ids = _ids(df, file, id_column)
    first_seen = pd.Series(np.arange(len(ids))).groupby(ids.to_numpy()).transform("min")
    repeated = ids.duplicated().to_numpy()
    _fail_rows(
        file,
        id_column,
        repeated,
        lambda i: f"{id_column} {_show(ids[i])} appears more than once (first at row {int(first_seen[i]) + 1})",
    )
    out = {id_column: ids}
    kinds: dict[str, str] = {}
    missing: dict[str, int] = {}
    for column in df.columns:
        if column == id_column:
            continue
        kind = given.get(column) or infer_feature_kind(column, df[column])
        if kind == "numeric":
            values, bad = _parse_float(df[column])
            absent = df[column].isna().to_numpy() | (_as_str(df[column]).isna().to_numpy())
            raw = df[column]
            _fail_rows(
                file,
                column,
                bad & ~absent,
                lambda i, raw=raw: f"value {_show(raw.iloc[i])} is not a finite number (the column is numeric)",
            )
            out[column] = pd.Series(np.where(absent, np.nan, values), dtype=np.float64)
        else:
            out[column] = _as_str(df[column])
        kinds[column] = kind
        missing[column] = int(out[column].isna().sum())
    return pd.DataFrame(out), kinds, missing


# --------------------------------------------------------------------------------------------
# Interactions


def _interactions(df: pd.DataFrame, file: str) -> tuple[pd.DataFrame, bool]:
    """Validate and normalise interactions; returns the frame and whether it had timestamps."""
    df = _check_columns_unique(df, file)
    _require_columns(df, file, ("user_id", "item_id"))
    if df.empty:
        raise DataValidationError(file, "the interactions table has no data rows")
    if "rating" in df.columns and "weight" in df.columns:
        raise DataValidationError(
            file,
            "has both 'rating' and 'weight' columns; keep the one to learn from",
            column="weight",
        )
    extra = [c for c in df.columns if c not in _INTERACTION_COLUMNS]
    if extra:
        logger.info("%s: ignoring columns not in the contract: %s", file, ", ".join(extra))
    out = pd.DataFrame({"user_id": _ids(df, file, "user_id"), "item_id": _ids(df, file, "item_id")})
    has_timestamp = "timestamp" in df.columns
    if has_timestamp:
        raw = df["timestamp"]
        _fail_rows(file, "timestamp", raw.isna().to_numpy(), lambda i: "missing timestamp")
        seconds, bad = _parse_timestamps(raw)
        _fail_rows(
            file,
            "timestamp",
            bad,
            lambda i: f"value {_show(raw.iloc[i])} is neither integer unix seconds nor an ISO 8601 datetime",
        )
        if len(seconds) and seconds.max() > _MILLISECONDS_LIKELY:
            logger.warning(
                "%s: timestamps reach %d, which as seconds is beyond the year 5000; are they "
                "milliseconds? The contract expects seconds.",
                file,
                seconds.max(),
            )
        out["timestamp"] = seconds
    weight_column = next((c for c in ("rating", "weight") if c in df.columns), None)
    if weight_column is None:
        out["weight"] = np.ones(len(df))
    else:
        raw = df[weight_column]
        _fail_rows(file, weight_column, raw.isna().to_numpy(), lambda i: f"missing {weight_column}")
        values, bad = _parse_float(raw)
        _fail_rows(
            file,
            weight_column,
            bad,
            lambda i: f"value {_show(raw.iloc[i])} is not a finite number",
        )
        out["weight"] = values
    return out, has_timestamp


def validate(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None = None,
    *,
    sources: Mapping[str, str] | None = None,
    feature_kinds: Mapping[str, Mapping[str, str]] | None = None,
    name: str = "custom",
    unknown_items: str = "error",
) -> Tables:
    """Check raw tables against the contract and normalise them into :class:`Tables`.

    Args:
        interactions, items, users: raw frames (e.g. from :func:`read_table`); not modified.
            Row *i* (0-based position) is reported as data row *i + 1*.
        sources: ``{"interactions"|"items"|"users": file name}`` used in error messages;
            defaults to the table names.
        feature_kinds: ``{"items"|"users": {column: kind}}``; columns not listed are inferred
            with :func:`infer_feature_kind`.
        name: dataset name carried into :class:`Tables`.
        unknown_items: ``"error"`` (an interacted item missing from the catalog is a broken
            export) or ``"drop"`` (the catalog is the coordinator's, published for every
            platform: a platform may hold items it does not list yet; their rows are dropped
            and counted in the report, never mapped to another item).

    Duplicates: rows identical in every contract column (ids, timestamp, rating/weight, after
    type conversion) are dropped and counted; they are export glitches. The same (user, item)
    pair at different timestamps is kept: that is repeat consumption, real signal. Without a
    timestamp column, identical (user, item, weight) rows count as duplicates.

    Raises:
        DataValidationError: with ``file``, ``row`` and ``column`` set as precisely as known.
        ValueError: ``feature_kinds`` names a table other than "items"/"users".
    """
    src = {table: table for table in _TABLES} | dict(sources or {})
    kinds_given = dict(feature_kinds or {})
    unknown_tables = set(kinds_given) - {"items", "users"}
    if unknown_tables:
        raise ValueError(f"feature_kinds may only describe 'items' and 'users', not {sorted(unknown_tables)}")
    if unknown_items not in ("error", "drop"):
        raise ValueError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    if users is None and kinds_given.get("users"):
        raise ValueError("feature_kinds describes 'users' but no user table was given")

    item_table, item_kinds, item_missing = _feature_table(
        items, "items", "item_id", src["items"], kinds_given.get("items", {})
    )
    user_table = None
    user_kinds: dict[str, str] = {}
    user_missing: dict[str, int] = {}
    if users is not None:
        user_table, user_kinds, user_missing = _feature_table(
            users, "users", "user_id", src["users"], kinds_given.get("users", {})
        )

    inter, has_timestamp = _interactions(interactions, src["interactions"])
    unknown_item = _absent_from(inter["item_id"], item_table["item_id"])
    unknown_ids = pd.unique(inter["item_id"][unknown_item])
    if unknown_items == "error":
        _fail_rows(
            src["interactions"],
            "item_id",
            unknown_item,
            lambda i: f"item {_show(inter['item_id'][i])} is not in the item catalog ({src['items']})",
        )
    elif unknown_item.any():
        logger.warning(
            "%s: %d rows name %d items that are not in the catalog (%s); they are dropped",
            src["interactions"],
            int(unknown_item.sum()),
            len(unknown_ids),
            src["items"],
        )
        if unknown_item.all():
            raise DataValidationError(
                src["interactions"],
                f"none of the interacted items is in the item catalog ({src['items']}); "
                f"is it the right catalog? (first unknown item: {_show(unknown_ids[0])})",
                column="item_id",
            )
    if user_table is not None:
        unknown = _absent_from(inter["user_id"], user_table["user_id"])
        _fail_rows(
            src["interactions"],
            "user_id",
            unknown,
            lambda i: f"user {_show(inter['user_id'][i])} is not in the user table ({src['users']})",
        )

    rows_read = len(inter)
    inter = inter[~unknown_item].reset_index(drop=True)
    known_rows = len(inter)
    inter = inter[~inter.duplicated()].reset_index(drop=True)
    if not has_timestamp:
        inter["timestamp"] = np.arange(len(inter), dtype=np.int64)
    inter = inter.astype({"timestamp": np.int64, "weight": np.float32})[["user_id", "item_id", "timestamp", "weight"]]
    if user_table is not None:
        idle = int(_absent_from(user_table["user_id"], inter["user_id"].unique()).sum())
        if idle:
            logger.info("%s: %d users have no interactions", src["users"], idle)

    report = ValidationReport(
        rows_read=rows_read,
        duplicates_dropped=known_rows - len(inter),
        users=int(inter["user_id"].nunique()),
        items=len(item_table),
        items_interacted=int(inter["item_id"].nunique()),
        missing_values={"items": item_missing, "users": user_missing},
        unknown_items=len(unknown_ids),
        unknown_item_rows=int(unknown_item.sum()),
        unknown_item_examples=tuple(str(x) for x in unknown_ids[:5]),
    )
    for line in report.lines():
        logger.info("%s: %s", name, line)
    return Tables(
        interactions=inter,
        items=item_table,
        users=user_table,
        feature_kinds={"items": item_kinds, "users": user_kinds},
        report=report,
        name=name,
        has_timestamps=has_timestamp,
    )


def validate_features(
    df: pd.DataFrame, table: str, id_column: str, file: str, feature_kinds: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """One feature table on its own (a catalog, the features of newcomers): same rules as in :func:`validate`.

    Returns the normalised table, its feature kinds and the missing values per column.
    """
    return _feature_table(df, table, id_column, file, dict(feature_kinds or {}))


def load_tables(
    interactions_path: str | Path,
    items_path: str | Path,
    users_path: str | Path | None = None,
    **kw,
) -> Tables:
    """Read the files with :func:`read_table` and :func:`validate` them.

    Keyword arguments go to :func:`validate` (``feature_kinds``, ``name``); error messages name
    the files as given here.
    """
    sources = {"interactions": str(interactions_path), "items": str(items_path)}
    if users_path is not None:
        sources["users"] = str(users_path)
    sources |= dict(kw.pop("sources", None) or {})
    return validate(
        read_table(interactions_path),
        read_table(items_path),
        read_table(users_path) if users_path is not None else None,
        sources=sources,
        **kw,
    )
