"""Reproducible seeds: one root seed per run, derived streams per platform and purpose."""

from __future__ import annotations

import numpy as np

from crossfed.shared.config import ExperimentConfig

#: Salt for the evaluation candidates' seed: fixed, so every round and every mode ranks the same lists.
EVALUATION_SALT = 0xFFFF


def evaluation_seed(experiment: ExperimentConfig, platform: int) -> int:
    return platform_seed(experiment, platform, EVALUATION_SALT)


def platform_seed(experiment: ExperimentConfig, platform: int, salt: int = 0) -> int:
    """Distinct, reproducible seeds per platform (and per round via ``salt``)."""
    return int(np.random.SeedSequence([experiment.seed, platform + 1, salt]).generate_state(1)[0])
