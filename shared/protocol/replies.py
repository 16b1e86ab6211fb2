"""Reading what platforms send back: once, on arrival, without trusting it.

A MetricRecord may hold lists as well as numbers, and a legacy FitRes may hold strings or
bytes; a broken or hostile platform can send any of them where the coordinator expects a
number. Each reply is parsed here into a typed, frozen object as it arrives, and the
coordinator reads only those: one odd value drops that value - never the round - and no
later step reads a Message's contents again.

Rules: a metric is a number (not a bool, not NaN); the platform index and the user count
are non-negative integers; the aggregation weight, the loss, the ranking means and the
noise multiplier are finite; epsilon may be infinite (an unbounded spend is a true
report). A value breaking its rule reads as absent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.common import FitRes

from crossfed.shared.evaluation.results import PlatformMetrics
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    DECLINED,
    EPSILON,
    EPSILON_ALONE,
    GLOBAL_PREFIX,
    MAY_BE_INFINITE,
    METRICS_RECORD,
    NOISE_MULTIPLIER,
    NUM_EXAMPLES,
    NUM_USERS,
    PLATFORM,
    RANKING_METRICS,
    RELEASE_ARRAY,
    TRAIN_LOSS,
    ranking_metrics,
)
from crossfed.shared.protocol.records import from_array_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrivacyReport:
    """A platform's privacy status as it reports it (all absent without DP)."""

    epsilon: float | None = None
    epsilon_alone: float | None = None
    noise_multiplier: float | None = None


@dataclass(frozen=True, eq=False)
class PrepareReply:
    """A platform is ready: it loaded its data and built its model."""

    node_id: int
    platform: int | None


@dataclass(frozen=True, eq=False)
class TrainReply:
    """One platform's answer to a training request.

    ``arrays`` are its trained shared parameters; ``None`` when it sent none (it declined,
    or under SecAgg+, where the coordinator never sees them one by one) or when they
    could not be read, which ``unreadable`` then explains. Replies hold arrays, so they
    compare by identity.
    """

    node_id: int
    platform: int | None
    num_examples: float | int | None
    declined: bool
    arrays: Mapping[str, np.ndarray] | None
    unreadable: str | None
    train_loss: float | None
    privacy: PrivacyReport

    @property
    def sent_parameters(self) -> bool:
        """Whether the platform sent parameters, readable or not."""
        return self.arrays is not None or self.unreadable is not None


@dataclass(frozen=True, eq=False)
class EvaluateReply:
    """One platform's answer to an evaluation request: its ranking means (absent under DP) and privacy status.

    ``served`` are the metrics of the model the platform serves; ``global_model`` those of
    the global model (test stage only).
    """

    node_id: int
    platform: int | None
    served: PlatformMetrics | None
    global_model: PlatformMetrics | None
    privacy: PrivacyReport


