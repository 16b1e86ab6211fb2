"""The DP item subspace: one user's sensitivity, convergence, calibration, noise shares, and its served model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.interactions import Interactions, leave_last_out, platform_view
from crossfed.shared.privacy.dp_sgd import noise_share
from crossfed.shared.privacy.item_subspace import (
    BasisRefused,
    PlatformPowerStep,
    bounded_basis,
    checked_basis,
    gram_from_release,
    gram_product,
    gram_subspace,
    initial_basis,
    noisy_power_method,
    orthonormal,
    release_ledger,
    release_length,
    release_noise_std,
    release_subspace,
    subspace_distance,
    subspace_ledger,
    top_eigenvectors,
    unit_rows,
)
from crossfed.shared.privacy.ledger import BudgetExceeded
from crossfed.shared.protocol.secure_aggregation import RELEASE_ENTRY_BOUND, release_plan
from crossfed.shared.subspace_serving import SubspaceScores, chosen_weight, ranked, served_scores
from crossfed.shared.trainer import PlatformTrainer, alone_model

NUM_ITEMS = 40


def _interactions(num_users: int, seed: int, per_user: int = 12) -> Interactions:
    """Users whose items come from two overlapping blocks, so G has a clear top eigenspace."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(num_users):
        block = rng.integers(2) * 15
        chosen = rng.choice(np.arange(block, block + 25), per_user, replace=False)
        users.extend([user] * per_user)
        items.extend(chosen.tolist())
    users_array, items_array = np.array(users), np.array(items)
    return Interactions(users_array, items_array, np.zeros(len(users)), num_users, NUM_ITEMS)


def _noiseless_step(rows, epsilon: float = math.inf) -> PlatformPowerStep:
    ledger = subspace_ledger(epsilon, 1e-5, 3, population=1000)
    return PlatformPowerStep(rows, ledger, np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rank=st.integers(1, 8),
    items_of_user=st.integers(1, NUM_ITEMS),
    scale=st.floats(0.1, 5.0),
)
def test_adding_one_user_changes_the_reply_by_at_most_one_in_frobenius_norm(seed, rank, items_of_user, scale):
    rng = np.random.default_rng(seed)
    others = unit_rows(_interactions(20, seed))
    own = rng.choice(NUM_ITEMS, items_of_user, replace=False)
    one = unit_rows(Interactions(np.zeros(items_of_user, np.int64), own, np.zeros(items_of_user), 1, NUM_ITEMS))
    # Any basis the coordinator may send, orthonormal or not: the platform bounds it before use.
    basis = bounded_basis(rng.standard_normal((NUM_ITEMS, rank)) * scale)
    with_user = gram_product(sp.vstack([others, one]).tocsr(), basis)
    without = gram_product(others, basis)
    assert np.linalg.norm(with_user - without) <= 1.0 + 1e-9


def test_unit_rows_have_unit_norm_and_the_cap_keeps_that_many_items():
    interactions = _interactions(30, 1)
    rows = unit_rows(interactions)
    assert np.allclose(np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel()), 1.0)
    capped = unit_rows(interactions, max_items=5, rng=np.random.default_rng(0))
    assert (np.diff(capped.indptr) == 5).all()
    assert np.allclose(np.sqrt(np.asarray(capped.multiply(capped).sum(axis=1)).ravel()), 1.0)


def test_noiseless_power_iterations_converge_to_the_top_eigenvectors_of_the_gram_matrix():
    platforms = [unit_rows(_interactions(50, seed)) for seed in range(3)]
    gram = sum((rows.T @ rows).toarray() for rows in platforms)
    basis = noisy_power_method([_noiseless_step(rows) for rows in platforms], NUM_ITEMS, 3, 400, seed=0)
    assert np.allclose(basis.T @ basis, np.eye(3), atol=1e-10)
    assert subspace_distance(basis, top_eigenvectors(gram, 3)) < 1e-4
    # One iteration from a random start is not there yet: the test can tell convergence apart.
    one = noisy_power_method([_noiseless_step(rows) for rows in platforms], NUM_ITEMS, 3, 1, seed=0)
    assert subspace_distance(one, top_eigenvectors(gram, 3)) > 1e-2


