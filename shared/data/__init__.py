"""Data: from a platform's files (or a built-in dataset) to one platform's encoded interactions.

Every table goes through :mod:`.contract` (validation, the same for operators' exports and
MovieLens), then :mod:`.features` (deterministic codes); :mod:`.catalog` fixes every item's global
id; :mod:`.datasets` and :mod:`.partition` make simulated platforms, :mod:`.platform_files` reads an
operator's own; :mod:`.interactions` holds a platform's interactions and its split.
"""

from .contract import (
    FEATURE_KINDS,
    DataValidationError,
    Tables,
    ValidationReport,
    infer_feature_kind,
    load_tables,
    read_table,
    validate,
)
from .features import EncodedDataset, EncodedFeature, encode, encode_features
from .movielens import (
    ML1M_MD5,
    ML1M_URL,
    ML100K_MD5,
    ML100K_URL,
    DatasetChecksumError,
    DatasetUnavailableError,
    load_movielens_100k,
    resolve_data_dir,
)
from .movielens_1m import load_movielens_1m

__all__ = [
    "FEATURE_KINDS",
    "ML1M_MD5",
    "ML1M_URL",
    "ML100K_MD5",
    "ML100K_URL",
    "DataValidationError",
    "DatasetChecksumError",
    "DatasetUnavailableError",
    "EncodedDataset",
    "EncodedFeature",
    "Tables",
    "ValidationReport",
    "encode",
    "encode_features",
    "infer_feature_kind",
    "load_movielens_1m",
    "load_movielens_100k",
    "load_tables",
    "read_table",
    "resolve_data_dir",
    "validate",
]
