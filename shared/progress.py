"""One progress line per round, the same for federated runs and for the baselines."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from shared.config import RunConfig
from shared.results import PlatformMetrics, pooled

logger = logging.getLogger("crossfed.progress")


@dataclass(frozen=True)
class RoundReport:
    """Validation metrics after a round (or, for baselines, after the same number of epochs)."""

    server_round: int
    train_loss: float
    validation: list[PlatformMetrics]
    elapsed: float

    def as_dict(self) -> dict[str, Any]:
        overall = pooled(self.validation)
        return {
            "round": self.server_round,
            "train_loss": self.train_loss,
            "validation": {
                "sampled_hr": overall.hr["sampled"], "sampled_ndcg": overall.ndcg["sampled"],
                "full_hr": overall.hr["full"], "full_ndcg": overall.ndcg["full"],
            },
            "per_platform": {
                str(p.platform): {"sampled_hr": p.hr["sampled"], "sampled_ndcg": p.ndcg["sampled"]}
                for p in self.validation
            },
            "elapsed_seconds": round(self.elapsed, 2),
        }

    def log(self, config: RunConfig) -> None:
        k = config.top_k
        overall = pooled(self.validation)
        per_platform = " ".join(
            f"p{p.platform} {p.hr['sampled']:.3f}/{p.ndcg['sampled']:.3f}" for p in self.validation
        )
        logger.info(
            "round %3d/%d | loss %.4f | val HR@%d %.4f NDCG@%d %.4f (full %.4f/%.4f) | per platform HR/NDCG: %s | %6.1fs",
            self.server_round, config.num_server_rounds, self.train_loss, k, overall.hr["sampled"], k,
            overall.ndcg["sampled"], overall.hr["full"], overall.ndcg["full"], per_platform, self.elapsed,
        )
