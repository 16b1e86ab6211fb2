"""The results contract: every run, whatever its mode, writes the same ``summary.json``.

So any run can be compared with any other - across modes, seeds, privacy settings.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.ranking import PROTOCOLS, UserResults
from crossfed.shared.storage.checked import atomic_write_bytes

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def platform_dir(run_dir: str | Path, platform: int) -> Path:
    """Where a simulated platform keeps its own state and figures inside a run folder."""
    return Path(run_dir) / "platforms" / f"platform-{platform}"


@dataclass(frozen=True)
class PlatformMetrics:
    """Platform-level means under each protocol that ran (``sampled`` always, ``full`` when asked), as
    reported by (or for) one platform."""

    platform: int
    users: int
    hr: Mapping[str, float]
    ndcg: Mapping[str, float]

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(p for p in PROTOCOLS if p in self.hr)

    @classmethod
    def from_results(cls, platform: int, results: UserResults) -> PlatformMetrics:
        summary = results.summary()
        return cls(
            platform,
            len(results.users),
            {p: summary[p]["hr"] for p in results.protocols},
            {p: summary[p]["ndcg"] for p in results.protocols},
        )

    def to_flat(self, prefix: str = "") -> dict[str, float]:
        """Flat scalar metrics as a ClientApp sends them (``sampled-hr``, ``global-full-ndcg``, ...)."""
        flat = {f"{prefix}{p}-hr": self.hr[p] for p in self.protocols}
        flat.update({f"{prefix}{p}-ndcg": self.ndcg[p] for p in self.protocols})
        return flat

    @classmethod
    def from_flat(cls, metrics: Mapping[str, float | int], prefix: str = "") -> PlatformMetrics:
        """The sampled protocol's means are required; the full protocol's when either of them is there.

        A protocol with one mean missing raises ``KeyError``: half a set is a broken report.
        """
        protocols = [
            p for p in PROTOCOLS if p == "sampled" or {f"{prefix}{p}-hr", f"{prefix}{p}-ndcg"} & metrics.keys()
        ]
        return cls(
            platform=int(metrics["platform"]),
            users=int(metrics["num-users"]),
            hr={p: float(metrics[f"{prefix}{p}-hr"]) for p in protocols},
            ndcg={p: float(metrics[f"{prefix}{p}-ndcg"]) for p in protocols},
        )

    def block(self, k: int) -> dict[str, dict[str, float]]:
        return {p: {f"hr@{k}": self.hr[p], f"ndcg@{k}": self.ndcg[p]} for p in self.protocols}


def pooled(platforms: Sequence[PlatformMetrics]) -> PlatformMetrics:
    """User-weighted mean over platforms: the metric over all test users, under the protocols all of them ran."""
    if not platforms:
        raise ValueError("no platform metrics to pool")
    users = sum(p.users for p in platforms)
    weight = [p.users / users if users else 0.0 for p in platforms]
    protocols = [q for q in PROTOCOLS if all(q in p.hr for p in platforms)]
    return PlatformMetrics(
        platform=-1,
        users=users,
        hr={q: sum(w * p.hr[q] for w, p in zip(weight, platforms)) for q in protocols},
        ndcg={q: sum(w * p.ndcg[q] for w, p in zip(weight, platforms)) for q in protocols},
    )


def build_summary(
    *,
    mode: str,
    config: RunConfig,
    wall_seconds: float,
    startup_seconds: float,
    test: Sequence[PlatformMetrics],
    global_test: Sequence[PlatformMetrics] | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``metrics`` are those of the models the platforms serve; ``global_metrics`` the last global model's.

    ``wall_seconds`` is the whole run; ``startup_seconds`` the part of it before training could
    start (data loaded, models built; in a federated simulation also Ray's workers started),
    which the history's ``elapsed_seconds`` leave out.
    """
    k = config.evaluation.top_k
    ordered = sorted(test, key=lambda p: p.platform)
    global_ordered = sorted(global_test or test, key=lambda p: p.platform)
    summary: dict[str, Any] = {
        "mode": mode,
        "dataset": config.data.dataset,
        "platforms": config.data.num_platforms,
        "partition": config.data.partition,
        "rounds": config.federation.num_server_rounds,
        "local_epochs": config.training.local_epochs,
        "seed": config.experiment.seed,
        "wall_seconds": round(wall_seconds, 3),
        "startup_seconds": round(startup_seconds, 3),
        "metrics": pooled(ordered).block(k) if ordered else None,
        "global_metrics": pooled(global_ordered).block(k) if global_ordered else None,
        "per_platform": [
            {"platform": p.platform, "users": p.users, "metrics": p.block(k), "global_metrics": g.block(k)}
            for p, g in zip(ordered, global_ordered)
        ],
        "history": list(history),
        "config": config.to_flat(),
    }
    summary.update(extra or {})
    return summary


def write_summary(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Strict JSON: an infinite epsilon or a loss nobody sent is written as the string "inf" / "nan"."""
    path = Path(out_dir) / SUMMARY_FILE
    atomic_write_bytes(path, (json.dumps(_strict(summary), indent=2, allow_nan=False) + "\n").encode())
    logger.info("wrote %s", path)
    return path


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
