"""One score per canary from what each adversary sees: higher means "this canary was trained on".

* ``coordinator`` (white-box) sees every update a platform sends - or, under SecAgg+, only their
  sum - and the global parameters it sent: the score is how much the canary's platform's update
  improves the black-box score below, summed over rounds.
* ``model`` (black-box) holds only the released global shared parameters: it fits a user vector
  to half of a canary's items against sampled negatives and ranks the canary's other items
  among the whole catalog; the score is their mean percentile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from crossfed.shared.config import ModelConfig
from crossfed.shared.data.features import EncodedFeature
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import load_shared_arrays
from crossfed.shared.training.losses import bce_loss
from crossfed.simulations.audit.canaries import CanarySet
from crossfed.simulations.audit.capture import Rounds

#: The black-box score of every canary under given shared parameters.
FoldIn = Callable[[Mapping[str, np.ndarray]], np.ndarray]
#: Negatives per support item, gradient steps and step size of the black-box fit.
FIT_NEGATIVES = 5
FIT_STEPS = 20
FIT_LEARNING_RATE = 0.2
_FIT_SEED = 0xB1AC
_SCORE_BLOCK = 256


def coordinator_scores(canaries: CanarySet, rounds: Rounds, fit: FoldIn, secure: bool = False) -> np.ndarray:
    """Each canary's score: how much its platform's updates (their sum when ``secure``) improve its fold-in rank.

    For every round, the fold-in score (:func:`model_scores`) under the global parameters plus
    the update, minus the same under the global parameters alone; summed over rounds. The
    difference cancels what the global model already knew (item popularity, earlier rounds).
    """
    if not rounds:
        raise ValueError("no recorded updates to score")
    scores = np.zeros(len(canaries))
    platforms = np.array([c.platform for c in canaries.canaries])
    for reference, updates in rounds.values():
        before = fit(reference)
        if secure:
            total = {name: sum(u[name] for u in updates.values()) for name in reference}
            scores += fit({name: reference[name] + total[name] for name in reference}) - before
            continue
        for platform, update in updates.items():
            after = fit({name: reference[name] + update[name] for name in reference})
            chosen = platforms == platform
            scores[chosen] += (after - before)[chosen]
    return scores


def fold_in_scorer(
    canaries: CanarySet,
    shape: ModelConfig,
    num_items: int,
    item_features: dict[str, EncodedFeature],
    item_index: Mapping[str, int],
) -> FoldIn:
    """The black-box score under any shared parameters: fit a user vector on one half, rank the other half.

    The support items, their sampled negatives and the fit are fixed once (seeded), so two
    parameter sets are compared on the same task.
    """
    model = build_model(shape, num_items, item_features)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    halves = [canaries.support_and_query(c) for c in canaries.canaries]
    support = [[item_index[i] for i in s] for s, _q in halves]
    query = [[item_index[i] for i in q] for _s, q in halves]
    rng = np.random.default_rng([canaries.seed, _FIT_SEED])
    width = max(len(s) for s in support) * (1 + FIT_NEGATIVES)
    items = np.zeros((len(support), width), dtype=np.int64)
    targets = np.zeros(items.shape, dtype=np.float32)
    mask = np.zeros(items.shape, dtype=np.float32)
    for row, chosen in enumerate(support):
        picked = np.concatenate([chosen, rng.integers(0, num_items, size=len(chosen) * FIT_NEGATIVES)])
        items[row, : len(picked)] = picked
        targets[row, : len(chosen)] = 1.0
        mask[row, : len(picked)] = 1.0
    others = np.ones((len(support), num_items), dtype=bool)
    for row, chosen in enumerate(support):
        others[row, chosen] = False
    catalog = torch.arange(num_items)
    user_dim = model.user_tower(torch.zeros(1, dtype=torch.long)).shape[-1]
    items_t, targets_t, mask_t = torch.as_tensor(items), torch.as_tensor(targets), torch.as_tensor(mask)

    def score(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        load_shared_arrays(model, dict(arrays))
        torch.manual_seed(_FIT_SEED)
        with torch.no_grad():
            item_vectors = model.shared.item_tower(catalog)
        vectors = torch.zeros(len(support), user_dim, requires_grad=True)
        optimizer = torch.optim.Adam([vectors], lr=FIT_LEARNING_RATE)
        for _ in range(FIT_STEPS):
            optimizer.zero_grad()
            logits = model.shared(vectors, items_t, item_vectors[items_t])
            bce_loss(logits, targets_t, mask_t).backward()
            optimizer.step()
        scores = np.empty(len(support))
        with torch.no_grad():
            for start in range(0, len(support), _SCORE_BLOCK):
                block = vectors.detach()[start : start + _SCORE_BLOCK]
                logits = model.shared(
                    block, catalog.expand(len(block), -1), item_vectors.expand(len(block), -1, -1)
                ).numpy()
                for offset, row in enumerate(logits):
                    index = start + offset
                    ranked = row[others[index]]
                    scores[index] = float(np.mean([(ranked < row[q]).mean() for q in query[index]]))
        return scores

    return score
