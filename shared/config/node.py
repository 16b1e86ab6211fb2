"""Node config: the keys an operator sets on their own SuperNode (``--node-config``).

An operator may pin any run-config key there (the coordinator's run config cannot override
it), and a misspelled pin must stop the platform: ``epsilonn=1`` silently ignored would train
with the coordinator's ε. Besides run-config keys, node config carries only the keys named
below, each allowed by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossfed.shared.config.run import RunConfig
from crossfed.shared.config.values import unknown_key

#: Set by Flower's simulation engine on every virtual SuperNode (``flwr.common.constant.PARTITION_ID_KEY``,
#: ``NUM_PARTITIONS_KEY``; spelled out so that reading a config does not import Flower), and by operators
#: in a deployment.
FLOWER_NODE_KEYS = frozenset({"partition-id", "num-partitions"})
#: crossfed's own per-SuperNode keys: ``state-dir`` is the platform's private state folder.
PLATFORM_NODE_KEYS = frozenset({"state-dir"})
NODE_ONLY_KEYS = FLOWER_NODE_KEYS | PLATFORM_NODE_KEYS


def pinned_run_config(node_config: Mapping[str, Any]) -> dict[str, Any]:
    """The run-config keys an operator pinned in ``node_config``; any key not allowed there is refused."""
    run_keys = RunConfig.keys()
    valid = run_keys | NODE_ONLY_KEYS
    for key in node_config:
        if key not in valid:
            raise unknown_key(str(key), "node config", valid)
    return {key: value for key, value in node_config.items() if key in run_keys}
