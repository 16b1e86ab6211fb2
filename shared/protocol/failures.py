"""Why a platform could not answer: the only thing about a failure that reaches the coordinator.

An exception's text can hold a user id, a cell value or a count ("a user has interacted
with all but 1622 items"), and the coordinator controls enough of the settings to provoke
such texts on purpose. So a failed platform replies with one of these codes, and the text
stays in the platform's own log. The codes are Flower ``Error.code`` values, chosen above
the range Flower uses for its own errors.
"""

from __future__ import annotations

from enum import IntEnum


class FailureCode(IntEnum):
    """A platform's reason for an error reply; its name is the reply's only text."""

    #: A setting is unknown, out of range, or privacy-relevant and not the operator's.
    CONFIGURATION = 1001
    #: The platform's data or the coordinator's catalog failed its checks.
    DATA = 1002
    #: The platform's saved state could not be read or written.
    STATE = 1003
    #: The request asked for something the platform refuses to do (a plain round where it requires
    #: SecAgg+, SecAgg+ parameters weaker than its own).
    REFUSED_REQUEST = 1004
    #: The reply would have carried something not allowed to leave the platform.
    REFUSED_REPLY = 1005
    #: A value the coordinator set cannot be honoured without revealing a count (e.g. ``eval-negatives``).
    REVEALING_SETTING = 1006
    #: Anything else: a fault in the platform's program.
    INTERNAL = 1099


def failure_reason(code: FailureCode) -> str:
    """The error reply's text: the code's name, nothing from the exception."""
    return f"platform failure {code.value} ({code.name}); details are in the platform's own log"


def describe(code: int) -> str:
    """The coordinator's reading of an error reply's code (Flower's own codes are passed through)."""
    try:
        return FailureCode(code).name
    except ValueError:
        return f"flower error {code}"
