"""Reading what platforms send back, without trusting it.

A MetricRecord may hold lists as well as numbers, and a legacy FitRes may hold strings or
bytes; a broken or hostile platform can send any of them where the coordinator expects a
number. Everything the coordinator reads from a reply goes through here, so one odd value
drops that value - never the round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flwr.app import Message


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The numbers among ``metrics``; a NaN, or a platform index that is not finite, reads as absent."""
    numbers = {key: value for key, value in metrics.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)}
    if not math.isfinite(numbers.get("platform", 0)):
        del numbers["platform"]
    return numbers


def reply_metrics(reply: Message) -> dict[str, float | int]:
    """A reply's metrics record, numbers only (empty when the reply has none)."""
    return numeric_metrics(reply.content.metric_records.get("metrics", {}))
