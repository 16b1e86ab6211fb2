"""What coordinator and platforms must agree on for Flower's SecAgg+: the wire format and the ranges.

Under secure aggregation a platform sends its *round update* (trained shared parameters
minus the global ones it started from), never the parameters themselves: updates are small
and centred on zero, so a narrow quantisation range keeps the step fine. Flower's
``secaggplus_mod`` multiplies each update by ``weight / max_weight`` and clips it to
``±clipping_range`` before quantising - silently. crossfed therefore clips on the platform
first, counts what it clipped and logs it, and derives the ranges here, in one place both
sides import, so their settings cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crossfed.shared.config import RunConfig

#: Flower's defaults: 2**22 quantisation levels inside a 2**32 modulus (room for 1024 summands).
QUANTIZATION_LEVELS = 2**22
MODULUS = 2**32


@dataclass(frozen=True)
class QuantisationPlan:
    """The agreed ranges: ``clipping_range`` bounds every coordinate of ``weight / max_weight * update``."""

    clipping_range: float
    max_weight: float
    quantization_range: int = QUANTIZATION_LEVELS
    modulus_range: int = MODULUS

    @property
    def step(self) -> float:
        """Spacing of the quantisation grid: the secure mean is exact up to this, per summand."""
        return 2 * self.clipping_range / self.quantization_range


def quantisation_plan(config: RunConfig) -> QuantisationPlan:
    """Ranges from the run config: privately trained platforms all weigh 1, others their positives.

    With distributed noise the range follows from the DP settings: an update is
    ``learning-rate / user-batch`` times a sum of at most ``b`` clipped contributions plus
    Gaussian noise, so each coordinate is below ``lr * C * (b / B + 8 * sigma / B)``; ``b``
    is a Poisson count with mean ``B`` (over ``2B`` for ``B = 64`` with probability ~1e-12),
    and 8 standard deviations are exceeded with probability ~1e-15.
    """
    if config.secure_aggregation.noise_mode == "distributed":
        privacy = config.privacy
        bound = (
            config.training.learning_rate
            * privacy.clip_norm
            * (2.0 + 8.0 * privacy.noise_multiplier / privacy.user_batch)
        )
        return QuantisationPlan(clipping_range=bound, max_weight=1.0)
    max_weight = 1.0 if config.private else float(config.secure_aggregation.secagg_max_weight)
    return QuantisationPlan(clipping_range=config.secure_aggregation.secagg_clip_range, max_weight=max_weight)


#: The largest entry of one platform's Gram release its ranges must hold without clipping, noise aside.
#: One user adds at most 1/2 to an entry (``x_i x_j`` of a unit row; ``x_i^2 / sqrt(2)`` on the diagonal),
#: so an entry reaches this only when about 4,000 or more users hold the same item pair with
#: few items each: MovieLens-1M's largest platform (1,465 users) peaks at 11.4 / sqrt(2) on the
#: diagonal and 4.7 off it; MovieLens-100K's at 2.6 and 1.7.
RELEASE_ENTRY_BOUND = 64.0


def release_plan(noise_std: float) -> QuantisationPlan:
    """Ranges for summing Gram releases under SecAgg+: every platform weighs 1, every entry fits.

    An entry of a platform's release is its Gram entry (at most :data:`RELEASE_ENTRY_BOUND`) plus
    Gaussian noise of ``noise_std / sqrt(2)`` (``noise_std``: the platform's σ × its noise share),
    exceeded by 8 standard deviations with probability ~1e-15 per entry. The quantisation step is
    then ``2 x range / 2**22``: at most 5e-5 for every ε ≥ 1, three orders below the noise and far
    below any entry that moves an eigenvector. Both sides derive ``noise_std`` from the public
    settings (:func:`crossfed.shared.privacy.item_subspace.release_noise_std`), so they agree.
    """
    return QuantisationPlan(clipping_range=float(RELEASE_ENTRY_BOUND + 8.0 * noise_std / np.sqrt(2.0)), max_weight=1.0)


def clip_update(
    update: Mapping[str, np.ndarray], weight: float, plan: QuantisationPlan
) -> tuple[dict[str, np.ndarray], int]:
    """Clip ``update`` so that ``weight / max_weight * update`` fits the range; returns it and the count clipped.

    This is also the bound each platform enforces on itself before masking: whatever it
    sends, its contribution to the sum is at most ``clipping_range`` per coordinate.
    """
    limit = plan.clipping_range * plan.max_weight / max(weight, 1e-12)
    clipped, count = {}, 0
    for name, values in update.items():
        count += int(np.count_nonzero(np.abs(values) > limit))
        clipped[name] = np.clip(values, -limit, limit).astype(values.dtype, copy=False)
    return clipped, count


def ordered(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """The legacy wire format is a list: fix its order by name, and fail loudly on a mismatch."""
    if sorted(arrays) != sorted(names):
        missing, unexpected = sorted(set(names) - set(arrays)), sorted(set(arrays) - set(names))
        raise ValueError(f"shared parameters do not match: missing {missing}, unexpected {unexpected}")
    return [np.asarray(arrays[name]) for name in names]


@dataclass(frozen=True)
class AnnouncedSetup:
    """What the coordinator's SecAgg+ setup message says: peers in the round, shares, threshold."""

    sample_num: int
    share_num: int
    threshold: int


def required_shares(sample_num: int, config: RunConfig) -> tuple[int, int]:
    """Shares and threshold this platform's own ``secagg-shares`` / ``secagg-threshold`` give for
    ``sample_num`` peers, computed as Flower's ``SecAggPlusWorkflow`` does from fractions."""
    secure = config.secure_aggregation
    shares = round(secure.secagg_shares * sample_num)
    if shares < sample_num and shares % 2 == 0:
        shares += 1
    if shares <= 2:
        shares = sample_num
    threshold = max(round(secure.secagg_threshold * shares), 2)
    return shares, threshold


def setup_problem(announced: AnnouncedSetup, config: RunConfig) -> str | None:
    """Why a platform must refuse the announced SecAgg+ setup, or ``None`` when it meets its own settings.

    Fewer peers than ``min-platforms`` let the sum reveal more of each update; fewer shares or
    a lower threshold than the platform's own let fewer (possibly Sybil) peers unmask it. The
    platform cannot tell a real peer from a coordinator's puppet: that is what
    ``tolerated-colluders`` and a pinned ``min-platforms`` account for.
    """
    minimum = config.federation.min_platforms
    if announced.sample_num < minimum:
        return f"the round has {announced.sample_num} peer(s), fewer than this platform's min-platforms = {minimum}"
    shares, threshold = required_shares(announced.sample_num, config)
    if announced.share_num < shares or announced.share_num > announced.sample_num:
        return (
            f"masks shared with {announced.share_num} of {announced.sample_num} peers; this platform's "
            f"secagg-shares = {config.secure_aggregation.secagg_shares} needs {shares}"
        )
    if not threshold <= announced.threshold <= announced.share_num:
        return (
            f"threshold {announced.threshold} of {announced.share_num} shares; this platform's "
            f"secagg-threshold = {config.secure_aggregation.secagg_threshold} needs at least {threshold}"
        )
    return None