@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_calibrated_noise_meets_the_budget_and_grows_with_the_iterations(epsilon):
    sigmas = []
    for iterations in (1, 2, 4):
        ledger = subspace_ledger(epsilon, 1e-5, iterations, population=1000)
        step = PlatformPowerStep(unit_rows(_interactions(10, 0)), ledger, np.random.default_rng(0))
        basis = initial_basis(NUM_ITEMS, 2, 0)
        for _ in range(iterations):
            step.reply(basis)
        assert ledger.epsilon() <= epsilon * (1 + 1e-9)
        assert ledger.epsilon() >= epsilon - 0.1  # calibrated to the budget, not far below it
        sigmas.append(ledger.noise_multiplier)
        with pytest.raises(BudgetExceeded):
            step.reply(basis)  # the budget is spent: nothing more is sent
    assert sigmas == sorted(sigmas) and len(set(sigmas)) == 3


def test_delta_must_be_below_one_over_the_platforms_users():
    with pytest.raises(ConfigError, match="delta"):
        subspace_ledger(8.0, 1e-3, 2, population=1000)


def test_a_private_reply_carries_the_calibrated_noise_and_a_noiseless_one_is_priced_infinite():
    rows = unit_rows(_interactions(40, 2))
    basis = initial_basis(NUM_ITEMS, 8, 0)
    exact = gram_product(rows, basis)
    ledger = subspace_ledger(2.0, 1e-5, 1, population=1000)
    private = PlatformPowerStep(rows, ledger, np.random.default_rng())
    residual = private.reply(basis) - exact
    sigma = ledger.noise_multiplier
    assert sigma > 1.0
    assert abs(residual.std() / sigma - 1.0) < 0.2  # 320 entries: the noise really is there, at sigma
    noiseless = _noiseless_step(rows)
    assert np.allclose(noiseless.reply(basis), exact, rtol=0, atol=1e-12)
    assert noiseless.ledger.epsilon() == math.inf  # no noise is never priced as a finite epsilon


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), items_of_user=st.integers(1, NUM_ITEMS))
def test_one_user_moves_the_released_gram_matrix_by_at_most_one_over_root_two(seed, items_of_user):
    rng = np.random.default_rng(seed)
    others = _interactions(15, seed)
    newcomer = rng.choice(NUM_ITEMS, items_of_user, replace=False)
    joined = Interactions(
        np.concatenate([others.users, np.full(items_of_user, others.num_users)]),
        np.concatenate([others.items, newcomer]),
        np.zeros(len(others.users) + items_of_user),
        others.num_users + 1,
        NUM_ITEMS,
    )
    without, with_user = (_noiseless_step(unit_rows(i)).gram_reply() for i in (others, joined))
    change = with_user - without
    released = np.concatenate([np.diag(change) / math.sqrt(2.0), change[np.triu_indices(NUM_ITEMS, 1)]])
    assert np.linalg.norm(released) <= 1.0 / math.sqrt(2.0) + 1e-9


def test_the_gram_release_is_one_ledger_step_with_symmetric_noise_at_sigma():
    rows = unit_rows(_interactions(40, 3))
    exact = np.asarray((rows.T @ rows).todense())
    ledger = subspace_ledger(4.0, 1e-5, 1, population=1000)
    step = PlatformPowerStep(rows, ledger, np.random.default_rng())
    residual = step.gram_reply() - exact
    assert np.array_equal(residual, residual.T)
    # Sensitivity 1/sqrt(2) on (diagonal / sqrt(2), strict upper triangle): sigma / sqrt(2) on both.
    upper = residual[np.triu_indices(NUM_ITEMS, 1)]
    assert abs(upper.std() * math.sqrt(2.0) / ledger.noise_multiplier - 1.0) < 0.15  # 780 draws
    assert abs(np.diag(residual).std() / ledger.noise_multiplier - 1.0) < 0.5  # 40 draws, at sigma
    assert ledger.epsilon() <= 4.0 * (1 + 1e-9)
    with pytest.raises(BudgetExceeded):
        step.gram_reply()  # one release spends the whole budget


