"""From canary scores to an epsilon lower bound, AUROC and TPR at 1 % FPR.

The bound is the one-run audit of Steinke, Nasr and Jagielski ("Privacy auditing with one (1)
training run", NeurIPS 2023): every canary is included independently with probability 1/2,
the auditor guesses "included" for the highest scores and "excluded" for the lowest and
abstains on the rest. Under (epsilon, delta)-DP the number of right guesses is dominated by a
binomial with success probability e^epsilon / (1 + e^epsilon), plus a delta term (their
Theorem 3.1 and the p-value of their Algorithm 2); the lower bound is the largest epsilon that
this test rejects at the chosen confidence. scipy computes the binomial tails.

How many guesses to make is fixed before the scores are seen (:data:`GUESS_FRACTIONS`), and
the confidence is split across those choices (Bonferroni), so the reported bound holds at the
stated confidence whichever choice wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Fractions of the canaries the auditor guesses on (half "included", half "excluded").
GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)
CONFIDENCE = 0.95
_SEARCH_STEPS = 60


def p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """Probability of at least ``v`` right out of ``r`` guesses on ``m`` canaries under (epsilon, delta)-DP.

    The binomial tail at the accuracy of epsilon-randomised response, plus ``2 m delta`` times
    the largest average of the binomial's mass just below ``v`` (Steinke et al., Algorithm 2).
    """
    if not 0 <= v <= r <= m:
        raise ValueError(f"expected 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"expected epsilon >= 0 and 0 <= delta <= 1, got {epsilon}, {delta}")
    accuracy = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(stats.binom.sf(v - 1, r, accuracy))
    if delta == 0.0 or v == 0:
        return min(tail, 1.0)
    below = stats.binom.pmf(np.arange(v - 1, -1, -1), r, accuracy)  # mass at v-1, v-2, ..., 0
    averages = np.cumsum(below) / np.arange(1, v + 1)
    return min(tail + 2.0 * m * delta * float(averages.max()), 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float = 0.0, confidence: float = CONFIDENCE) -> float:
    """The largest epsilon at which ``v`` right of ``r`` guesses is too unlikely (bisection on :func:`p_value`)."""
    level = 1.0 - confidence
    if p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) < level:
        high *= 2.0
        if high > 1e3:
            return math.inf
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2.0
        if p_value(m, r, v, middle, delta) < level:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditGuess:
    """The best of the pre-declared guess counts: how many guesses, how many right, the bound."""

    guesses: int
    correct: int
    epsilon_lower_bound: float


def audit_bound(
    scores: np.ndarray, included: np.ndarray, delta: float = 0.0, confidence: float = CONFIDENCE
) -> AuditGuess:
    """Guess "included" for the top and "excluded" for the bottom scores; the best bound over :data:`GUESS_FRACTIONS`.

    Each candidate is tested at ``1 - (1 - confidence) / len(GUESS_FRACTIONS)``, so the maximum
    holds at ``confidence``. Ties are broken by canary order, which is independent of inclusion.
    """
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    m = len(scores)
    per_test = 1.0 - (1.0 - confidence) / len(GUESS_FRACTIONS)
    order = np.argsort(-scores, kind="stable")
    best = AuditGuess(0, 0, 0.0)
    for fraction in GUESS_FRACTIONS:
        half = max(1, round(fraction * m / 2))
        if 2 * half > m:
            half = m // 2
        top, bottom = order[:half], order[m - half :]
        correct = int(included[top].sum() + (~included[bottom]).sum())
        bound = epsilon_lower_bound(m, 2 * half, correct, delta, per_test)
        if bound > best.epsilon_lower_bound:
            best = AuditGuess(2 * half, correct, bound)
    return best


def ceiling(m: int, delta: float = 0.0, confidence: float = CONFIDENCE) -> float:
    """The bound ``m`` canaries allow at best: every canary guessed and every guess right.

    At a single test (no split of the confidence) this is about 4.2 for 200 canaries and
    5.8 for 1,000; :func:`audit_bound` pays a little for choosing its guess count.
    """
    per_test = 1.0 - (1.0 - confidence) / len(GUESS_FRACTIONS)
    return epsilon_lower_bound(m, m - m % 2, m - m % 2, delta, per_test)


def auroc(scores: np.ndarray, included: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating included from excluded canaries (ties count half)."""
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    positives, negatives = int(included.sum()), int((~included).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = stats.rankdata(scores)
    return float((ranks[included].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def tpr_at_fpr(scores: np.ndarray, included: np.ndarray, fpr: float = 0.01) -> float:
    """The share of included canaries scored above every threshold that admits at most ``fpr`` of the excluded."""
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    excluded_scores = np.sort(scores[~included])[::-1]
    if len(excluded_scores) == 0 or included.sum() == 0:
        return math.nan
    allowed = math.floor(fpr * len(excluded_scores))
    threshold = excluded_scores[allowed] if allowed < len(excluded_scores) else -math.inf
    return float((scores[included] > threshold).mean())
