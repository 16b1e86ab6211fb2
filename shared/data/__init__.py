"""Data layer: the validation contract, MovieLens 100K loading and feature encoding.

Everything a caller needs is re-exported here, so that ``from crossfed.shared.data import ...`` is the
only import other packages use.
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
    ML100K_MD5,
    ML100K_URL,
    DatasetChecksumError,
    DatasetUnavailableError,
    load_movielens_100k,
    resolve_data_dir,
)

__all__ = [
    "FEATURE_KINDS",
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
    "load_movielens_100k",
    "load_tables",
    "read_table",
    "resolve_data_dir",
    "validate",
]
