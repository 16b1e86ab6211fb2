"""The coordinator's checks on each platform's update before it may enter the aggregate.

Platforms belong to organisations that do not fully trust each other, and machines
fail: a reply may hold NaN or Inf (a diverged or broken platform), parameters that do
not fit the global model (another version, a tampered client), or an update far larger
than the agreed bound (a platform trying to dominate the average). One such reply
would poison every platform's next model, or make Flower's aggregation fail for all.
So each reply is checked on its own and the offending ones are dropped and logged;
the round goes on with the rest.

This needs the individual updates, so it runs only without secure aggregation. With
it, each platform bounds its own update before masking (``crossfed.client.bound``) and the
quantisation range bounds what any one platform can add to the sum.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crossfed.shared.model.sharing import update_norm
from crossfed.shared.protocol.replies import TrainReply

logger = logging.getLogger("crossfed.server.screening")

#: Relative slack on the norm bound: float32 rounding of a clipped update may overshoot by a few ulps.
NORM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Rejection:
    """One update turned away, with the reason the log shows."""

    node_id: int
    platform: int | None
    reason: str


def problem_with(
    arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], max_update_norm: float
) -> str | None:
    """Why these parameters may not be aggregated against ``reference``; None if they may."""
    missing = sorted(set(reference) - set(arrays))
    unexpected = sorted(set(arrays) - set(reference))
    if missing or unexpected:
        return f"parameters do not match the global model: missing {missing}, unexpected {unexpected}"
    for name, value in arrays.items():
        if tuple(np.shape(value)) != tuple(np.shape(reference[name])):
            return f"parameter {name!r} has shape {tuple(np.shape(value))}, expected {tuple(np.shape(reference[name]))}"
        expected = np.asarray(reference[name]).dtype
        if np.asarray(value).dtype != expected:
            return f"parameter {name!r} has dtype {np.asarray(value).dtype}, expected {expected}"
        if not np.all(np.isfinite(value)):
            return f"parameter {name!r} holds NaN or Inf"
    if max_update_norm > 0:
        norm = update_norm(arrays, reference)
        if norm > max_update_norm * (1 + NORM_TOLERANCE):
            return f"update norm {norm:.4g} exceeds max-update-norm = {max_update_norm:g}"
    return None


def screen_updates(
    replies: Sequence[TrainReply],
    reference: Mapping[str, np.ndarray],
    max_update_norm: float,
    server_round: int,
    *,
    private: bool = False,
) -> tuple[list[TrainReply], list[Rejection]]:
    """Split training replies into those fit to aggregate and the rejected ones (logged).

    Under DP every platform weighs 1 (a count would reveal data); a larger claimed weight is
    a platform trying to dominate the mean, whatever its norm bound, and is rejected.
    """
    accepted: list[TrainReply] = []
    rejected: list[Rejection] = []
    for reply in replies:
        reason = _weight_problem(reply.num_examples, private)
        if reason is None:
            if reply.arrays is None:
                reason = reply.unreadable or "no parameters"
            else:
                reason = problem_with(reply.arrays, reference, max_update_norm)
        if reason is None:
            accepted.append(reply)
            continue
        rejection = Rejection(reply.node_id, reply.platform, reason)
        rejected.append(rejection)
        logger.warning(
            "round %d: rejected the update of platform %s (node %s): %s",
            server_round,
            reply.platform,
            rejection.node_id,
            reason,
        )
    return accepted, rejected


def _weight_problem(weight: float | int | None, private: bool) -> str | None:
    """An aggregation weight must be a positive finite number, or FedAvg's average breaks."""
    if weight is None:
        return "num-examples missing or not a finite number"
    if weight <= 0:
        return f"num-examples = {weight} is not a positive number"
    if private and float(weight) != 1:
        return f"num-examples = {weight}; under differential privacy every platform weighs 1"
    return None
