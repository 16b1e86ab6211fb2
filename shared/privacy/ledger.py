"""A platform's privacy ledger: one accountant composed over every round and local step.

Flower's Opacus example creates a new PrivacyEngine every round and so reports only the
per-round epsilon. Here the accountant's history (noise multiplier, sample rate, steps)
is saved with the platform's state and restored before every round, so epsilon is the
whole run's, a restart included, and a round that would cross the budget is refused
before it runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from crossfed.shared.errors import CrossfedError

# Calibration stops within this much of the target epsilon, always at or below it.
_EPSILON_TOLERANCE = 0.01


class BudgetExceeded(CrossfedError, RuntimeError):
    """Training the next round would take the platform past its privacy budget."""


@dataclass
class PrivacyLedger:
    unit: str
    budget: float
    delta: float
    accountant: str = "rdp"
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps_per_round: int | None = None
    history: list[tuple[float, float, int]] = field(default_factory=list)
    rounds_trained: int = 0
    noise_share: float = 1.0

    # -- accounting -------------------------------------------------------
    def epsilon(self, extra_steps: int = 0) -> float:
        """Epsilon spent so far (plus ``extra_steps`` more at the ledger's settings)."""
        history = list(self.history)
        if extra_steps:
            history.append((self._noise(), self._rate(), extra_steps))
        if not history:
            return 0.0
        if any(noise == 0 for noise, _, _ in history):
            return math.inf
        from opacus.accountants import create_accountant  # on use: importing opacus takes ~1.3 s

        accountant = create_accountant(self.accountant)
        accountant.history = history
        return float(accountant.get_epsilon(delta=self.delta))

    def can_train_round(self, own_noise_only: bool = False) -> bool:
        """Whether one more round stays within the budget; ``own_noise_only`` prices it on
        :meth:`epsilon_alone`, for a platform that does not trust its peers to add the rest."""
        spent = self.epsilon_alone(self._steps()) if own_noise_only else self.epsilon(self._steps())
        return spent <= self.budget * (1 + 1e-9)

    def record_round(self, history: list[tuple[float, float, int]], keep: bool = False) -> None:
        """Adopt the accountant's history after a round (it already holds the earlier rounds),
        or with ``keep`` append this round's entries to the ledger's own history."""
        entries = [tuple(entry) for entry in history]
        self.history = _merged([*self.history, *entries] if keep else entries)
        self.rounds_trained += 1

    def epsilon_alone(self, extra_steps: int = 0) -> float:
        """Epsilon of this platform's own update, should secure aggregation fail (more than the
        threshold colluding): it carries only the platform's share of the noise."""
        if self.noise_share == 1.0:
            return self.epsilon(extra_steps)
        history = list(self.history)
        if extra_steps:
            history.append((self._noise(), self._rate(), extra_steps))
        alone = PrivacyLedger(
            self.unit,
            self.budget,
            self.delta,
            self.accountant,
            history=[(noise * self.noise_share, rate, steps) for noise, rate, steps in history],
        )
        return alone.epsilon()

    # -- calibration ------------------------------------------------------
    def calibrate(self, sample_rate: float, steps_per_round: int, planned_rounds: int, noise_multiplier: float) -> None:
        """Fix the noise once, for the whole run: explicit, or from the budget over the planned steps."""
        if self.noise_multiplier is not None:
            return  # already calibrated (a resumed run keeps its noise)
        self.sample_rate, self.steps_per_round = sample_rate, steps_per_round
        if noise_multiplier > 0:
            self.noise_multiplier = noise_multiplier
        elif math.isinf(self.budget):
            self.noise_multiplier = 0.0  # epsilon = inf: the DP procedure (sampling, clipping) without noise
        else:
            from opacus.accountants.utils import get_noise_multiplier

            self.noise_multiplier = float(
                get_noise_multiplier(
                    target_epsilon=self.budget,
                    target_delta=self.delta,
                    sample_rate=sample_rate,
                    steps=steps_per_round * planned_rounds,
                    accountant=self.accountant,
                    epsilon_tolerance=_EPSILON_TOLERANCE,
                )
            )

    def _noise(self) -> float:
        return self._require(self.noise_multiplier, "noise multiplier")

    def _rate(self) -> float:
        return self._require(self.sample_rate, "sample rate")

    def _steps(self) -> int:
        return int(self._require(self.steps_per_round, "steps per round"))

    @staticmethod
    def _require(value: Any, what: str) -> Any:
        if value is None:
            raise RuntimeError(f"privacy ledger is not calibrated yet ({what} unknown)")
        return value

    # -- persistence ------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PrivacyLedger:
        ledger = cls(**state)
        ledger.history = [tuple(entry) for entry in ledger.history]
        return ledger


def _merged(history: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Adjacent entries with the same noise and rate as one: the PRV accountant's cost grows with entries."""
    merged: list[tuple[float, float, int]] = []
    for noise, rate, steps in history:
        if merged and merged[-1][:2] == (noise, rate):
            merged[-1] = (noise, rate, merged[-1][2] + steps)
        else:
            merged.append((noise, rate, steps))
    return merged
