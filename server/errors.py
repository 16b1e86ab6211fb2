"""Why a federation stops."""

from crossfed.shared.errors import CrossfedError


class FederationError(CrossfedError, RuntimeError):
    """The federation cannot go on (too few platforms answered or got ready)."""
