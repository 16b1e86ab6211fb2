"""The adversaries' scores rank trained canaries above untrained ones when the parameters show it."""

from __future__ import annotations

import numpy as np

from crossfed.shared.config import RunConfig
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import shared_arrays
from crossfed.simulations.audit.canaries import Canary, CanarySet
from crossfed.simulations.audit.scores import coordinator_scores, fold_in_scorer

ITEMS = 60
BIAS = "shared.item_bias.weight"


def canary_set() -> CanarySet:
    rng = np.random.default_rng(0)
    canaries = tuple(
        Canary(
            f"canary-{n}", tuple(f"i{i}" for i in rng.choice(ITEMS, 6, replace=False)), n % 2 == 0, "u0", (n // 2) % 2
        )
        for n in range(20)
    )
    return CanarySet(canaries, "user", 0)


def test_scores_follow_what_training_did_to_the_canaries_items():
    canaries = canary_set()
    shape = RunConfig().model
    start = dict(shared_arrays(build_model(shape, ITEMS, {})))
    index = {f"i{i}": i for i in range(ITEMS)}
    fit = fold_in_scorer(canaries, shape, ITEMS, {}, index)
    updates = {platform: {name: np.zeros_like(value) for name, value in start.items()} for platform in (0, 1)}
    for canary in canaries.canaries:
        if canary.included:  # training raised the canary's items on its platform
            for item in canary.training_items:
                updates[canary.platform][BIAS][index[item]] += 2.0
    included = canaries.included
    white_box = coordinator_scores(canaries, {1: (start, updates)}, fit)
    assert white_box[included].mean() > white_box[~included].mean() + 0.1
    secure = coordinator_scores(canaries, {1: (start, updates)}, fit, secure=True)
    assert secure[included].mean() > secure[~included].mean()
    released = {name: start[name] + updates[0][name] + updates[1][name] for name in start}
    black_box = fit(released)
    assert black_box[included].mean() > black_box[~included].mean() + 0.2
