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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.interactions import Interactions
from crossfed.shared.errors import CrossfedError
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
    return _calibrated(epsilon, delta, iterations, accountant, noise_share, 0.0)


def _calibrated(
    epsilon: float, delta: float, iterations: int, accountant: str, noise_share: float, noise_multiplier: float
) -> PrivacyLedger:
    ledger = PrivacyLedger("user", epsilon, delta, accountant, noise_share=noise_share)
    ledger.calibrate(sample_rate=1.0, steps_per_round=1, planned_rounds=iterations, noise_multiplier=noise_multiplier)
    return ledger


def release_ledger(config: RunConfig, population: int) -> PrivacyLedger:
    """A platform's ledger for the one Gram release of a run, from the run's privacy settings.

    ``epsilon``, ``delta`` and ``accountant`` as for DP-SGD; an explicit ``noise-multiplier`` is used as
    given; the noise share follows ``noise-mode`` (:func:`crossfed.shared.privacy.dp_sgd.noise_share`).
    """
    privacy = config.privacy
    ledger = subspace_ledger(privacy.epsilon, privacy.delta, 1, population=population, accountant=privacy.accountant)
    if privacy.noise_multiplier > 0:
        ledger = _calibrated(privacy.epsilon, privacy.delta, 1, privacy.accountant, 1.0, privacy.noise_multiplier)
    ledger.noise_share = _noise_share(config)
    return ledger


def release_noise_std(config: RunConfig) -> float:
    """The standard deviation one platform adds to its release before scaling (σ x its noise share).

    A function of the public settings alone, so the coordinator and every platform derive the same
    SecAgg+ ranges from it (:func:`crossfed.shared.protocol.secure_aggregation.release_plan`).
    """
    privacy = config.privacy
    ledger = _calibrated(privacy.epsilon, privacy.delta, 1, privacy.accountant, 1.0, privacy.noise_multiplier)
    return float(ledger.noise_multiplier or 0.0) * _noise_share(config)


def _noise_share(config: RunConfig) -> float:
    from crossfed.shared.privacy.dp_sgd import noise_share  # on use: it imports opacus

    return noise_share(config)


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
    #: Price the budget on this platform's own noise share alone (it does not trust its peers' shares).
    own_noise_only: bool = False

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
        """This platform's ``G_p`` with symmetric noise, as one step of its ledger: :meth:`release` unpacked.

        The noise is ``noise_std / sqrt(2)`` off the diagonal and ``noise_std`` on it (see :meth:`release`).
        """
        return gram_from_release(self.release(), self.rows.shape[1])

    def release(self, spent: Callable[[PrivacyLedger], None] | None = None) -> np.ndarray:
        """The one vector this mechanism sends: ``G_p``'s diagonal over ``sqrt(2)`` and strict upper triangle, noised.

        One user moves that vector by exactly ``1/sqrt(2)`` in L2, so the noise the ledger calibrates
        for sensitivity 1 is scaled by ``1/sqrt(2)``: every entry gets ``noise_std / sqrt(2)``, which is
        ``noise_std`` on the diagonal once it is scaled back. Spends one step of the ledger first and
        refuses (computing nothing) past the budget; ``spent`` is called with the ledger once the step
        is recorded and before the release exists, so a platform can put its ledger on disk first.
        """
        self._spend()
        if spent is not None:
            spent(self.ledger)
        vector = release_vector(np.asarray((self.rows.T @ self.rows).todense()))
        if self.noise_std > 0:
            vector += self.rng.normal(0.0, self.noise_std / math.sqrt(2.0), vector.shape)
        return vector

    def _spend(self) -> None:
        if not self.ledger.can_train_round(own_noise_only=self.own_noise_only):
            spent = self.ledger.epsilon_alone(1) if self.own_noise_only else self.ledger.epsilon(1)
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


def release_length(num_items: int) -> int:
    """Entries of one release for ``num_items`` items: the diagonal and the strict upper triangle."""
    return num_items * (num_items + 1) // 2


