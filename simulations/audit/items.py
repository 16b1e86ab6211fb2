"""Item inference (Yuan et al., WWW 2023): which items did a platform's users interact with this round?

A positive raises its item's bias; an item only sampled as a negative sees its bias pushed
down. So the coordinator ranks the catalog by the change of the item bias in what it sees -
one platform's update, or under SecAgg+ only the sum over platforms - and guesses the top
``k``. Precision and recall at ``k`` against the items in the platform's training data say how
well that works; ``base_rate`` is the precision of guessing at random.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

ITEM_BIAS = "shared.item_bias.weight"


@dataclass(frozen=True)
class ItemInference:
    """Precision and recall at ``k`` of one platform's guessed items, beside random guessing's precision."""

    platform: int
    k: int
    precision: float
    recall: float
    base_rate: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def infer_items(update: Mapping[str, np.ndarray], k: int) -> np.ndarray:
    """The ``k`` items whose bias rose most in ``update``."""
    change = np.asarray(update[ITEM_BIAS], dtype=np.float64).ravel()
    return np.argsort(-change, kind="stable")[:k]


def score_inference(platform: int, update: Mapping[str, np.ndarray], truth: np.ndarray, k: int) -> ItemInference:
    """How well :func:`infer_items` on ``update`` finds the items ``truth`` (one flag per catalog item) marks."""
    truth = np.asarray(truth, dtype=bool)
    hits = int(truth[infer_items(update, k)].sum())
    positives = int(truth.sum())
    return ItemInference(
        platform=platform,
        k=k,
        precision=hits / k,
        recall=hits / positives if positives else float("nan"),
        base_rate=positives / len(truth),
    )
