"""One score per canary from what each adversary sees: higher means "this canary was trained on".

``own-items`` canaries (items only they rate) are scored from their own items' rows:

* ``coordinator`` (white-box): the rise of the canary's audited items' biases in its platform's
  update (under SecAgg+, in the sum over platforms), summed over rounds
  (:func:`own_item_coordinator_scores`);
* ``model`` (black-box): the same items' biases in the released global model, which start at
  zero in every run (:func:`own_item_model_scores`).

Training the canary's positives raises its items' biases; nothing else does. Other users'
sampled negatives lower them whether the canary trains or not, and the item-feature tower
moves every item alike but lives outside the per-item rows. The bias is read rather than the
id-embedding row because it starts at zero for every item: weight decay moves an id row in
proportion to its random start and leaves a zero bias where it is, and Adam's momentum only
carries on past gradients, which on an excluded canary's items are sampled negatives (down).
The bias also exists with or without item-id embeddings.

``random`` canaries share their items with real users and are scored by a fold-in instead:

* ``coordinator`` (white-box) sees every update a platform sends - or, under SecAgg+, only their
  sum - and the global parameters it sent: the score is how much the canary's platform's update
  improves the black-box score below, summed over rounds.
* ``model`` (black-box) holds only the released global shared parameters: it fits a user vector
  to half of a canary's items against sampled negatives and ranks the canary's other items
  among a fixed random sample of the catalog; the score is their mean percentile.
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
#: Catalog items each canary's held-back items are ranked against.
RANKED_AGAINST = 300
_FIT_SEED = 0xB1AC
#: The per-item row the own-items scores read.
ITEM_BIAS = "shared.item_bias.weight"


def own_item_codes(canaries: CanarySet, item_index: Mapping[str, int]) -> list[np.ndarray]:
    """Each canary's audited items (:meth:`CanarySet.targets`) as catalog codes."""
    return [np.array([item_index[i] for i in canaries.targets(c)], dtype=np.int64) for c in canaries.canaries]


def _bias_sums(bias: np.ndarray, codes: list[np.ndarray]) -> np.ndarray:
    bias = np.asarray(bias, dtype=np.float64).ravel()
    return np.array([bias[chosen].sum() for chosen in codes])


def own_item_model_scores(
    canaries: CanarySet, arrays: Mapping[str, np.ndarray], item_index: Mapping[str, int]
) -> np.ndarray:
    """Each canary's score from the released shared parameters: its audited items' summed bias."""
    return _bias_sums(arrays[ITEM_BIAS], own_item_codes(canaries, item_index))


def own_item_coordinator_scores(
    canaries: CanarySet, rounds: Rounds, item_index: Mapping[str, int], secure: bool = False
) -> np.ndarray:
    """Each canary's score from what the coordinator sees: its audited items' bias rise, summed over rounds.

    A canary is read in its own platform's update; under SecAgg+ in the sum over platforms.
    """
    if not rounds:
        raise ValueError("no recorded updates to score")
    codes = own_item_codes(canaries, item_index)
    platforms = np.array([c.platform for c in canaries.canaries])
    scores = np.zeros(len(canaries))
    for _reference, updates in rounds.values():
        if secure:
            scores += _bias_sums(sum(u[ITEM_BIAS] for u in updates.values()), codes)
            continue
        for platform, update in updates.items():
            chosen = platforms == platform
            scores[chosen] += _bias_sums(update[ITEM_BIAS], codes)[chosen]
    return scores


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
    task = fold_in_task(support, num_items, rng)
    # Each canary's query items are ranked against a fixed random sample of the catalog (its support
    # items excluded): the percentile estimates the full-catalog one at a fraction of the cost.
    compared = np.stack([_sample_excluding(rng, num_items, chosen, RANKED_AGAINST) for chosen in support])
    query_width = max(len(q) for q in query)
    queried = np.array([q + [q[0]] * (query_width - len(q)) for q in query], dtype=np.int64)
    query_mask = np.array([[1.0] * len(q) + [0.0] * (query_width - len(q)) for q in query])
    ranked_t = torch.as_tensor(np.concatenate([queried, compared], axis=1))
    catalog = torch.arange(num_items)

    def score(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        load_shared_arrays(model, dict(arrays))
        torch.manual_seed(_FIT_SEED)
        with torch.no_grad():
            item_vectors = model.shared.item_tower(catalog)
        vectors = fit_user_vectors(model, item_vectors, task)
        with torch.no_grad():
            logits = model.shared(vectors, ranked_t, item_vectors[ranked_t]).numpy()
        query_logits, sample_logits = logits[:, :query_width], logits[:, query_width:]
        percentiles = (sample_logits[:, None, :] < query_logits[:, :, None]).mean(axis=2)
        scores = (percentiles * query_mask).sum(axis=1) / query_mask.sum(axis=1)
        return scores

    return score


#: A fold-in task: each row's items (support items first, then sampled negatives), targets and mask.
FoldInTask = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def fold_in_task(support: list[list[int]], num_items: int, rng: np.random.Generator) -> FoldInTask:
    """Each canary's support items against ``FIT_NEGATIVES`` random items each, padded into one batch.

    The negatives are drawn once, so every parameter set a caller compares is fitted to the same task.
    """
    width = max(len(s) for s in support) * (1 + FIT_NEGATIVES)
    items = np.zeros((len(support), width), dtype=np.int64)
    targets = np.zeros(items.shape, dtype=np.float32)
    mask = np.zeros(items.shape, dtype=np.float32)
    for row, chosen in enumerate(support):
        picked = np.concatenate([chosen, rng.integers(0, num_items, size=len(chosen) * FIT_NEGATIVES)])
        items[row, : len(picked)] = picked
        targets[row, : len(chosen)] = 1.0
        mask[row, : len(picked)] = 1.0
    return torch.as_tensor(items), torch.as_tensor(targets), torch.as_tensor(mask)


def fit_user_vectors(model: torch.nn.Module, item_vectors: torch.Tensor, task: FoldInTask) -> torch.Tensor:
    """User vectors fitted to ``task`` from zero with the released model frozen: what a recipient can do."""
    items, targets, mask = task
    user_dim = model.user_tower(torch.zeros(1, dtype=torch.long)).shape[-1]
    vectors = torch.zeros(len(items), user_dim, requires_grad=True)
    optimizer = torch.optim.Adam([vectors], lr=FIT_LEARNING_RATE)
    for _ in range(FIT_STEPS):
        optimizer.zero_grad()
        bce_loss(model.shared(vectors, items, item_vectors[items]), targets, mask).backward()
        optimizer.step()
    return vectors.detach()


def _sample_excluding(rng: np.random.Generator, num_items: int, excluded: list[int], size: int) -> np.ndarray:
    """``size`` distinct items not in ``excluded`` (all of them when the catalog is smaller)."""
    allowed = np.setdiff1d(np.arange(num_items), excluded)
    return rng.choice(allowed, size=min(size, len(allowed)), replace=False)