def release_vector(gram: np.ndarray) -> np.ndarray:
    """A symmetric ``gram`` as its release: the diagonal over ``sqrt(2)``, then the strict upper triangle by rows."""
    upper = np.triu_indices(gram.shape[0], 1)
    return np.concatenate([np.diagonal(gram) / math.sqrt(2.0), gram[upper]]).astype(np.float64)


def gram_from_release(vector: np.ndarray, num_items: int) -> np.ndarray:
    """The symmetric matrix a release (or a sum of releases) stands for: the inverse of :func:`release_vector`."""
    if vector.shape != (release_length(num_items),):
        raise ValueError(f"a release for {num_items} items has {release_length(num_items)} entries, not {vector.shape}")
    gram = np.zeros((num_items, num_items), np.float64)
    upper = np.triu_indices(num_items, 1)
    gram[upper] = vector[num_items:]
    gram += gram.T
    gram[np.diag_indices(num_items)] = vector[:num_items] * math.sqrt(2.0)
    return gram


def release_subspace(total: np.ndarray, num_items: int, rank: int) -> np.ndarray:
    """The coordinator's side of the one-release mechanism: the top-``rank`` eigenvectors of the summed releases.

    Post-processing of the release, so it costs no privacy; columns are ordered by eigenvalue,
    largest first, so any platform's top ``k`` of them are the first ``k`` columns.
    """
    if not 1 <= rank <= num_items:
        raise ConfigError(f"subspace rank {rank} is out of range: expected 1 to the number of items ({num_items})")
    values, vectors = np.linalg.eigh(gram_from_release(total, num_items))
    return np.ascontiguousarray(vectors[:, np.argsort(values)[::-1][:rank]])


class BasisRefused(CrossfedError, ValueError):
    """The item basis the coordinator sent is not an orthonormal ``items x k`` matrix of finite numbers."""


#: How far ``V^T V`` may be from the identity (largest entry) for a basis to count as orthonormal: float64
#: eigenvectors are within 1e-12, a float32 round trip within 1e-6.
ORTHONORMAL_TOLERANCE = 1e-4


def checked_basis(basis: np.ndarray, num_items: int, max_rank: int) -> np.ndarray:
    """The coordinator's basis if it is what the mechanism promises, bounded by :func:`bounded_basis`; else refused.

    A platform serves ``h_u V V^T`` standardised per user, which assumes ``V`` orthonormal; a basis of
    the wrong shape, with a non-finite entry, or whose columns are not orthonormal within
    :data:`ORTHONORMAL_TOLERANCE` is refused (:class:`BasisRefused`) rather than served.
    """
    basis = np.asarray(basis)
    if basis.ndim != 2 or basis.shape[0] != num_items or not 1 <= basis.shape[1] <= max_rank:
        raise BasisRefused(f"item basis of shape {basis.shape}: expected ({num_items}, k) with 1 <= k <= {max_rank}")
    if not np.issubdtype(basis.dtype, np.floating) or not np.isfinite(basis).all():
        raise BasisRefused("item basis holds a value that is not a finite float")
    basis = basis.astype(np.float64)
    deviation = float(np.abs(basis.T @ basis - np.eye(basis.shape[1])).max())
    if deviation > ORTHONORMAL_TOLERANCE:
        raise BasisRefused(f"item basis is not orthonormal: |V^T V - I| reaches {deviation:.3g}")
    return bounded_basis(basis)


def top_eigenvectors(gram: np.ndarray, rank: int) -> np.ndarray:
    """The exact top-``rank`` eigenvectors of a symmetric ``gram``: what the power method estimates."""
    values, vectors = np.linalg.eigh(gram)
    return vectors[:, np.argsort(values)[::-1][:rank]]


def subspace_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the largest principal angle between the column spaces of two orthonormal bases."""
    overlap = np.linalg.svd(a.T @ b, compute_uv=False)
    return math.sqrt(max(0.0, 1.0 - float(overlap.min()) ** 2))
