"""A differentially private item subspace by the noisy power method (Hardt & Price 2014).

The federation estimates the top-``k`` eigenvectors of the item Gram matrix
``G = sum_u x_u x_u^T`` over every platform's users without any platform sending a user-side
value or the ``n_items x n_items`` matrix itself: the coordinator holds an orthonormal basis
``X_t`` (``n_items x k``), each platform answers with ``Y_p = sum_u x_u (x_u^T X_t)`` over its own
users plus Gaussian noise, and the coordinator orthonormalises the sum. Each message is
``n_items x k`` floats, about the size of the shared model.

**Sensitivity of one user is at most 1 (Frobenius).** A user's row ``x_u`` is the indicator of
their training items scaled to unit L2 norm. Adding or removing that user changes ``Y_p`` by the
rank-one matrix ``x_u (X^T x_u)^T``, whose Frobenius norm is ``||x_u|| * ||X^T x_u||``. For
``||X||_2 <= 1`` (true of an orthonormal ``X``) ``||X^T x_u|| <= ||x_u||``, so the change is at most
``||x_u||^2 = 1``. The platform enforces ``||X||_2 <= 1`` itself (:func:`bounded_basis`), so a
coordinator that sends a longer basis gains nothing. Every iteration is therefore a Gaussian
mechanism of L2 sensitivity 1 on the platform's users; ``T`` iterations compose ``T`` of them
adaptively at sample rate 1, which the platform's :class:`PrivacyLedger` accounts exactly as it
accounts DP-SGD steps (noise multiplier ``sigma``, rate 1, one step per iteration).

**One release of the Gram matrix instead.** :meth:`PlatformPowerStep.gram_reply` sends the
platform's whole ``G_p`` once, noised on its upper triangle and mirrored, and
:func:`gram_subspace` takes the top eigenvectors of the noised sum: one Gaussian step, where ``T``
power iterations pay for ``T``. The released vector is the diagonal scaled by ``1/sqrt(2)`` and the
strict upper triangle; one user's share of it has squared norm
``sum_i x_i^4 / 2 + sum_{i<j} x_i^2 x_j^2 = (sum_i x_i^2)^2 / 2 = 1/2``, so its sensitivity is
``1/sqrt(2)`` and the noise the ledger calibrates for sensitivity 1 is scaled by ``1/sqrt(2)``:
``sigma / sqrt(2)`` off the diagonal and ``sigma`` on it (once the diagonal is scaled back).
The price is the message: ``n_items (n_items + 1) / 2`` floats, once per run (27 MB for
MovieLens-1M's 3,706 items), against ``n_items x k`` per iteration.

**Local or distributed noise.** With local noise each platform adds ``sigma`` and every single
``Y_p`` is private on its own. With distributed noise under secure aggregation each platform adds
the share ``sigma x noise_share`` of ``crossfed.shared.privacy.dp_sgd.noise_share``
(``1 / sqrt(min-platforms - tolerated-colluders)``), so the sum the coordinator unmasks carries at
least ``sigma`` from honest platforms; :meth:`PrivacyLedger.epsilon_alone` prices one share alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from crossfed.shared.config import ConfigError
from crossfed.shared.data.interactions import Interactions
from crossfed.shared.privacy.ledger import BudgetExceeded, PrivacyLedger

logger = logging.getLogger(__name__)


def unit_rows(interactions: Interactions, max_items: int = 0, rng: np.random.Generator | None = None) -> sp.csr_matrix:
    """Each user's distinct items as a binary row scaled to unit L2 norm (users x items).

    Unit rows are what bound one user's share of ``G`` to Frobenius norm 1 however many items
    they have. ``max_items`` > 0 keeps a uniformly drawn subset of that many items per user
    (``rng`` draws it), which weighs heavy users' items more evenly; 0 keeps every item.
    """
    shape = (interactions.num_users, interactions.num_items)
    ones = np.ones(len(interactions.users), np.float64)
    rows = sp.csr_matrix((ones, (interactions.users, interactions.items)), shape=shape)
    rows.sum_duplicates()
    rows.data[:] = 1.0
    if max_items > 0:
        rows = _capped(rows, max_items, rng or np.random.default_rng())
    norms = np.sqrt(np.asarray(rows.sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ rows)


def _capped(rows: sp.csr_matrix, max_items: int, rng: np.random.Generator) -> sp.csr_matrix:
    kept = []
    for user in range(rows.shape[0]):
        items = rows.indices[rows.indptr[user] : rows.indptr[user + 1]]
        kept.append(rng.choice(items, max_items, replace=False) if len(items) > max_items else items)
    indptr = np.concatenate([[0], np.cumsum([len(items) for items in kept])])
    indices = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=rows.shape)


def bounded_basis(basis: np.ndarray) -> np.ndarray:
    """``basis`` scaled so its spectral norm is at most 1: what keeps one user's sensitivity at 1.

    An honest coordinator's orthonormal basis passes unchanged (up to rounding); a longer one,
    which would amplify every user's contribution past the noise, is shrunk before use.
    """
    largest = float(np.linalg.norm(basis, ord=2))
    return basis / largest if largest > 1.0 else basis


def gram_product(rows: sp.csr_matrix, basis: np.ndarray) -> np.ndarray:
    """``sum_u x_u (x_u^T basis)``: this platform's part of ``G @ basis``, without forming ``G``."""
    return np.asarray(rows.T @ (rows @ basis))


def orthonormal(matrix: np.ndarray) -> np.ndarray:
    """An orthonormal basis of ``matrix``'s columns (QR), signs fixed so the diagonal of R is >= 0."""
    q, r = np.linalg.qr(matrix)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def initial_basis(num_items: int, rank: int, seed: int) -> np.ndarray:
    """The coordinator's seeded random orthonormal start; public, so it costs no privacy."""
    return orthonormal(np.random.default_rng(seed).standard_normal((num_items, rank)))


