"""One training round through Flower's SecAgg+: the coordinator learns only the weighted mean update.

In flwr 1.42 SecAgg+ runs only on the legacy path (``SecAggPlusWorkflow`` with
``secaggplus_mod`` on the platforms); with the Message-API strategies it fails silently.
crossfed keeps its own round loop (progress, checkpoints, resume, budgets) and calls the
workflow for the training step of each round, through a ``LegacyContext`` whose legacy
strategy only hands the sampled platforms their instructions and takes back the unmasked
result. The Message-API strategy (FedAvg, FedAvgM, FedAdam) then applies its server
update to that mean exactly as it would to a plain average, so both paths share one
optimizer. No cryptography here is crossfed's own: key agreement, Shamir sharing, masking,
quantisation and unmasking are all Flower's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.common import (
    FitIns,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import ClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from crossfed.server.secagg_workflow import DropoutTolerantSecAggPlusWorkflow
from crossfed.shared.config import RunConfig
from crossfed.shared.protocol.keys import SERVER_ROUND, SHARED_NAMES
from crossfed.shared.protocol.replies import TrainReply, parse_secure_train_result
from crossfed.shared.protocol.secure_aggregation import QuantisationPlan, ordered, quantisation_plan

logger = logging.getLogger("crossfed.server")


@dataclass
class SecureRound:
    """What the coordinator learns from a secure round: the mean update and each platform's public status."""

    mean_update: dict[str, np.ndarray] | None
    replies: list[TrainReply] = field(default_factory=list)
    dropped: int = 0

    @property
    def contributors(self) -> int:
        """Platforms whose update (and noise share) is in the sum: neither dropped nor declined."""
        return sum(1 for reply in self.replies if not reply.declined and (reply.num_examples or 0) > 0)

    @property
    def total_weight(self) -> float:
        return float(sum(reply.num_examples or 0 for reply in self.replies if not reply.declined))


def secure_train_round(
    grid: Grid,
    arrays: dict[str, np.ndarray],
    node_ids: Sequence[int],
    server_round: int,
    config: RunConfig,
    plan: QuantisationPlan | None = None,
) -> SecureRound:
    """Run SecAgg+ over ``node_ids``; the mean update is ``None`` when too few platforms stayed to unmask.

    ``plan`` overrides the training round's ranges (:func:`quantisation_plan`), for a sum of other values
    (the Gram releases of ``user-dp-mechanism = gram-subspace``).
    """
    names = list(arrays)
    plan = plan or quantisation_plan(config)
    strategy = _HandOver(node_ids, grid, server_round, names)
    context = LegacyContext(
        Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        strategy=strategy,
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: server_round})
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters(ordered(arrays, names)), keep_input=True
    )
    workflow = DropoutTolerantSecAggPlusWorkflow(  # flwr 1.42 fails on early dropouts: see that module
        num_shares=config.secure_aggregation.secagg_shares,
        reconstruction_threshold=config.secure_aggregation.secagg_threshold,
        max_weight=plan.max_weight,
        clipping_range=plan.clipping_range,
        quantization_range=plan.quantization_range,
        modulus_range=plan.modulus_range,
        min_contributors=config.federation.min_platforms,
        timeout=config.federation.reply_timeout,
    )
    workflow(grid, context)
    replies = [parse_secure_train_result(proxy.node_id, result) for proxy, result in workflow.collected]
    outcome = SecureRound(None, replies, dropped=len(node_ids) - len(replies))
    if strategy.aggregate is None or outcome.total_weight <= 0:
        return outcome
    outcome.mean_update = dict(zip(names, parameters_to_ndarrays(strategy.aggregate), strict=True))
    logger.info(
        "round %d: SecAgg+ unmasked the mean update of %d platform(s) (%d dropped)",
        server_round,
        len(replies),
        outcome.dropped,
    )
    return outcome


class _HandOver(Strategy):
    """The legacy strategy SecAggPlusWorkflow needs: sampling is already done, aggregation is Flower's.

    ``SecAggPlusWorkflow`` unmasks the weighted mean itself and writes it into every
    result before calling :meth:`aggregate_fit`; this strategy only keeps it.
    """

    def __init__(self, node_ids: Sequence[int], grid: Grid, server_round: int, names: list[str]) -> None:
        self.proxies = [GridClientProxy(node_id, grid, grid.run.run_id) for node_id in node_ids]
        self.fit_config = {SERVER_ROUND: server_round, SHARED_NAMES: ",".join(names)}
        self.aggregate: Parameters | None = None

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager):
        return [(proxy, FitIns(parameters, dict(self.fit_config))) for proxy in self.proxies]

    def aggregate_fit(self, server_round: int, results, failures):
        if results:  # every result carries the same unmasked mean; who sent what is the workflow's ``collected``
            self.aggregate = results[0][1].parameters
        return self.aggregate, {}

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: ClientManager):
        return []

    def aggregate_evaluate(self, server_round: int, results, failures):
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters):
        return None
