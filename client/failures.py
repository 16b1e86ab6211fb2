"""The outermost mod of the ClientApp: a failure leaves the platform as a code, never as a text.

Flower turns an exception raised in a ClientApp into an error reply whose reason is the
exception's text. That text stays here, in the platform's log, and the coordinator gets
a :class:`~crossfed.shared.protocol.failures.FailureCode`.
"""

from __future__ import annotations

import logging

from flwr.app import Context, Error, Message

from crossfed.client.outbox import LeakError
from crossfed.client.secure import InsecureRequestError, WeakSecureAggregationError
from crossfed.client.task import MechanismMismatch
from crossfed.shared.config import ConfigError
from crossfed.shared.config.trust import RevealingSettingError
from crossfed.shared.data.catalog import CatalogError
from crossfed.shared.data.contract import DataValidationError
from crossfed.shared.data.movielens import DatasetUnavailableError
from crossfed.shared.privacy.item_subspace import BasisRefused
from crossfed.shared.protocol.failures import FailureCode, failure_reason
from crossfed.shared.storage.checked import CorruptStateError, StateWriteError
from crossfed.shared.storage.platform_state import PlatformUsersError

logger = logging.getLogger(__name__)

#: Most specific first: the first class an exception is an instance of gives its code.
_CODES: tuple[tuple[type[BaseException], FailureCode], ...] = (
    (RevealingSettingError, FailureCode.REVEALING_SETTING),
    (ConfigError, FailureCode.CONFIGURATION),
    (CatalogError, FailureCode.DATA),
    (DataValidationError, FailureCode.DATA),
    (DatasetUnavailableError, FailureCode.DATA),
    (PlatformUsersError, FailureCode.DATA),
    (CorruptStateError, FailureCode.STATE),
    (StateWriteError, FailureCode.STATE),
    (InsecureRequestError, FailureCode.REFUSED_REQUEST),
    (WeakSecureAggregationError, FailureCode.REFUSED_REQUEST),
    (MechanismMismatch, FailureCode.REFUSED_REQUEST),
    (BasisRefused, FailureCode.REFUSED_REQUEST),
    (LeakError, FailureCode.REFUSED_REPLY),
)


def failure_code(error: BaseException) -> FailureCode:
    """The code the coordinator is told for ``error``."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return FailureCode.INTERNAL


def codes_only(message: Message, context: Context, call_next) -> Message:
    """Answer ``message``; on any failure, log it here and reply with its code alone."""
    try:
        return call_next(message, context)
    except Exception as error:  # every failure, expected or not, leaves only as a code
        code = failure_code(error)
        logger.error("%s request failed (%s): %s", message.metadata.message_type, code.name, error, exc_info=True)
        return Message(Error(code=int(code), reason=failure_reason(code)), reply_to=message)
