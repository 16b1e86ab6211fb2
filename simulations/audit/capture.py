"""What the coordinator sees of a platform's training: its update, recorded in the simulation.

A Flower mod on every simulated platform writes ``update = trained - global`` for each
training round to ``round-RRRR-platform-P.npz``. It wraps the ClientApp outside secure
aggregation, so under SecAgg+ the message it passes on is masked; the update is then read
from the platform's saved state (the arrays it trained, which SecAgg+ masks before sending),
and the audit's coordinator only ever looks at the sum over platforms of those updates -
what SecAgg+ unmasks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import Mod
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    CONFIG_RECORD,
    LEGACY_PARAMETERS_RECORD,
    SERVER_ROUND,
    SHARED_NAMES,
)
from crossfed.shared.protocol.records import from_array_record
from crossfed.shared.storage.platform_state import PlatformState

Arrays = dict[str, np.ndarray]
#: Per round: the global arrays it started from and each platform's update.
Rounds = dict[int, tuple[Arrays, dict[int, Arrays]]]
_GLOBAL, _UPDATE = "global/", "update/"
_FILE = re.compile(r"round-(\d+)-platform-(\d+)\.npz")


def update_recorder(folder: Path, run_dir: Path) -> Mod:
    """A mod that records every training update a simulated platform produces into ``folder``."""

    def mod(message: Message, context: Context, call_next) -> Message:
        if message.metadata.message_type != MessageType.TRAIN:
            return call_next(message, context)
        request = _global_arrays(message)
        reply = call_next(message, context)
        if request is None:
            return reply
        reference, server_round = request
        platform = int(context.node_config.get("partition-id", 0))
        trained = _trained_arrays(reply, run_dir, platform, server_round)
        if trained is not None:
            folder.mkdir(parents=True, exist_ok=True)
            update = {name: np.asarray(trained[name], np.float32) - reference[name] for name in reference}
            np.savez(
                folder / f"round-{server_round:04d}-platform-{platform}.npz",
                **{_GLOBAL + name: value for name, value in reference.items()},
                **{_UPDATE + name: value for name, value in update.items()},
            )
        return reply

    return mod


def _global_arrays(message: Message) -> tuple[dict[str, np.ndarray], int] | None:
    """The global arrays a training request starts from and its round (plain, or SecAgg+'s fit request)."""
    content = message.content
    if LEGACY_PARAMETERS_RECORD in content.array_records:
        instructions = compat.recorddict_to_fitins(content, keep_input=True)
        names = str(instructions.config[SHARED_NAMES]).split(",")
        arrays = dict(zip(names, parameters_to_ndarrays(instructions.parameters), strict=True))
        return arrays, int(instructions.config[SERVER_ROUND])
    if ARRAYS_RECORD in content.array_records and CONFIG_RECORD in content.config_records:
        return from_array_record(content[ARRAYS_RECORD]), int(content[CONFIG_RECORD][SERVER_ROUND])
    return None


def _trained_arrays(reply: Message, run_dir: Path, platform: int, server_round: int) -> Mapping | None:
    if reply.has_content() and ARRAYS_RECORD in reply.content.array_records:
        return from_array_record(reply.content[ARRAYS_RECORD])
    state = PlatformState.load(platform_dir(run_dir, platform))
    if state is None or state.last_round != server_round or not state.last_reply:
        return None  # declined: nothing trained, nothing sent
    return state.last_reply["arrays"]


def load_rounds(folder: Path) -> Rounds:
    """Every recorded round: its global arrays and each platform's update."""
    rounds: Rounds = {}
    for path in sorted(folder.glob("round-*-platform-*.npz")):
        match = _FILE.fullmatch(path.name)
        if match is None:
            continue
        with np.load(path) as stored:
            reference = {n[len(_GLOBAL) :]: stored[n] for n in stored.files if n.startswith(_GLOBAL)}
            update = {n[len(_UPDATE) :]: stored[n] for n in stored.files if n.startswith(_UPDATE)}
        rounds.setdefault(int(match[1]), (reference, {}))[1][int(match[2])] = update
    return rounds
