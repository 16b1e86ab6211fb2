"""Flower's SecAgg+ workflow, tolerant of platforms that drop out before they shared their keys.

In flwr 1.42 ``SecAggPlusWorkflow`` fixes ``sampled_node_ids`` before stage 0 and, in the
unmask stage, names every sampled node that is no longer active as *dead*. A node that
dropped in stage 0 (setup) or stage 1 (share keys) never sent key shares and was never
masked against, yet the survivors are asked for its ``sk1`` share: ``secaggplus_mod``
raises ``KeyError`` on every survivor and the round fails with "Not enough shares to
recover secret". In a deployment this is what a SuperNode restart does whenever it
happens to fall at the start of a round.

The fix is one line: at stage 2 (collect masked vectors) the nodes that are still active
are exactly the ones whose shares the survivors hold and whose pairwise masks they
added, so they become the sampled set; only nodes lost from stage 2 on are dead and
their masks are removed as Flower intends. Key agreement, sharing, masking and
unmasking stay Flower's.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.common import FitRes
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

logger = logging.getLogger("crossfed.server")


class DropoutTolerantSecAggPlusWorkflow(SecAggPlusWorkflow):
    """``SecAggPlusWorkflow`` that forgets nodes lost before stage 2 instead of unmasking them,
    and never unmasks a sum of fewer than ``min_contributors`` real updates.

    Declining platforms send a zero update with weight 0: they keep the masks cancelling but
    add no noise. With distributed noise every contributor carries only a share of it, so
    the sum must not be unmasked unless enough platforms really contributed - checked
    after stage 2, before the unmask stage reveals anything.
    """

    def __init__(self, *args: Any, min_contributors: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_contributors = min_contributors
        #: Every (proxy, FitRes) that reached stage 2, kept even when the round halts there.
        self.collected: list[tuple[ClientProxy, FitRes]] = []

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        state.sampled_node_ids = set(state.active_node_ids)
        proceed = super().collect_masked_vectors_stage(grid, context, state)
        self.collected = list(state.legacy_results)
        contributors = sum(1 for _, result in self.collected if result.num_examples > 0)
        if proceed and contributors < self.min_contributors:
            logger.warning(
                "SecAgg+ halted before unmasking: %d platform(s) contributed, fewer than %d",
                contributors,
                self.min_contributors,
            )
            return False
        return proceed
