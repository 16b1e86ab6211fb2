"""The audit catches a mechanism that does not deliver the epsilon its ledger reports.

White-box canaries of the kind the coordinator sees: each canary, when included, adds its own
clipped contribution (one coordinate, the "Dirac" canaries of Steinke et al.) to one released
sum, noised with the multiplier crossfed's :class:`PrivacyLedger` calibrates for epsilon = 1.
The coordinator's score of a canary is its coordinate of the release. A faithful mechanism
stays under the claim; switching the noise off, or skipping the clip, while the ledger still
reports epsilon = 1 is caught.
"""

from __future__ import annotations

import numpy as np
import pytest

from crossfed.shared.privacy.ledger import PrivacyLedger
from crossfed.simulations.audit.bounds import audit_bound

CANARIES = 1000
CLIP = 1.0
DELTA = 1e-5


def released_sum(included: np.ndarray, contribution: float, noise_multiplier: float, seed: int) -> np.ndarray:
    """One DP-SGD-style release: each included canary's contribution clipped to CLIP, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    clipped = np.minimum(contribution, CLIP)
    return included * clipped + noise_multiplier * CLIP * rng.standard_normal(len(included))


@pytest.fixture(scope="module")
def ledger() -> PrivacyLedger:
    """A ledger for epsilon = 1 over one full-batch step, as a platform's would be calibrated."""
    ledger = PrivacyLedger("user", 1.0, DELTA)
    ledger.calibrate(sample_rate=1.0, steps_per_round=1, planned_rounds=1, noise_multiplier=0.0)
    ledger.record_round([(ledger.noise_multiplier, 1.0, 1)])
    assert ledger.epsilon() == pytest.approx(1.0, abs=0.05)
    return ledger


@pytest.fixture(scope="module")
def included() -> np.ndarray:
    return np.random.default_rng(0).random(CANARIES) < 0.5


def test_a_faithful_mechanism_stays_under_its_claim(ledger, included):
    for seed in range(3):
        scores = released_sum(included, 1.0, ledger.noise_multiplier, seed)
        assert audit_bound(scores, included, DELTA).epsilon_lower_bound <= ledger.epsilon()


def test_noise_switched_off_is_caught(ledger, included):
    scores = released_sum(included, 1.0, 0.0, seed=0)  # the ledger still says epsilon = 1
    assert audit_bound(scores, included, DELTA).epsilon_lower_bound > ledger.epsilon()


def test_clipping_skipped_is_caught(ledger, included):
    unclipped = included * 30.0 + ledger.noise_multiplier * CLIP * np.random.default_rng(0).standard_normal(CANARIES)
    assert audit_bound(unclipped, included, DELTA).epsilon_lower_bound > ledger.epsilon()
