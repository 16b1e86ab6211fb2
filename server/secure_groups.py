"""Disjoint groups of the sampled platforms, one SecAgg+ instance each, for robust rules under SecAgg+.

SecAgg+ shows the coordinator one sum, and a median of one value is that value. Splitting the
sampled platforms into ``secagg-groups`` disjoint groups, each aggregated by its own SecAgg+
instance, gives it one sum per group: a robust rule over the group means then bounds what one
hostile platform - which can move only its own group's mean - does to the model. Each group's
sum hides its members only among themselves, so every group must be a SecAgg+ round its
platforms accept (at least ``min-platforms`` peers; each platform checks its own instance).

The partition is drawn afresh every round from the run's seed and the round number, so a
rerun groups the same way and a platform cannot know its group before the round.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from crossfed.server.errors import FederationError


def partition_groups(node_ids: Sequence[int], groups: int, seed: int, server_round: int) -> list[list[int]]:
    """``node_ids`` shuffled by ``(seed, server_round)`` and cut into ``groups`` groups whose sizes differ by at most 1.

    The result depends only on the set of nodes, not their order: the nodes are sorted first.
    """
    if groups < 1:
        raise ValueError(f"groups = {groups}: at least 1 is needed")
    nodes = sorted(int(node) for node in node_ids)  # node ids are 64-bit unsigned: kept as Python ints
    order = np.random.default_rng([seed, server_round]).permutation(len(nodes))
    shuffled = [nodes[int(index)] for index in order]
    size, larger = divmod(len(shuffled), groups)
    bounds = [index * size + min(index, larger) for index in range(groups + 1)]
    return [shuffled[start:end] for start, end in itertools.pairwise(bounds)]


def secure_groups(node_ids: Sequence[int], groups: int, min_size: int, seed: int, server_round: int) -> list[list[int]]:
    """The round's groups, refused when one of several would have fewer than ``min_size`` platforms.

    The configuration already refuses a ``secagg-groups`` too large for the platforms a round
    samples; this catches a round that sampled fewer (platforms lost before the round). One group
    is every sampled platform, as without groups: its SecAgg+ round checks the count itself.
    """
    if groups > 1 and len(node_ids) // groups < min_size:
        raise FederationError(
            f"round {server_round}: {len(node_ids)} sampled platform(s) cannot form {groups} SecAgg+ groups of at "
            f"least min-platforms = {min_size}"
        )
    return partition_groups(node_ids, groups, seed, server_round)
