"""Flower strategies for the shared parameters, chosen by ``server-optimizer`` and ``aggregation``.

Aggregation itself is Flower's; crossfed only picks and configures it, and keeps the
strategy's server-optimizer state in checkpoints so a resumed run continues the same
trajectory.

``aggregation = mean`` is the optimizer's weighted average (FedAvg, FedAvgM, FedAdam).
``median`` (Flower's FedMedian, coordinate-wise) and ``trimmed-mean`` (FedTrimmedAvg,
``trim-fraction`` cut from each tail, per coordinate) are robust to a minority of
hostile platforms. They combine whatever updates the round yields: each platform's
without secure aggregation; under SecAgg+, the means of ``secagg-groups`` disjoint groups,
each its own SecAgg+ instance (``crossfed.server.secure_groups``). Norm bounding
(``max-update-norm``, enforced by each platform and checked by ``crossfed.server.screening``)
combines with any of them and with secure aggregation.
"""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedMedian, FedTrimmedAvg, Strategy

from crossfed.shared.config import RunConfig
from crossfed.shared.protocol.records import from_array_record, to_array_record

#: Attributes holding server-optimizer state across rounds (FedAvgM momentum, FedAdam moments).
_STATEFUL_ATTRIBUTES = ("momentum_vector", "m_t", "v_t", "current_arrays")


def make_strategy(config: RunConfig, available_platforms: int) -> Strategy:
    common: dict[str, Any] = {
        "fraction_train": config.federation.fraction_train,
        "fraction_evaluate": 1.0,
        "min_train_nodes": min(config.federation.min_platforms, available_platforms),
        "min_evaluate_nodes": min(config.federation.min_platforms, available_platforms),
        "min_available_nodes": min(config.federation.min_platforms, available_platforms),
    }
    if config.robustness.aggregation == "median":
        return FedMedian(**common)
    if config.robustness.aggregation == "trimmed-mean":
        return FedTrimmedAvg(**common, beta=config.robustness.trim_fraction)
    if config.federation.server_optimizer == "fedadam":
        return FedAdam(**common, eta=config.federation.server_learning_rate, eta_l=config.training.learning_rate)
    if config.federation.server_optimizer == "fedavgm" or config.federation.server_learning_rate != 1.0:
        return FedAvgM(
            **common,
            server_learning_rate=config.federation.server_learning_rate,
            server_momentum=config.federation.server_momentum,
        )
    return FedAvg(**common)


def strategy_state(strategy: Strategy) -> dict[str, Any]:
    """The server optimizer's state as numpy arrays and lists of them, which a checkpoint stores safely."""
    state = {}
    for name in _STATEFUL_ATTRIBUTES:
        value = getattr(strategy, name, None)
        if value is not None:
            state[name] = from_array_record(value) if isinstance(value, ArrayRecord) else value
    return state


def restore_strategy_state(strategy: Strategy, state: dict[str, Any]) -> None:
    for name, value in state.items():
        if isinstance(strategy, FedAvgM) and name == "current_arrays":  # Flower's FedAvgM keeps an ArrayRecord
            value = to_array_record(value)
        setattr(strategy, name, value)
