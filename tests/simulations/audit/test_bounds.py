"""The one-run audit's statistics: the epsilon lower bound (Steinke et al. 2023), AUROC, TPR at 1 % FPR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossfed.simulations.audit.bounds import (
    GUESS_FRACTIONS,
    audit_bound,
    auroc,
    ceiling,
    epsilon_lower_bound,
    p_value,
    tpr_at_fpr,
)


@pytest.mark.parametrize(("canaries", "paper"), [(200, 4.2), (1000, 5.8)])
def test_all_guesses_right_reach_the_papers_ceiling(canaries, paper):
    # Steinke et al.: with every one of m canaries guessed right, 95 % confidence allows about 4.2 (m = 200)
    # and 5.8 (m = 1,000).
    assert epsilon_lower_bound(canaries, canaries, canaries) == pytest.approx(paper, abs=0.05)


def test_delta_and_fewer_guesses_lower_the_bound():
    assert epsilon_lower_bound(1000, 1000, 1000, delta=1e-5) < epsilon_lower_bound(1000, 1000, 1000)
    assert epsilon_lower_bound(1000, 100, 100) < epsilon_lower_bound(1000, 1000, 1000)
    assert epsilon_lower_bound(1000, 100, 50) == 0.0  # chance accuracy proves nothing


def test_p_value_is_the_binomial_tail_without_delta():
    # Two guesses both right under pure 0-DP (a fair coin): probability 1/4.
    assert p_value(10, 2, 2, 0.0) == pytest.approx(0.25)
    assert p_value(10, 2, 2, 0.0, delta=1e-3) > 0.25
    with pytest.raises(ValueError):
        p_value(10, 2, 3, 1.0)


def test_ceiling_pays_for_choosing_the_number_of_guesses():
    assert 5.0 < ceiling(1000) < epsilon_lower_bound(1000, 1000, 1000)
    assert ceiling(200) < ceiling(1000)


def randomised_response_scores(epsilon: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of an epsilon-DP mechanism per canary: the coin, told truthfully with probability e^eps / (1 + e^eps)."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    truthful = rng.random(m) < 1.0 / (1.0 + math.exp(-epsilon))
    return np.where(truthful, included, ~included) + 0.01 * rng.random(m), included


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 2.0])
def test_bound_stays_below_the_epsilon_of_a_dp_mechanism(epsilon):
    for seed in range(5):
        scores, included = randomised_response_scores(epsilon, 1000, seed)
        assert audit_bound(scores, included).epsilon_lower_bound <= epsilon


def test_bound_detects_a_mechanism_weaker_than_claimed():
    scores, included = randomised_response_scores(4.0, 1000, 0)
    assert audit_bound(scores, included).epsilon_lower_bound > 2.0


def test_perfect_scores_reach_the_ceiling_and_noise_reaches_nothing():
    rng = np.random.default_rng(0)
    included = np.arange(1000) % 2 == 0
    assert audit_bound(included.astype(float), included).epsilon_lower_bound == pytest.approx(ceiling(1000))
    assert audit_bound(rng.random(1000), included).epsilon_lower_bound < 0.5
    assert len(GUESS_FRACTIONS) > 1


def test_auroc_and_tpr_at_low_fpr():
    included = np.array([True, True, False, False])
    assert auroc(np.array([3.0, 2.0, 1.0, 0.0]), included) == 1.0
    assert auroc(np.array([0.0, 1.0, 2.0, 3.0]), included) == 0.0
    assert auroc(np.zeros(4), included) == 0.5
    scores = np.concatenate([np.arange(100, 200), np.arange(100)]).astype(float)
    members = np.arange(200) < 100
    assert tpr_at_fpr(scores, members) == 1.0
    scores[100] = 1000.0  # one excluded canary above every member: at 1 % FPR (1 of 100) still all
    assert tpr_at_fpr(scores, members) == 1.0
    scores[101] = 1000.0  # two: the threshold admits only one
    assert tpr_at_fpr(scores, members) == 0.0
