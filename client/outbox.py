"""The only way a reply leaves a platform.

A reply carries shared parameters (chosen by :func:`shared.sharing.shared_arrays`,
never anything else) and platform-level scalar metrics. Anything per-user - a list,
an array, a user id - is refused here, before it can be sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from flwr.app import Message, MetricRecord, RecordDict
from torch import nn

from shared.records import to_array_record
from shared.sharing import shared_arrays


class LeakError(ValueError):
    """Something other than a platform-level scalar was about to leave the platform."""


def build_reply(request: Message, metrics: Mapping[str, float | int], model: nn.Module | None = None) -> Message:
    content = RecordDict()
    if model is not None:
        content["arrays"] = to_array_record(shared_arrays(model))
    content["metrics"] = MetricRecord(_platform_level(metrics))
    return Message(content=content, reply_to=request)


def _platform_level(metrics: Mapping[str, float | int]) -> dict[str, float | int]:
    checked: dict[str, float | int] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LeakError(f"metric {key!r} is a {type(value).__name__}; only platform-level scalars may leave")
        if isinstance(value, float) and not math.isfinite(value):
            raise LeakError(f"metric {key!r} is not finite ({value})")
        checked[key] = value
    return checked
