"""The platform's side of SecAgg+: Flower's ``secaggplus_mod``, guarded, and the legacy request format.

A platform whose own configuration says ``secagg = true`` refuses to train on a plain
request: a coordinator cannot quietly switch secure aggregation off and collect
individual updates. It also refuses a SecAgg+ round set up with fewer peers, shares or a
lower threshold than its own settings (:func:`check_setup`). The mod itself, key agreement,
masking and quantisation are Flower's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.client.mod import secaggplus_mod
from flwr.common import parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from crossfed.client.outbox import SecureRequest
from crossfed.shared.config import RunConfig
from crossfed.shared.errors import CrossfedError
from crossfed.shared.privacy.item_subspace import release_noise_std
from crossfed.shared.protocol.keys import LEGACY_PARAMETERS_RECORD, RELEASE_ARRAY, SERVER_ROUND, SHARED_NAMES
from crossfed.shared.protocol.secure_aggregation import (
    AnnouncedSetup,
    quantisation_plan,
    release_plan,
    setup_problem,
)


class InsecureRequestError(CrossfedError, RuntimeError):
    """A plain training request reached a platform that only trains under secure aggregation."""


class WeakSecureAggregationError(CrossfedError, RuntimeError):
    """The coordinator announced a SecAgg+ round weaker than the platform's own settings allow."""


def is_secure(message: Message) -> bool:
    return RECORD_KEY_CONFIGS in message.content.config_records


def guarded_secaggplus_mod(platform_config: Callable[[Context], RunConfig]):
    """``secaggplus_mod`` for SecAgg+ messages; plain training requests are refused if the platform requires SecAgg+."""

    def mod(message: Message, context: Context, call_next) -> Message:
        if message.metadata.message_type != MessageType.TRAIN:
            return call_next(message, context)
        if is_secure(message):
            check_setup(message, platform_config(context))
            return secaggplus_mod(message, context, call_next)
        if platform_config(context).secure_aggregation.secagg:
            raise InsecureRequestError(
                "this platform is configured with secagg = true and trains only under SecAgg+; "
                "the coordinator sent a plain training request"
            )
        return call_next(message, context)

    return mod


def check_setup(message: Message, config: RunConfig) -> None:
    """Refuse a SecAgg+ setup whose peer count, shares or threshold fall short of the platform's settings."""
    configs = message.content.config_records[RECORD_KEY_CONFIGS]
    if configs.get(Key.STAGE) != Stage.SETUP:
        return
    announced = AnnouncedSetup(
        int(configs[Key.SAMPLE_NUMBER]), int(configs[Key.SHARE_NUMBER]), int(configs[Key.THRESHOLD])
    )
    problem = setup_problem(announced, config)
    if problem is not None:
        raise WeakSecureAggregationError(f"SecAgg+ setup refused: {problem}")


def is_release(names: list[str]) -> bool:
    """Whether a SecAgg+ request sums Gram releases (``user-dp-mechanism = gram-subspace``) rather than updates."""
    return names == [RELEASE_ARRAY]


def unwrap(message: Message, config: RunConfig) -> tuple[dict[str, np.ndarray], int, SecureRequest] | None:
    """A legacy SecAgg+ fit request's global parameters and round, plus what the reply needs; else ``None``."""
    if LEGACY_PARAMETERS_RECORD not in message.content.array_records:
        return None
    instructions = compat.recorddict_to_fitins(message.content, keep_input=True)
    names = str(instructions.config[SHARED_NAMES]).split(",")
    reference = dict(zip(names, parameters_to_ndarrays(instructions.parameters), strict=True))
    plan = release_plan(release_noise_std(config)) if is_release(names) else quantisation_plan(config)
    secure = SecureRequest(reference=reference, names=names, plan=plan)
    return reference, int(instructions.config[SERVER_ROUND]), secure
