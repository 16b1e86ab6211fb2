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

from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid


class DropoutTolerantSecAggPlusWorkflow(SecAggPlusWorkflow):
    """``SecAggPlusWorkflow`` that forgets nodes lost before stage 2 instead of unmasking them."""

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:
        state.sampled_node_ids = set(state.active_node_ids)
        return super().collect_masked_vectors_stage(grid, context, state)
