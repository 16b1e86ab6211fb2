"""Why an item is recommended, in terms of the user's own data only.

Two reasons an operator can show next to a recommendation: the user's past items closest to it
in the **shared item space** (cosine similarity of the global item tower's vectors: the space
every platform agrees on, whichever model is served), and the item's categorical and
multi-valued features (genres, ...) that also occur among the user's past items, the most
frequent first. Nothing about other users enters an explanation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from crossfed.shared.data.contract import MULTI_SEPARATOR
from crossfed.shared.model.recommender import Recommender

#: Past items quoted per recommended item.
SIMILAR_ITEMS = 3


@dataclass(frozen=True)
class Explanation:
    """Why an item is recommended, in terms of the user's own data only."""

    similar_items: tuple[tuple[str, float], ...]  # (own past item id, cosine in the shared item space)
    matching_features: dict[str, tuple[str, ...]]  # item feature -> values also among the user's past items
    basis: str  # "history", "fold-in" or the cold-start segment


class Explainer:
    """Item vectors and feature indicators computed once; explanations per request."""

    def __init__(
        self, global_model: Recommender, item_ids: np.ndarray, items: pd.DataFrame, kinds: Mapping[str, str]
    ) -> None:
        self.item_ids = item_ids
        with torch.no_grad():
            everything = torch.arange(len(item_ids))
            self.item_space = F.normalize(global_model.shared.item_tower(everything), dim=-1)
        self._feature_matrices = _feature_matrices(items, kinds)

    def explain(self, items: np.ndarray, seen: np.ndarray, basis: str) -> list[Explanation]:
        if not len(seen) or basis.startswith("cold start"):
            return [Explanation((), {}, basis) for _ in items]
        similarity = (self.item_space[torch.as_tensor(items)] @ self.item_space[torch.as_tensor(seen)].T).numpy()
        closest = np.argsort(-similarity, axis=1, kind="stable")[:, :SIMILAR_ITEMS]
        profiles = {c: m[seen].sum(axis=0) for c, (m, _) in self._feature_matrices.items()}
        out = []
        for row, item in enumerate(items):
            similar = tuple((str(self.item_ids[seen[j]]), round(float(similarity[row, j]), 4)) for j in closest[row])
            matching = {}
            for column, (matrix, vocabulary) in self._feature_matrices.items():
                shared = np.flatnonzero(matrix[item] & (profiles[column] > 0))
                if len(shared):
                    order = shared[np.argsort(-profiles[column][shared], kind="stable")]
                    matching[column] = tuple(vocabulary[v] for v in order)
            out.append(Explanation(similar, matching, basis))
        return out


def _feature_matrices(items: pd.DataFrame, kinds: Mapping[str, str]) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per categorical or multi-valued item feature: ``[items, values]`` booleans and the value names."""
    out = {}
    for column, kind in kinds.items():
        if kind not in ("categorical", "multi"):
            continue
        values = items[column].astype("str")
        split = values.str.split(MULTI_SEPARATOR, regex=False) if kind == "multi" else values.map(lambda v: [v])
        exploded = split.explode().dropna().str.strip()
        exploded = exploded[exploded != ""]
        vocabulary = sorted(exploded.unique().tolist())
        matrix = np.zeros((len(items), len(vocabulary)), dtype=bool)
        matrix[exploded.index.to_numpy(), pd.Index(vocabulary).get_indexer(exploded.to_numpy())] = True
        out[column] = (matrix, vocabulary)
    return out
