"""A platform's served model over the DP item subspace: its local-only model, plus the subspace where it helps.

The federation releases an orthonormal item basis ``V`` (``crossfed.shared.privacy.item_subspace``).
A platform scores its own users by ``h_u V V^T`` - ``h_u`` their history, which never leaves the
platform - and serves ``local logits + w x standardised subspace scores``. The subspace scores are
standardised per user over the whole catalog, so their scale does not depend on ``V``'s rank or
noise and one weight grid fits every ε. ``w`` is picked on the platform's own validation users and
``w = 0`` is the local-only model exactly, so the DP signal enters only as far as held-out users of
this platform confirm, significantly, that it helps (a stricter rule than the first best weight of
``crossfed.shared.trainer.local_first_copy``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import Interactions, LeaveLastOutSplit, PlatformData
from crossfed.shared.evaluation.ranking import ScoreFn, UserResults
from crossfed.shared.evaluation.stats import paired_bootstrap
from crossfed.shared.trainer import first_best_weight, rank_on_split

logger = logging.getLogger(__name__)


class SubspaceScores:
    """``h_u V V^T`` for a platform's users, standardised per user over the catalog.

    The per-user mean and standard deviation over all items need no full score row: with ``V``
    orthonormal, the mean is ``(h_u V) . (V^T 1) / n`` and the mean square ``||h_u V||^2 / n``.
    """

    def __init__(self, basis: np.ndarray, history: Interactions) -> None:
        shape = (history.num_users, history.num_items)
        rows = sp.csr_matrix((np.ones(len(history.users)), (history.users, history.items)), shape=shape)
        rows.sum_duplicates()
        rows.data[:] = 1.0
        self.basis = torch.as_tensor(basis, dtype=torch.float64)
        self.projected = torch.as_tensor(np.asarray(rows @ basis), dtype=torch.float64)
        n = history.num_items
        mean = self.projected @ self.basis.sum(dim=0) / n
        variance = (self.projected**2).sum(dim=1) / n - mean**2
        self.mean = mean
        self.std = torch.sqrt(torch.clamp(variance, min=0.0))
        self.std[self.std == 0] = 1.0

    def __call__(self, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        projected = self.projected[users]
        raw = projected @ self.basis.T if items is None else torch.einsum("uk,uck->uc", projected, self.basis[items])
        return ((raw - self.mean[users, None]) / self.std[users, None]).to(torch.float32)


def served_scores(local: nn.Module, subspace: SubspaceScores, weight: float) -> ScoreFn:
    """``local logits + weight x subspace``; ``weight = 0`` returns the local model's own scores."""

    @torch.no_grad()
    def score(users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        logits = local.score(users, items)
        return logits if weight == 0 else logits + weight * subspace(users, items)

    return score


def ranked(score: ScoreFn, data: PlatformData, split: LeaveLastOutSplit, config: RunConfig, stage: str) -> UserResults:
    """``score`` ranked on ``stage`` with the product's sampled protocol and candidates."""
    return rank_on_split(score, data, split, config, stage, full=False)


def chosen_weight(
    local: nn.Module,
    basis: np.ndarray,
    data: PlatformData,
    split: LeaveLastOutSplit,
    config: RunConfig,
    weights: Sequence[float],
    *,
    confidence: float | None = 0.9,
) -> float:
    """The weight of ``weights`` whose served model ranks the platform's validation users best,
    kept only if its gain over local-only on those users is significant.

    Sampled HR@10, then NDCG@10, pick the best; the first best wins, so with 0 first the
    local-only model is kept unless the subspace helps on held-out users. A few hundred
    validation users can prefer a weight by chance that the test set then refutes, so the best
    weight must also beat weight 0 per user: the paired bootstrap interval (``confidence``) of
    the NDCG@10 differences must lie above 0, else local-only is served. ``None`` skips that test.
    Only this platform's validation split is read.
    """
    local.eval()
    subspace = SubspaceScores(basis, split.history("validation"))
    results = {
        weight: ranked(served_scores(local, subspace, weight), data, split, config, "validation") for weight in weights
    }
    best_weight, best_key = first_best_weight(results.items())
    alone = results.get(0.0)
    if best_weight != 0 and not _significant(results[best_weight], alone, local, data, split, config, confidence):
        return 0.0
    logger.info(
        "platform %d serves its local model + %g x the item subspace (validation HR@%d %.4f)",
        data.platform,
        best_weight,
        config.evaluation.top_k,
        best_key[0],
    )
    return best_weight


@dataclass(frozen=True)
class SubspaceChoice:
    """The rank ``k`` of the item subspace and the weight ``w`` a platform serves; ``w = 0``: local-only."""

    rank: int
    weight: float


def chosen_subspace(
    local: nn.Module,
    basis: np.ndarray,
    data: PlatformData,
    split: LeaveLastOutSplit,
    config: RunConfig,
    *,
    confidence: float | None = 0.9,
) -> SubspaceChoice:
    """The rank of ``subspace-ranks`` (at most ``basis``' columns) and weight of ``subspace-weights`` whose
    served model ranks the platform's validation users best, under :func:`chosen_weight`'s rule.

    Every (k, w) is scored on this platform's validation split only; the first best wins (ranks in
    the order given, weights too, so the local-only model at w = 0 comes first), and a winner with
    w > 0 is kept only if its NDCG@10 gain over local-only is significant. Nothing of it leaves the platform.
    """
    local.eval()
    history = split.history("validation")
    ranks = [rank for rank in config.serving.subspace_rank_grid if rank <= basis.shape[1]] or [basis.shape[1]]
    alone = ranked(local.score, data, split, config, "validation")
    candidates: list[tuple[SubspaceChoice, UserResults]] = [(SubspaceChoice(ranks[0], 0.0), alone)]
    for rank in ranks:
        subspace = SubspaceScores(basis[:, :rank], history)
        for weight in config.serving.subspace_weight_grid:
            if weight != 0:
                score = served_scores(local, subspace, weight)
                candidates.append((SubspaceChoice(rank, weight), ranked(score, data, split, config, "validation")))
    index, best_key = first_best_weight((float(i), results) for i, (_, results) in enumerate(candidates))
    choice, results = candidates[int(index)]
    if choice.weight != 0 and not _significant(results, alone, local, data, split, config, confidence):
        return SubspaceChoice(ranks[0], 0.0)
    logger.info(
        "platform %d serves its local model + %g x the rank-%d item subspace (validation HR@%d %.4f)",
        data.platform,
        choice.weight,
        choice.rank,
        config.evaluation.top_k,
        best_key[0],
    )
    return choice


def _significant(
    best: UserResults,
    alone: UserResults | None,
    local: nn.Module,
    data: PlatformData,
    split: LeaveLastOutSplit,
    config: RunConfig,
    confidence: float | None,
) -> bool:
    """Whether ``best`` beats the local-only model per validation user (paired bootstrap of NDCG@10 at
    ``confidence``; ``None`` accepts it untested)."""
    if confidence is None:
        return True
    alone = alone if alone is not None else ranked(local.score, data, split, config, "validation")
    gain = best.ndcgs["sampled"] - alone.ndcgs["sampled"]
    interval = paired_bootstrap(gain, confidence=confidence, seed=data.platform)
    if not interval.significantly_positive:
        logger.info(
            "platform %d: the best subspace gains %+.4f NDCG@%d on validation, not significantly: serving local-only",
            data.platform,
            interval.mean,
            config.evaluation.top_k,
        )
    return interval.significantly_positive
