"""What the operator command lines share: which errors an operator can fix, and how they are shown.

Such an error is printed as one line naming the file (and, for data, row and column) and
the command exits 1 - never a traceback.
"""

from __future__ import annotations

from crossfed.shared.data.catalog import CatalogError
from crossfed.shared.config import ConfigError
from crossfed.shared.data.contract import DataValidationError
from crossfed.client.serving.service import ServingError
from crossfed.shared.storage.checked import CorruptStateError

#: Errors an operator can fix from the message alone (plus ``OSError``: a missing or unreadable file).
OPERATOR_ERRORS = (DataValidationError, CatalogError, ServingError, ConfigError, CorruptStateError, OSError)


def error_line(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"error: {error.filename or ''}: {error.strerror or error}"
    return f"error: {error}"
