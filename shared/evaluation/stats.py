"""Paired bootstrap confidence intervals: is one model better than another on the same users?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    @property
    def significantly_negative(self) -> bool:
        return self.high < 0

    @property
    def significantly_positive(self) -> bool:
        return self.low > 0


def paired_bootstrap(
    differences: np.ndarray, *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile interval of the mean of per-user differences, resampling users with replacement."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0:
        raise ValueError("paired bootstrap needs at least one paired observation")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):
        stop = min(start + 1000, resamples)
        idx = rng.integers(0, differences.size, size=(stop - start, differences.size))
        means[start:stop] = differences[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(differences.mean()), float(low), float(high))
