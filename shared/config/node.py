"""Node config: the keys an operator sets on their own SuperNode (``--node-config``).

An operator may pin any run-config key there (the coordinator's run config cannot override
it), and a misspelled pin must stop the platform: ``epsilonn=1`` silently ignored would train
with the coordinator's ε. Besides run-config keys, node config carries only the keys named
below, each allowed by name.

A deployed platform also takes every path it reads or writes from its node config only
(:data:`PLATFORM_PATH_KEYS`): a coordinator that chose ``run-dir`` would choose where the
platform's privacy ledger lives, and a fresh folder is a fresh budget.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crossfed.shared.config.run import RunConfig
from crossfed.shared.config.values import ConfigError, unknown_key

#: Set by Flower's simulation engine on every virtual SuperNode (``flwr.common.constant.PARTITION_ID_KEY``,
#: ``NUM_PARTITIONS_KEY``; spelled out so that reading a config does not import Flower), and by operators
#: in a deployment.
FLOWER_NODE_KEYS = frozenset({"partition-id", "num-partitions"})
#: crossfed's own per-SuperNode keys: ``state-dir`` is the platform's private state folder.
PLATFORM_NODE_KEYS = frozenset({"state-dir"})
NODE_ONLY_KEYS = FLOWER_NODE_KEYS | PLATFORM_NODE_KEYS
#: Run-config keys that name a folder or file on the platform: a deployed platform reads them
#: from its node config only, never from the coordinator's run config.
PLATFORM_PATH_KEYS = ("run-dir", "operator-data", "catalog", "data-dir")
#: The programs a deployed platform's ClientApp runs in: the SuperNode itself, or the
#: ``flwr-clientapp`` process it starts (``--isolation subprocess``, the default).
SUPERNODE_PROGRAMS = frozenset({"flower-supernode", "flwr-clientapp"})


def pinned_run_config(node_config: Mapping[str, Any]) -> dict[str, Any]:
    """The run-config keys an operator pinned in ``node_config``; any key not allowed there is refused."""
    run_keys = RunConfig.keys()
    valid = run_keys | NODE_ONLY_KEYS
    for key in node_config:
        if key not in valid:
            raise unknown_key(str(key), "node config", valid)
    return {key: value for key, value in node_config.items() if key in run_keys}


def is_deployed(node_config: Mapping[str, Any], program: str | None = None) -> bool:
    """Whether this platform is a deployed SuperNode rather than one of a simulation's virtual ones.

    Flower's simulation engine gives a virtual SuperNode exactly ``partition-id`` and
    ``num-partitions``; an operator's node config names at least its ``state-dir``. A node
    config with only the engine's keys still counts as deployed inside a SuperNode's program
    (``program``, by default this process's), so forgetting ``state-dir`` cannot pass for a simulation.
    """
    name = Path(program if program is not None else sys.argv[0]).name
    return name in SUPERNODE_PROGRAMS or not set(node_config) <= FLOWER_NODE_KEYS


def without_platform_paths(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """``run_config`` less the keys that name a path on the platform (:data:`PLATFORM_PATH_KEYS`)."""
    return {key: value for key, value in run_config.items() if str(key).replace("_", "-") not in PLATFORM_PATH_KEYS}


def deployed_state_dir(node_config: Mapping[str, Any]) -> Path:
    """A deployed platform's state folder: ``state-dir`` from its node config, which it cannot start without."""
    if "state-dir" not in node_config or not str(node_config["state-dir"]).strip():
        raise ConfigError(
            "node config has no 'state-dir': a deployed platform keeps its privacy ledger and user tower "
            "in a folder its operator names (--node-config 'state-dir=\"/srv/platform/state\"'), never in "
            "one the coordinator's run config chooses"
        )
    return Path(str(node_config["state-dir"]))