def test_a_noiseless_gram_release_gives_the_exact_top_eigenvectors_of_the_federation():
    platforms = [_noiseless_step(unit_rows(_interactions(30, seed))) for seed in (4, 5)]
    total = sum((p.rows.T @ p.rows).toarray() for p in platforms)
    vectors, values = gram_subspace(platforms)
    assert np.all(np.diff(values) <= 1e-12)  # largest first
    assert subspace_distance(vectors[:, :3], top_eigenvectors(total, 3)) < 1e-6


def test_distributed_shares_add_up_to_the_intended_noise_variance():
    config = RunConfig().replace(
        privacy_unit="user",
        secagg=True,
        noise_mode="distributed",
        noise_multiplier=1.0,
        min_platforms=5,
        tolerated_colluders=1,
    )
    share = noise_share(config)
    honest = 5 - 1
    rows = unit_rows(Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 1, 400))
    basis = initial_basis(400, 50, 0)
    ledgers = [subspace_ledger(4.0, 1e-5, 1, population=1000, noise_share=share) for _ in range(honest)]
    total = sum(
        PlatformPowerStep(rows, ledger, np.random.default_rng(seed)).reply(basis) for seed, ledger in enumerate(ledgers)
    )
    sigma = ledgers[0].noise_multiplier
    assert abs(total.var() / sigma**2 - 1.0) < 0.03  # 20,000 entries
    assert ledgers[0].epsilon_alone() > ledgers[0].epsilon()  # one share alone protects less


def test_a_longer_basis_is_shrunk_to_spectral_norm_one():
    basis = orthonormal(np.random.default_rng(0).standard_normal((NUM_ITEMS, 4)))
    assert np.array_equal(bounded_basis(basis), basis) or np.allclose(bounded_basis(basis), basis, atol=1e-12)
    assert np.linalg.norm(bounded_basis(10 * basis), ord=2) == pytest.approx(1.0)


