"""User membership from the released model's recommendations (Zhang et al., CCS 2021).

The attacker knows a target user's history and the recommendation list the released model
gives that user. A recommender trained on the user recommends items close to the user's
history; one that never saw the user recommends from the crowd. The attack's feature is the
difference between the centroid of the history's item vectors and the centroid of the
recommended items' vectors, and a classifier trained on users of known membership (the
shadow) turns it into a score.

In crossfed terms the target users are the audit's canaries: the released global model has
no user vector for a canary, so the recipient folds one in from half of the canary's
training items (as the ``model`` adversary does) and takes the top :data:`RECOMMENDED` items
of the catalog, the fold-in's own items left out. Item vectors are the released item tower's
(the attacker's best factorisation of the catalog is the one it was handed). Half of the
canaries, chosen by a seeded coin independent of their inclusion, form the shadow whose
known membership trains a logistic regression; only the other half is scored, so no score
comes from the attack's training data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from crossfed.shared.config import ModelConfig
from crossfed.shared.data.features import EncodedFeature
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import load_shared_arrays
from crossfed.simulations.audit.canaries import CanarySet
from crossfed.simulations.audit.scores import fit_user_vectors, fold_in_task

#: Length of the recommendation list the attacker sees.
RECOMMENDED = 10
#: Users ranked against the whole catalog at once (bounds the memory of one ranking pass).
_CHUNK = 128
_SHADOW_SEED = 0x5AD0
_FIT_SEED = 0xFE47
#: Gradient steps, step size and L2 penalty of the attack's logistic regression.
_CLASSIFIER_STEPS = 500
_CLASSIFIER_LEARNING_RATE = 0.5
_CLASSIFIER_L2 = 1e-2


@dataclass(frozen=True)
class MembershipScores:
    """The attack's scores of the scored half, and which canaries those are."""

    scored: np.ndarray  # indices into the canary set
    scores: np.ndarray


def shadow_split(count: int, seed: int) -> np.ndarray:
    """A mask of exactly ``count // 2`` shadow canaries, drawn from ``seed`` alone (never from the coins)."""
    shadow = np.zeros(count, dtype=bool)
    shadow[np.random.default_rng([seed, _SHADOW_SEED]).permutation(count)[: count // 2]] = True
    return shadow


def membership_features(
    canaries: CanarySet,
    arrays: Mapping[str, np.ndarray],
    shape: ModelConfig,
    num_items: int,
    item_features: dict[str, EncodedFeature],
    item_index: Mapping[str, int],
) -> np.ndarray:
    """Per canary: centroid of its training items' vectors minus centroid of its recommended items' vectors."""
    model = build_model(shape, num_items, item_features)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    load_shared_arrays(model, dict(arrays))
    catalog = torch.arange(num_items)
    with torch.no_grad():
        item_vectors = model.shared.item_tower(catalog)
    history = [[item_index[i] for i in c.training_items] for c in canaries.canaries]
    support = [[item_index[i] for i in canaries.support_and_query(c)[0]] for c in canaries.canaries]
    users = _fold_in(model, item_vectors, support, num_items, canaries.seed)
    vectors = item_vectors.numpy().astype(np.float64)
    features = np.zeros((len(canaries), vectors.shape[1]))
    for start in range(0, len(support), _CHUNK):
        stop = min(start + _CHUNK, len(support))
        items = catalog.expand(stop - start, num_items)
        with torch.no_grad():
            logits = model.shared(users[start:stop], items, item_vectors[items]).clone()
        for row, chosen in enumerate(support[start:stop]):
            logits[row, chosen] = -torch.inf
        recommended = torch.topk(logits, min(RECOMMENDED, num_items - 1), dim=1).indices.numpy()
        for row in range(stop - start):
            index = start + row
            features[index] = vectors[history[index]].mean(axis=0) - vectors[recommended[row]].mean(axis=0)
    return features


def _fold_in(
    model: torch.nn.Module, item_vectors: torch.Tensor, support: list[list[int]], num_items: int, seed: int
) -> torch.Tensor:
    """User vectors fitted to each canary's support items against sampled negatives (released model frozen)."""
    task = fold_in_task(support, num_items, np.random.default_rng([seed, _FIT_SEED]))
    torch.manual_seed(seed)
    return fit_user_vectors(model, item_vectors, task)


def attack_scores(features: np.ndarray, included: np.ndarray, shadow: np.ndarray) -> MembershipScores:
    """Train a logistic regression on the shadow canaries' features and known membership; score the others."""
    features, included, shadow = np.asarray(features, dtype=np.float64), np.asarray(included, bool), shadow
    if shadow.all() or not shadow.any():
        raise ValueError("the shadow split needs canaries on both sides")
    train, labels = features[shadow], included[shadow].astype(np.float64)
    mean, spread = train.mean(axis=0), train.std(axis=0) + 1e-12
    x = np.hstack([(train - mean) / spread, np.ones((len(train), 1))])
    weights = np.zeros(x.shape[1])
    for _ in range(_CLASSIFIER_STEPS):
        predicted = 1.0 / (1.0 + np.exp(-(x @ weights)))
        gradient = x.T @ (predicted - labels) / len(x) + _CLASSIFIER_L2 * np.r_[weights[:-1], 0.0]
        weights -= _CLASSIFIER_LEARNING_RATE * gradient
    scored = np.flatnonzero(~shadow)
    tested = np.hstack([(features[scored] - mean) / spread, np.ones((len(scored), 1))])
    return MembershipScores(scored, tested @ weights)
