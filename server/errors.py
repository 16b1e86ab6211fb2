"""Why a federation stops."""


class FederationError(RuntimeError):
    """The federation cannot go on (too few platforms answered or got ready)."""
