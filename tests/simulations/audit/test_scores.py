"""The adversaries' scores rank trained canaries above untrained ones when the parameters show it."""

from __future__ import annotations

import numpy as np

from crossfed.shared.config import RunConfig
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import shared_arrays
from crossfed.simulations.audit.canaries import Canary, CanarySet
from crossfed.simulations.audit.scores import (
    coordinator_scores,
    fold_in_scorer,
    own_item_coordinator_scores,
    own_item_model_scores,
)

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


def own_items_set() -> tuple[CanarySet, dict[str, int]]:
    """Twenty own-items canaries of three audited items each, on platforms 0 and 1, every other one included."""
    canaries = tuple(
        Canary(
            f"canary-{n}",
            (*(f"canary-item-{n}-{j}" for j in range(3)), "i0", "i1"),
            n % 2 == 0,
            "u0",
            (n // 2) % 2,
            ("i2", "i3", "i4"),
        )
        for n in range(20)
    )
    index = {f"i{i}": i for i in range(ITEMS)}
    index.update({f"canary-item-{n}-{j}": ITEMS + 3 * n + j for n in range(20) for j in range(3)})
    return CanarySet(canaries, "user", 0, "own-items"), index


def test_own_item_scores_read_the_rise_of_the_canarys_own_item_biases():
    canaries, index = own_items_set()
    rng = np.random.default_rng(1)
    catalog = len(index)
    start = {BIAS: np.zeros((catalog, 1), np.float32), "shared.w": np.zeros(3, np.float32)}
    # Every item is pushed down by other users' sampled negatives; an included canary's positives lift its own items.
    updates = {p: {BIAS: -rng.random((catalog, 1)).astype(np.float32) * 0.1, "shared.w": np.ones(3)} for p in (0, 1)}
    for canary in canaries.canaries:
        if canary.included:
            for item in canary.training_items:
                updates[canary.platform][BIAS][index[item]] += 1.0
    included = canaries.included
    for secure in (False, True):
        scores = own_item_coordinator_scores(canaries, {1: (start, updates)}, index, secure)
        assert scores[included].min() > scores[~included].max()
    # A canary is read in its own platform's update only: the other platform's rows are not its evidence.
    swapped = {0: updates[1], 1: updates[0]}
    assert own_item_coordinator_scores(canaries, {1: (start, swapped)}, index)[included].max() < 0.5
    released = {name: start[name] + (updates[0][name] + updates[1][name]) / 2 for name in start}
    scores = own_item_model_scores(canaries, released, index)
    assert scores[included].min() > scores[~included].max()
