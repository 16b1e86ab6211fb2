"""The platform's private served copy, cached beside its state so serving does not fine-tune it again.

The copy never leaves the platform. ``fingerprint`` digests everything the copy was built
from (the global model with the user tower, the fine-tuning settings); serving rebuilds the
copy when its inputs no longer match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from crossfed.shared.storage.checked import CheckedRecord


@dataclass
class PrivateCopy(CheckedRecord):
    """The parameters of the fine-tuned copy and the fingerprint of what it was built from."""

    FILE_NAME: ClassVar[str] = "served_copy.pt"

    fingerprint: str
    parameters: dict[str, torch.Tensor]