@dataclass(frozen=True, eq=False)
class ReleaseReply:
    """One platform's answer to the Gram release request (``user-dp-mechanism = gram-subspace``).

    ``release`` is its vector (float64) when it sent one of the expected length with finite entries;
    ``None`` when it declined (budget spent), sent none, or sent something else, which ``unreadable`` says.
    """

    node_id: int
    platform: int | None
    declined: bool
    release: np.ndarray | None
    unreadable: str | None
    privacy: PrivacyReport


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The numbers among ``metrics``; a NaN, or a platform index that is no non-negative integer, reads as absent."""
    numbers = {
        key: value
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    }
    if PLATFORM in numbers and _index(numbers[PLATFORM]) is None:
        del numbers[PLATFORM]
    return numbers


def parse_prepare_reply(message: Message) -> PrepareReply:
    """A successful reply to the prepare request."""
    metrics = _metrics(message)
    return PrepareReply(message.metadata.src_node_id, _platform(metrics))


def parse_train_reply(message: Message) -> TrainReply:
    """A successful reply to a plain training request."""
    metrics = _metrics(message)
    arrays, unreadable = None, None
    if ARRAYS_RECORD in message.content:
        try:
            arrays = from_array_record(message.content[ARRAYS_RECORD])
        except Exception as error:  # an undecodable record is a broken reply like any other
            unreadable = f"parameters cannot be read: {error}"
    return _train_reply(message.metadata.src_node_id, metrics, arrays, unreadable, _finite(metrics, NUM_EXAMPLES))


def parse_secure_train_result(node_id: int, result: FitRes) -> TrainReply:
    """A platform's status in a SecAgg+ round, from the legacy result Flower's workflow collected.

    Its parameters stay masked inside the sum, so ``arrays`` is ``None``; its weight is
    the one the workflow used for the sum.
    """
    metrics = numeric_metrics(result.metrics)
    return _train_reply(node_id, metrics, None, None, _finite_number(result.num_examples))


def parse_evaluate_reply(message: Message) -> EvaluateReply:
    """A successful reply to an evaluation request."""
    metrics = _metrics(message)
    node_id = message.metadata.src_node_id
    return EvaluateReply(
        node_id,
        _platform(metrics),
        _ranking(metrics, "", node_id),
        _ranking(metrics, GLOBAL_PREFIX, node_id),
        _privacy(metrics),
    )


def parse_release_reply(message: Message, length: int) -> ReleaseReply:
    """A successful reply to the Gram release request; ``length`` is ``n (n + 1) / 2`` for the run's catalog."""
    metrics = _metrics(message)
    release, unreadable = None, None
    if ARRAYS_RECORD in message.content:
        try:
            arrays = from_array_record(message.content[ARRAYS_RECORD])
            vector = np.asarray(arrays[RELEASE_ARRAY], dtype=np.float64)
            if set(arrays) != {RELEASE_ARRAY} or vector.shape != (length,) or not np.isfinite(vector).all():
                raise ValueError(f"expected only '{RELEASE_ARRAY}', {length} finite entries")
            release = vector
        except Exception as error:  # an undecodable or misshapen release is a broken reply like any other
            unreadable = f"release cannot be read: {error}"
    return ReleaseReply(
        message.metadata.src_node_id,
        _platform(metrics),
        bool(_finite(metrics, DECLINED)),
        release,
        unreadable,
        _privacy(metrics),
    )


def _train_reply(
    node_id: int,
    metrics: Mapping[str, float | int],
    arrays: Mapping[str, np.ndarray] | None,
    unreadable: str | None,
    num_examples: float | int | None,
) -> TrainReply:
    declined = _finite(metrics, DECLINED)
    return TrainReply(
        node_id,
        _platform(metrics),
        num_examples,
        bool(declined),
        arrays,
        unreadable,
        _finite(metrics, TRAIN_LOSS),
        _privacy(metrics),
    )


def _metrics(message: Message) -> dict[str, float | int]:
    return numeric_metrics(message.content.metric_records.get(METRICS_RECORD, {}))


def _index(value: float | int) -> int | None:
    """``value`` as a non-negative integer (a platform index, a count), else None."""
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value >= 0 else None


def _platform(metrics: Mapping[str, float | int]) -> int | None:
    return _index(metrics[PLATFORM]) if PLATFORM in metrics else None


def _finite(metrics: Mapping[str, Any], key: str) -> float | int | None:
    return _finite_number(metrics.get(key))


def _finite_number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _privacy(metrics: Mapping[str, float | int]) -> PrivacyReport:
    def figure(key: str) -> float | None:
        value = metrics.get(key) if key in MAY_BE_INFINITE else _finite(metrics, key)
        return None if value is None else float(value)

    return PrivacyReport(figure(EPSILON), figure(EPSILON_ALONE), figure(NOISE_MULTIPLIER))


def _ranking(metrics: Mapping[str, float | int], prefix: str, node_id: int) -> PlatformMetrics | None:
    """The ranking means under ``prefix``; none reported (as under DP) reads as absent, and so, logged, does
    a set with a missing or infinite mean, or a user count that is no count."""
    if not ranking_metrics(prefix) & metrics.keys():
        return None
    readable = {
        key: value
        for key, value in metrics.items()
        if (key not in RANKING_METRICS or math.isfinite(value)) and (key != NUM_USERS or _index(value) is not None)
    }
    try:
        return PlatformMetrics.from_flat(readable, prefix)
    except (KeyError, ValueError, OverflowError) as error:
        logger.warning("node %s: evaluation metrics left out (%s: %s)", node_id, type(error).__name__, error)
        return None
