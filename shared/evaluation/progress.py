"""One progress line per round, the same for federated runs and for the baselines."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.results import PlatformMetrics, pooled

logger = logging.getLogger("crossfed.progress")


def validation_score(validation: Sequence[PlatformMetrics]) -> float | None:
    """What early stopping selects on: validation HR@K under the sampled protocol over every platform's users,
    the figure the progress line shows; ``None`` when no platform reported one (under DP)."""
    return pooled(validation).hr["sampled"] if validation else None


@dataclass(frozen=True)
class RoundReport:
    """What is known after a round: validation metrics (absent under DP), epsilon spent, refusals."""

    server_round: int
    train_loss: float
    validation: list[PlatformMetrics]
    elapsed: float
    #: By platform index, or ``node-<id>`` for nodes that claimed the same index.
    epsilon: Mapping[int | str, float] = field(default_factory=dict)
    declined: Sequence[int] = ()

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "round": self.server_round,
            "train_loss": self.train_loss,
            "elapsed_seconds": round(self.elapsed, 2),
        }
        if self.validation:
            overall = pooled(self.validation)
            entry["validation"] = {
                f"{protocol}_{measure}": value
                for protocol in overall.protocols
                for measure, value in (("hr", overall.hr[protocol]), ("ndcg", overall.ndcg[protocol]))
            }
            entry["per_platform"] = {
                str(p.platform): {"sampled_hr": p.hr["sampled"], "sampled_ndcg": p.ndcg["sampled"]}
                for p in self.validation
            }
        if self.epsilon:
            entry["epsilon"] = {str(p): e for p, e in sorted(self.epsilon.items(), key=_reporter_order)}
        if self.declined:
            entry["declined"] = sorted(self.declined)
        return entry

    def log(self, config: RunConfig) -> None:
        parts = [f"round {self.server_round:3d}/{config.federation.num_server_rounds}"]
        if self.train_loss == self.train_loss:  # not NaN: platforms sent their loss
            parts.append(f"loss {self.train_loss:.4f}")
        if self.validation:
            k = config.evaluation.top_k
            overall = pooled(self.validation)
            full = f" (full {overall.hr['full']:.4f}/{overall.ndcg['full']:.4f})" if "full" in overall.hr else ""
            parts.append(f"val HR@{k} {overall.hr['sampled']:.4f} NDCG@{k} {overall.ndcg['sampled']:.4f}{full}")
            parts.append(
                "per platform HR/NDCG: "
                + " ".join(f"p{p.platform} {p.hr['sampled']:.3f}/{p.ndcg['sampled']:.3f}" for p in self.validation)
            )
        if self.epsilon:
            parts.append("ε " + " ".join(f"p{p}={e:.2f}" for p, e in sorted(self.epsilon.items(), key=_reporter_order)))
        if self.declined:
            parts.append(f"declined (budget spent): {sorted(self.declined)}")
        parts.append(f"{self.elapsed:6.1f}s")
        # The structured fields let a caller (the sweep's progress bar) follow rounds without parsing text.
        logger.info(
            " | ".join(parts), extra={"server_round": self.server_round, "rounds": config.federation.num_server_rounds}
        )


def _reporter_order(item: tuple[int | str, float]) -> tuple[int, int, str]:
    """Platform indices in numeric order, then nodes keyed by id."""
    key = item[0]
    return (0, key, "") if isinstance(key, int) else (1, 0, str(key))
