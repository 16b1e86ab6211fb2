"""The user-membership attack: a shadow half trains the classifier, only the other half is scored."""

from __future__ import annotations

import numpy as np
import pytest

from crossfed.simulations.audit.bounds import auroc
from crossfed.simulations.audit.membership import attack_scores, shadow_split

COUNT, DIM = 400, 8


def _canaries(signal: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centroid-difference features whose first coordinate shifts by ``signal`` for members."""
    rng = np.random.default_rng(seed)
    included = rng.random(COUNT) < 0.5
    features = rng.normal(size=(COUNT, DIM))
    features[:, 0] += signal * included
    return features, included


def test_the_shadow_is_half_the_canaries_and_ignores_their_coins() -> None:
    shadow = shadow_split(COUNT, seed=3)
    assert shadow.sum() == COUNT // 2
    assert np.array_equal(shadow, shadow_split(COUNT, seed=3))
    assert not np.array_equal(shadow, shadow_split(COUNT, seed=4))


def test_only_canaries_outside_the_shadow_are_scored() -> None:
    features, included = _canaries(signal=2.0)
    shadow = shadow_split(COUNT, seed=0)
    attack = attack_scores(features, included, shadow)
    assert sorted(attack.scored) == sorted(np.flatnonzero(~shadow))
    assert len(attack.scores) == COUNT - COUNT // 2


def test_a_separating_feature_is_learnt_from_the_shadow_and_found_in_the_scored_half() -> None:
    features, included = _canaries(signal=2.0)
    attack = attack_scores(features, included, shadow_split(COUNT, seed=0))
    assert auroc(attack.scores, included[attack.scored]) > 0.85


def test_without_signal_the_attack_guesses() -> None:
    features, included = _canaries(signal=0.0, seed=1)
    attack = attack_scores(features, included, shadow_split(COUNT, seed=0))
    assert 0.35 < auroc(attack.scores, included[attack.scored]) < 0.65


def test_the_classifier_is_not_given_the_scored_half_labels() -> None:
    """Flipping the scored half's coins changes nothing the attack computes."""
    features, included = _canaries(signal=2.0)
    shadow = shadow_split(COUNT, seed=0)
    flipped = np.where(shadow, included, ~included)
    assert np.allclose(
        attack_scores(features, included, shadow).scores, attack_scores(features, flipped, shadow).scores
    )


def test_a_shadow_on_one_side_only_is_refused() -> None:
    features, included = _canaries(signal=1.0)
    with pytest.raises(ValueError, match="both sides"):
        attack_scores(features, included, np.ones(COUNT, dtype=bool))


def test_features_come_from_the_released_model_on_real_canaries(movielens_dir, tmp_path) -> None:
    """On ML-100K canaries: one feature row per canary, finite, repeatable, and moved by the released parameters."""
    from crossfed.shared.config import RunConfig
    from crossfed.shared.data.datasets import item_side, load_dataset
    from crossfed.shared.model.recommender import build_model
    from crossfed.shared.model.sharing import shared_arrays
    from crossfed.simulations.audit.membership import membership_features
    from crossfed.simulations.audit.runner import prepare_canaries

    base = RunConfig.from_mapping(
        {"dataset": "ml-100k", "data-dir": str(movielens_dir), "max-users": 100, "num-platforms": 2}
    )
    config, canaries = prepare_canaries(base, 20, 8, tmp_path)
    num_items, item_features = item_side(config)
    item_index = {str(item): code for code, item in enumerate(load_dataset(config.data.dataset).item_ids)}
    released = dict(shared_arrays(build_model(config.model, num_items, item_features)))

    def features(arrays):
        return membership_features(canaries, arrays, config.model, num_items, item_features, item_index)

    first = features(released)
    assert first.shape[0] == len(canaries) and np.isfinite(first).all()
    assert np.allclose(first, features(released))
    moved = {name: value * 2.0 + 0.1 for name, value in released.items()}
    assert not np.allclose(first, features(moved))
