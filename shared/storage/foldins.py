"""Users folded in since the last round: their new items and features, kept on the platform.

The items and features are what the operator gave; the vectors are derived from them and
are only valid for the model they were computed against (``fingerprint``): after a new round,
serving folds the same users in again from their items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from crossfed.shared.storage.checked import CheckedRecord


@dataclass
class FoldIns(CheckedRecord):
    """Per folded-in user id: item codes, features, and one ``[1, width]`` vector per scoring part."""

    FILE_NAME: ClassVar[str] = "foldins.pt"

    items: dict[str, list[int]] = field(default_factory=dict)
    features: dict[str, dict[str, str]] = field(default_factory=dict)
    vectors: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    fingerprint: str = ""
