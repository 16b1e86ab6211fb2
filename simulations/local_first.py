"""What serving local-first bought each simulated platform, read from the platforms' own files.

Under ``serve-model = local-first`` every platform keeps, beside its served model's test
figures, the weight its validation users gave the global model and the test figures of its
local-only model (weight 0), per user too. A simulation owns every platform's disk, so the
run's ``summary.json`` can pair the two on the same test users: the served model's gain over
local-only per platform, with a paired bootstrap interval (95 %), which is how the privacy
targets are stated. In a deployment each operator reads the same files on their own platform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossfed.client.local_metrics import LOCAL_FIRST_RANK, LOCAL_FIRST_WEIGHT, LOCAL_ONLY_PREFIX
from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.per_user_results import LocalOnlyPerUserResults, PerUserResults
from crossfed.shared.evaluation.results import PlatformMetrics, platform_dir, pooled
from crossfed.shared.evaluation.stats import paired_bootstrap


def local_first_block(
    config: RunConfig, run_dir: str | Path, test_entries: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The summary's ``local_first`` block, or None when no platform served local-first.

    ``test_entries`` are the platforms' own test log entries. Per platform: the weight chosen,
    the local-only model's metrics, and served minus local-only on the sampled HR@k with its
    paired bootstrap interval over the platform's test users; overall: the local-only metrics
    pooled over test users, and the mean over platforms of the served model's gain.
    """
    entries = sorted((e for e in test_entries if LOCAL_FIRST_WEIGHT in e), key=lambda e: int(e["platform"]))
    if not entries:
        return None
    k = config.evaluation.top_k
    platforms = []
    local_only = []
    for entry in entries:
        platform = int(entry["platform"])
        metrics = PlatformMetrics.from_flat(entry, prefix=LOCAL_ONLY_PREFIX)
        local_only.append(metrics)
        platforms.append(
            {
                "platform": platform,
                "weight": float(entry[LOCAL_FIRST_WEIGHT]),
                **({"rank": int(entry[LOCAL_FIRST_RANK])} if LOCAL_FIRST_RANK in entry else {}),
                "local_only_metrics": metrics.block(k),
                "served_minus_local_only": _paired_gain(platform_dir(run_dir, platform), platform),
            }
        )
    intervals = {p["platform"]: p["served_minus_local_only"] for p in platforms}
    paired = [i["mean"] for i in intervals.values() if i is not None]
    return {
        "local_only_metrics": pooled(local_only).block(k),
        "mean_gain_over_platforms": float(np.mean(paired)) if len(paired) == len(platforms) else None,
        "platforms_significantly_worse": [p for p, i in intervals.items() if i is not None and i["high"] < 0],
        "platforms_significantly_better": [p for p, i in intervals.items() if i is not None and i["low"] > 0],
        "per_platform": platforms,
    }


def _paired_gain(directory: Path, platform: int) -> dict[str, float] | None:
    """Served minus local-only sampled hits on the same test users, with a 95 % paired bootstrap interval."""
    served, alone = PerUserResults.load(directory), LocalOnlyPerUserResults.load(directory)
    if served is None or alone is None or not np.array_equal(served.users, alone.users):
        return None
    interval = paired_bootstrap(served.hits["sampled"] - alone.hits["sampled"], seed=platform)
    return {"mean": interval.mean, "low": interval.low, "high": interval.high}
