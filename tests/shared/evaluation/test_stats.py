import numpy as np

from crossfed.shared.evaluation.stats import paired_bootstrap


def test_interval_brackets_the_mean_and_detects_a_clear_gain():
    rng = np.random.default_rng(0)
    gain = rng.binomial(1, 0.7, 400) - rng.binomial(1, 0.5, 400)
    interval = paired_bootstrap(gain, seed=1)
    assert interval.low < interval.mean < interval.high
    assert interval.significantly_positive and not interval.significantly_negative


def test_no_difference_is_not_significant():
    same = np.zeros(200)
    same[:10], same[10:20] = 1, -1
    interval = paired_bootstrap(same, seed=2)
    assert interval.low <= 0 <= interval.high
    assert not interval.significantly_negative and not interval.significantly_positive