def subspace_ledger(
    epsilon: float, delta: float, iterations: int, *, population: int, accountant: str = "rdp", noise_share: float = 1.0
) -> PrivacyLedger:
    """A platform's ledger for ``iterations`` power steps, its noise calibrated to ``(epsilon, delta)``.

    Each iteration is one Gaussian mechanism at sample rate 1, so the calibration is the one the
    DP-SGD ledger uses with rate 1 and one step per "round". ``epsilon`` = inf calibrates no noise
    (the same mechanism, for reference). ``delta`` must be below ``1/population`` (the platform's
    users), as for DP-SGD.
    """
    if delta >= 1.0 / population:
        raise ConfigError(
            f"config key 'delta' = {delta} is out of range: expected well below 1/n for this platform's "
            "number n of privacy units"
        )
    ledger = PrivacyLedger("user", epsilon, delta, accountant, noise_share=noise_share)
    ledger.calibrate(sample_rate=1.0, steps_per_round=1, planned_rounds=iterations, noise_multiplier=0.0)
    return ledger


@dataclass
class PlatformPowerStep:
    """One platform's side of the noisy power method: its unit user rows, its ledger, its noise.

    Only :meth:`reply` produces anything that leaves the platform: ``Y_p``, never a user row or a
    per-user value. ``rng`` draws the noise; leave it unseeded (OS entropy) outside tests, since the
    coordinator knows the run's seed.
    """

    rows: sp.csr_matrix
    ledger: PrivacyLedger
    rng: np.random.Generator

    @property
    def noise_std(self) -> float:
        """The standard deviation this platform adds to every entry of ``Y_p``."""
        return float(self.ledger.noise_multiplier or 0.0) * self.ledger.noise_share

    def reply(self, basis: np.ndarray) -> np.ndarray:
        """``Y_p`` for the coordinator's ``basis``, noised; refuses (and sends nothing) past the budget."""
        self._spend()
        product = gram_product(self.rows, bounded_basis(basis))
        noise = self.rng.normal(0.0, self.noise_std, product.shape) if self.noise_std > 0 else 0.0
        return product + noise

    def gram_reply(self) -> np.ndarray:
        """This platform's ``G_p`` with symmetric noise, as one step of its ledger.

        The release is the diagonal over ``sqrt(2)`` and the strict upper triangle (the lower one
        repeats it): one user moves that vector by exactly ``1/sqrt(2)`` in L2, so the noise the
        ledger calibrates for sensitivity 1 is scaled by ``1/sqrt(2)`` - ``noise_std / sqrt(2)`` off
        the diagonal, ``noise_std`` on it once the diagonal is scaled back.
        """
        self._spend()
        gram = np.asarray((self.rows.T @ self.rows).todense())
        if self.noise_std > 0:
            upper = np.triu(self.rng.normal(0.0, self.noise_std / math.sqrt(2.0), gram.shape), 1)
            diagonal = self.rng.normal(0.0, self.noise_std, gram.shape[0])
            gram = gram + upper + upper.T + np.diag(diagonal)
        return gram

    def _spend(self) -> None:
        if not self.ledger.can_train_round():
            spent = self.ledger.epsilon(1)
            raise BudgetExceeded(f"another release would spend epsilon {spent:.3f} > budget {self.ledger.budget}")
        self.ledger.record_round([(float(self.ledger.noise_multiplier or 0.0), 1.0, 1)], keep=True)


def noisy_power_method(
    platforms: Sequence[PlatformPowerStep], num_items: int, rank: int, iterations: int, seed: int
) -> np.ndarray:
    """The coordinator's loop, in process: ``iterations`` rounds of reply, sum, orthonormalise.

    Returns the final orthonormal basis ``X_T`` (``num_items x rank``), the federation's item
    subspace. In a deployment the sum would be SecAgg+'s; here it is a plain sum of the replies.
    """
    if not 1 <= rank <= num_items:
        raise ConfigError(f"subspace rank {rank} is out of range: expected 1 to the number of items ({num_items})")
    basis = initial_basis(num_items, rank, seed)
    for iteration in range(1, iterations + 1):
        total = sum(platform.reply(basis) for platform in platforms)
        basis = orthonormal(np.asarray(total))
        logger.debug("power iteration %d of %d done", iteration, iterations)
    return basis


def gram_subspace(platforms: Sequence[PlatformPowerStep]) -> tuple[np.ndarray, np.ndarray]:
    """The coordinator's side of the one-release mechanism, in process: the noised sum's eigenpairs.

    Returns every eigenvector of the summed ``G`` (columns, largest eigenvalue first) and the
    eigenvalues, so the top ``k`` for any ``k`` are post-processing of the same single release.
    In a deployment the sum would be SecAgg+'s.
    """
    values, vectors = np.linalg.eigh(sum(platform.gram_reply() for platform in platforms))
    order = np.argsort(values)[::-1]
    return vectors[:, order], values[order]


def top_eigenvectors(gram: np.ndarray, rank: int) -> np.ndarray:
    """The exact top-``rank`` eigenvectors of a symmetric ``gram``: what the power method estimates."""
    values, vectors = np.linalg.eigh(gram)
    return vectors[:, np.argsort(values)[::-1][:rank]]


def subspace_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the largest principal angle between the column spaces of two orthonormal bases."""
    overlap = np.linalg.svd(a.T @ b, compute_uv=False)
    return math.sqrt(max(0.0, 1.0 - float(overlap.min()) ** 2))