def test_subspace_scores_are_standardised_over_the_catalog():
    history = _interactions(15, 3)
    basis = orthonormal(np.random.default_rng(1).standard_normal((NUM_ITEMS, 5)))
    scores = SubspaceScores(basis, history)(torch.arange(15), None).double()
    assert torch.allclose(scores.mean(dim=1), torch.zeros(15, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(scores.std(dim=1, unbiased=False), torch.ones(15, dtype=torch.float64), atol=1e-5)


SERVING = RunConfig().replace(
    embedding_dim=4, mlp_layers="8,4", batch_size=32, num_server_rounds=3, patience=1, eval_negatives=10
)


def test_weight_zero_serves_exactly_the_local_only_model(dataset):
    data = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    split = leave_last_out(data.interactions)
    local = alone_model(data, split, SERVING)
    basis = orthonormal(np.random.default_rng(0).standard_normal((data.num_items, 4)))
    subspace = SubspaceScores(basis, split.history("test"))
    served = ranked(served_scores(local, subspace, 0.0), data, split, SERVING, "test")
    alone = PlatformTrainer(data, SERVING).evaluate("test", local, full=False)
    assert np.array_equal(served.hits["sampled"], alone.hits["sampled"])
    assert np.array_equal(served.ndcgs["sampled"], alone.ndcgs["sampled"])
    heavy = ranked(served_scores(local, subspace, 100.0), data, split, SERVING, "test")
    assert not np.array_equal(heavy.ndcgs["sampled"], alone.ndcgs["sampled"])


def test_the_weight_is_chosen_on_validation_and_zero_when_the_subspace_hurts(dataset):
    data = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    split = leave_last_out(data.interactions)
    local = alone_model(data, split, SERVING)
    targets = split.targets("validation")
    held_out = np.unique(targets[targets >= 0])
    # A direction on every item but the validation items: it lifts all candidates above them.
    hostile = np.ones((data.num_items, 1))
    hostile[held_out, 0] = 0.0
    assert chosen_weight(local, orthonormal(hostile), data, split, SERVING, (0.0, 10.0, 100.0)) == 0.0
    # A direction on the validation items alone: every user's history projects on it with a
    # non-negative weight, so it lifts the held-out items, and the first weight that helps is taken.
    helpful = 1.0 - hostile
    assert chosen_weight(local, orthonormal(helpful), data, split, SERVING, (0.0, 10.0, 100.0)) == 10.0


def test_a_weight_that_wins_on_validation_by_chance_is_not_served(dataset):
    data = platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)
    split = leave_last_out(data.interactions)
    local = alone_model(data, split, SERVING)
    # A random direction (seed found by search) whose weight 1 ranks these 40 validation users a
    # little better than local-only: a gain the per-user bootstrap does not support.
    chance = orthonormal(np.random.default_rng(33).standard_normal((data.num_items, 2)))
    weights = (0.0, 1.0, 10.0)
    assert chosen_weight(local, chance, data, split, SERVING, weights, confidence=None) == 1.0
    assert chosen_weight(local, chance, data, split, SERVING, weights) == 0.0


def test_a_release_is_the_diagonal_over_sqrt2_and_the_upper_triangle_and_unpacks_to_the_matrix():
    rows = unit_rows(_interactions(30, 6))
    exact = np.asarray((rows.T @ rows).todense())
    vector = _noiseless_step(rows).release()
    assert vector.shape == (release_length(NUM_ITEMS),) == (NUM_ITEMS * (NUM_ITEMS + 1) // 2,)
    assert np.allclose(vector[:NUM_ITEMS], np.diag(exact) / math.sqrt(2.0))
    assert np.allclose(gram_from_release(vector, NUM_ITEMS), exact)
    top = release_subspace(vector, NUM_ITEMS, 3)
    assert subspace_distance(top, top_eigenvectors(exact, 3)) < 1e-6


def test_the_release_ledger_is_on_record_before_the_release_exists():
    ledger = subspace_ledger(4.0, 1e-5, 1, population=1000)
    step = PlatformPowerStep(unit_rows(_interactions(20, 7)), ledger, np.random.default_rng())
    seen = []
    step.release(spent=lambda spent: seen.append(sum(steps for _, _, steps in spent.history)))
    assert seen == [1]
    with pytest.raises(BudgetExceeded):
        step.release(spent=lambda _: pytest.fail("a refused release records nothing"))


def test_the_release_noise_and_its_secagg_range_follow_the_public_settings():
    local = RunConfig().replace(privacy_unit="user", user_dp_mechanism="gram-subspace", epsilon=8.0)
    distributed = local.replace(secagg=True, noise_mode="distributed", min_platforms=4)
    sigma = subspace_ledger(8.0, 1e-5, 1, population=1000).noise_multiplier
    assert math.isclose(release_noise_std(local), sigma)
    assert math.isclose(release_noise_std(distributed), sigma / 2.0)
    assert release_ledger(distributed, 1000).noise_share == 0.5
    plan = release_plan(release_noise_std(local))
    assert plan.clipping_range >= RELEASE_ENTRY_BOUND + 8 * sigma / math.sqrt(2.0)
    assert plan.step < 1e-3 * sigma  # quantisation far below the noise it sums


@pytest.mark.parametrize(
    ("basis", "problem"),
    [
        (np.eye(NUM_ITEMS)[:, :3].T, "shape"),  # items x k transposed
        (np.eye(NUM_ITEMS)[:, :9], "shape"),  # more columns than the largest rank
        (np.where(np.eye(NUM_ITEMS)[:, :3] == 1, np.nan, 0.0), "finite"),
        (np.eye(NUM_ITEMS, dtype=np.int64)[:, :3], "finite float"),
        (3.0 * np.eye(NUM_ITEMS)[:, :3], "orthonormal"),  # a longer basis amplifies every user
        (np.ones((NUM_ITEMS, 2)) / math.sqrt(NUM_ITEMS), "orthonormal"),  # two equal columns
    ],
)
def test_a_malformed_or_non_orthonormal_basis_is_refused(basis, problem):
    with pytest.raises(BasisRefused, match=problem):
        checked_basis(basis, NUM_ITEMS, max_rank=8)


def test_an_orthonormal_basis_passes_and_stays_bounded():
    basis = initial_basis(NUM_ITEMS, 4, seed=1)
    checked = checked_basis(basis.astype(np.float32), NUM_ITEMS, max_rank=8)  # a float32 round trip passes
    assert np.linalg.norm(checked, ord=2) <= 1.0 + 1e-9
    assert np.allclose(checked, basis, atol=1e-6)
