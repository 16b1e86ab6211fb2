"""Differential privacy for everything a platform sends: DP-SGD with Opacus, one ledger per platform.

Layers, in the spirit of Opacus' own ``PrivacyEngine``:

* ``ledger``   - the platform's accountant for the whole run (persisted, restart-safe) and
                 the noise calibration from a target (epsilon, delta);
* ``bags``     - one user's positives and sampled negatives as one DP sample;
* ``clipping`` - the sum of per-sample clipped gradients in one backward pass;
* ``dp_sgd``   - a private local round: user level (refresh the user's own embedding with
                 the shared part frozen, then a clipped, noised step on the shared part) or
                 interaction level (Opacus over the whole model).
* ``item_subspace`` - a second mechanism: the top-k item subspace of the federation's item Gram
                 matrix by the noisy power method, accounted in the same ledger.
"""

from crossfed.shared.privacy.ledger import BudgetExceeded, PrivacyLedger

__all__ = ["BudgetExceeded", "PrivacyLedger"]
