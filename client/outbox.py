"""The only way a reply leaves a platform.

A reply carries shared parameters (chosen by :func:`shared.sharing.shared_arrays`,
never anything else) and platform-level scalar metrics from a fixed allowlist - a
shorter one under differential privacy, where only values derived from public settings
may accompany the DP parameters. Anything else (a list, an array, an unknown key such as
a user id) is refused here, before it can be sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from flwr.app import Message, MetricRecord, RecordDict
from torch import nn

from shared.evaluation import PROTOCOLS
from shared.records import to_array_record
from shared.sharing import shared_arrays

#: What a platform may report under DP: its index, equal weights, and its privacy status.
PRIVATE_METRICS = frozenset({"platform", "num-examples", "declined", "epsilon", "noise-multiplier", "delta"})
#: Without DP: also platform-level training figures and evaluation means.
PLAIN_METRICS = PRIVATE_METRICS | {
    "train-loss", "train-seconds", "pairs-per-second", "num-users",
    *(f"{prefix}{protocol}-{metric}" for prefix in ("", "global-") for protocol in PROTOCOLS
      for metric in ("hr", "ndcg")),
}


class LeakError(ValueError):
    """Something other than an allowed platform-level scalar was about to leave the platform."""


def build_reply(
    request: Message, metrics: Mapping[str, float | int], *, private: bool, model: nn.Module | None = None
) -> Message:
    content = RecordDict()
    if model is not None:
        content["arrays"] = to_array_record(shared_arrays(model))
    content["metrics"] = MetricRecord(_platform_level(metrics, PRIVATE_METRICS if private else PLAIN_METRICS))
    return Message(content=content, reply_to=request)


def _platform_level(metrics: Mapping[str, float | int], allowed: frozenset[str]) -> dict[str, float | int]:
    checked: dict[str, float | int] = {}
    for key, value in metrics.items():
        if key not in allowed:
            raise LeakError(f"metric {key!r} may not leave the platform (allowed: {sorted(allowed)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LeakError(f"metric {key!r} is a {type(value).__name__}; only platform-level scalars may leave")
        if isinstance(value, float) and not math.isfinite(value) and not (key == "epsilon" and value == math.inf):
            raise LeakError(f"metric {key!r} is not finite ({value})")
        checked[key] = value
    return checked
