"""The only way a reply leaves a platform.

A reply carries shared parameters (chosen by :func:`crossfed.shared.model.sharing.shared_arrays`,
never anything else) or, under ``user-dp-mechanism = gram-subspace``, the platform's one noised
Gram release and nothing else, and platform-level scalar metrics from a fixed allowlist - a
shorter one under differential privacy, where only values derived from public settings
may accompany the DP parameters. Both lists live in :mod:`crossfed.shared.protocol.keys`,
next to the keys the coordinator reads. Anything else (a list, an array, an unknown key
such as a user id) is refused here, before it can be sent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat
from torch import nn

from crossfed.shared.errors import CrossfedError
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    DECLINED,
    MAY_BE_INFINITE,
    METRICS_RECORD,
    NUM_EXAMPLES,
    PLAIN_METRICS,
    PRIVATE_METRICS,
    RELEASE_ARRAY,
)
from crossfed.shared.protocol.records import to_array_record
from crossfed.shared.protocol.secure_aggregation import QuantisationPlan, clip_update, ordered

logger = logging.getLogger(__name__)


class LeakError(CrossfedError, ValueError):
    """Something other than an allowed platform-level scalar was about to leave the platform."""


@dataclass(frozen=True)
class SecureRequest:
    """A SecAgg+ training request: the global parameters it started from, in the wire order."""

    reference: Mapping[str, np.ndarray]
    names: Sequence[str]
    plan: QuantisationPlan


def build_reply(
    request: Message,
    metrics: Mapping[str, float | int],
    *,
    private: bool,
    model: nn.Module | None = None,
    secure: SecureRequest | None = None,
    release: np.ndarray | None = None,
) -> Message:
    """The reply to ``request``: shared parameters (or, under SecAgg+, the round update) and allowed metrics.

    ``release`` (``user-dp-mechanism = gram-subspace``, never with ``model``) is the platform's noised Gram
    release: one flat vector of ``n (n + 1) / 2`` finite numbers for its ``n`` catalog items, sent as the
    reply's only array (float32) - or, under SecAgg+, masked as the platform's update. A declining
    platform sends none (plain) or zeros with weight 0 (SecAgg+, so the masks still cancel).
    """
    if release is not None:
        release = _released(release, model)
    if secure is not None:
        return _secure_reply(request, metrics, private, model, secure, release)
    content = RecordDict()
    if model is not None:
        content[ARRAYS_RECORD] = to_array_record(shared_arrays(model))
    if release is not None and not metrics.get(DECLINED):
        content[ARRAYS_RECORD] = to_array_record({RELEASE_ARRAY: release.astype(np.float32)})
    content[METRICS_RECORD] = MetricRecord(_platform_level(metrics, PRIVATE_METRICS if private else PLAIN_METRICS))
    return Message(content=content, reply_to=request)


def _released(release: np.ndarray, model: nn.Module | None) -> np.ndarray:
    """``release`` if it is a Gram release: one flat vector of finite numbers, of a length ``n (n + 1) / 2``."""
    if model is not None:
        raise LeakError("a reply carries shared parameters or a Gram release, never both")
    vector = np.asarray(release)
    items = int((np.sqrt(8 * vector.size + 1) - 1) // 2) if vector.ndim == 1 else -1
    if vector.ndim != 1 or vector.size == 0 or items * (items + 1) // 2 != vector.size:
        raise LeakError(f"a Gram release is one vector of n (n + 1) / 2 entries; got shape {vector.shape}")
    if not np.issubdtype(vector.dtype, np.floating) or not np.isfinite(vector).all():
        raise LeakError("a Gram release holds only finite numbers")
    return vector


def _secure_reply(
    request: Message,
    metrics: Mapping[str, float | int],
    private: bool,
    model: nn.Module | None,
    secure: SecureRequest,
    release: np.ndarray | None = None,
) -> Message:
    """The legacy ``FitRes`` that ``secaggplus_mod`` masks: update = trained - global, clipped to the agreed range.

    A platform that declines the round sends a zero update with weight 0, so the masks of
    the others still cancel and the mean is unaffected. A Gram release is its own update (it
    starts from nothing) and weighs 1, so the unmasked mean times the contributors is the sum.
    """
    checked = _platform_level(metrics, PRIVATE_METRICS if private else PLAIN_METRICS)
    if release is not None:
        declined = bool(checked.get(DECLINED))
        update = {RELEASE_ARRAY: np.zeros_like(release) if declined else release}
        weight = 0 if declined else 1
    elif model is None:
        update = {name: np.zeros_like(value) for name, value in secure.reference.items()}
        weight = 0
    else:
        update = {name: value - secure.reference[name] for name, value in shared_arrays(model).items()}
        weight = int(checked.get(NUM_EXAMPLES, 1))
        if weight > secure.plan.max_weight:
            logger.warning("weight %d capped at secagg-max-weight = %g", weight, secure.plan.max_weight)
            weight = int(secure.plan.max_weight)
    update, clipped = clip_update(update, weight, secure.plan)
    if clipped:
        logger.warning(
            "%d coordinate(s) of the round update exceeded secagg-clip-range = %g and were clipped",
            clipped,
            secure.plan.clipping_range,
        )
    checked[NUM_EXAMPLES] = weight
    fit_result = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(ordered(update, secure.names)), weight, checked)
    return Message(content=compat.fitres_to_recorddict(fit_result, keep_input=True), reply_to=request)


def _platform_level(metrics: Mapping[str, float | int], allowed: frozenset[str]) -> dict[str, float | int]:
    checked: dict[str, float | int] = {}
    for key, value in metrics.items():
        if key not in allowed:
            raise LeakError(f"metric {key!r} may not leave the platform (allowed: {sorted(allowed)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LeakError(f"metric {key!r} is a {type(value).__name__}; only platform-level scalars may leave")
        if isinstance(value, float) and not math.isfinite(value) and not (key in MAY_BE_INFINITE and value == math.inf):
            raise LeakError(f"metric {key!r} is not finite ({value})")
        checked[key] = value
    return checked
