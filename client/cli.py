"""What the operator command lines share: which errors an operator can fix, and how they are shown.

Such an error is printed as one line naming the file (and, for data, row and column) and
the command exits 1 - never a traceback.
"""

from __future__ import annotations

from shared.catalog import CatalogError
from shared.config import ConfigError
from shared.data.contract import DataValidationError
from shared.recommend import ServingError
from shared.storage import CorruptStateError

#: Errors an operator can fix from the message alone (plus ``OSError``: a missing or unreadable file).
OPERATOR_ERRORS = (DataValidationError, CatalogError, ServingError, ConfigError, CorruptStateError, OSError)


def error_line(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"error: {error.filename or ''}: {error.strerror or error}"
    return f"error: {error}"
