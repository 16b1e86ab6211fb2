"""Robust aggregation under SecAgg+: disjoint seeded groups, one SecAgg+ instance each, a robust rule over their means.

The SecAgg+ instances themselves are Flower's (tests/server/test_secure_aggregation.py); here a
stand-in for one instance returns the mean of its group, so the grouping, the combination and
the refusals are checked without Ray.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict

from crossfed.server import federation
from crossfed.server.errors import FederationError
from crossfed.server.federation import aggregate_updates
from crossfed.server.secure_groups import partition_groups, secure_groups
from crossfed.server.secure_round import SecureRound
from crossfed.server.strategy import make_strategy
from crossfed.shared.config import RunConfig
from crossfed.shared.protocol.replies import PrivacyReport, TrainReply

NAMES = ("shared.a", "shared.b")


pytestmark = pytest.mark.usefixtures("message_identity")


def grouped_config(aggregation: str = "median", groups: int = 5, platforms: int = 15) -> RunConfig:
    return RunConfig().replace(
        secagg=True,
        aggregation=aggregation,
        trim_fraction=0.25,
        secagg_groups=groups,
        num_platforms=platforms,
        min_platforms=platforms // groups,
    )


def test_groups_are_disjoint_cover_every_sampled_platform_and_differ_in_size_by_at_most_one():
    nodes = [2**64 - 5, 11, 52, 3, 64, 78, 1000, 23, 5, 8, 13, 21, 34, 55, 89, 144, 233]  # ids are 64-bit unsigned
    groups = partition_groups(nodes, 5, seed=0, server_round=1)
    members = [node for group in groups for node in group]
    assert len(groups) == 5
    assert sorted(members) == sorted(nodes)  # covers every node, each exactly once
    assert len(set(members)) == len(members)
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_grouping_is_seeded_by_run_and_round_and_ignores_the_order_nodes_arrive_in():
    nodes = list(range(100, 120))
    first = partition_groups(nodes, 4, seed=7, server_round=3)
    assert partition_groups(list(reversed(nodes)), 4, seed=7, server_round=3) == first
    assert partition_groups(nodes, 4, seed=7, server_round=4) != first  # a new draw each round
    assert partition_groups(nodes, 4, seed=8, server_round=3) != first


def test_a_round_that_cannot_form_groups_of_min_platforms_is_refused():
    with pytest.raises(FederationError, match=r"cannot form 5 SecAgg\+ groups of at least min-platforms = 3"):
        secure_groups(list(range(14)), 5, 3, seed=0, server_round=2)  # a platform lost: 14 // 5 < 3
    assert [len(group) for group in secure_groups(list(range(15)), 5, 3, seed=0, server_round=2)] == [3] * 5


def group_means(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"shared.a": rng.normal(size=(4, 3)), "shared.b": rng.normal(size=(5,))} for _ in range(count)]


@pytest.mark.parametrize("aggregation", ["median", "trimmed-mean", "mean"])
def test_the_group_means_are_combined_as_the_rule_says(aggregation):
    means, weights = group_means(5), [30.0, 10.0, 20.0, 40.0, 50.0]
    config = grouped_config(aggregation)
    combined = aggregate_updates(make_strategy(config, 15), 1, list(zip(means, weights, strict=True)))
    for name in NAMES:
        stacked = np.stack([mean[name] for mean in means])
        if aggregation == "median":
            expected = np.median(stacked, axis=0)
        elif aggregation == "trimmed-mean":  # int(0.25 * 5) = 1 cut from each tail, per coordinate
            expected = np.sort(stacked, axis=0)[1:-1].mean(axis=0)
        else:  # weighted by each group's total weight: the mean of every platform
            expected = np.tensordot(np.asarray(weights) / sum(weights), stacked, axes=1)
        np.testing.assert_allclose(combined[name], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("aggregation", ["median", "trimmed-mean"])
def test_a_hostile_group_member_moves_the_result_no_further_than_the_honest_groups_range(aggregation):
    honest = group_means(4, seed=1)
    hostile = {name: value + 1e3 for name, value in honest[0].items()}  # its group's mean, pushed by one member
    updates = [(mean, 100.0) for mean in honest] + [(hostile, 1e9)]  # an inflated weight buys nothing
    combined = aggregate_updates(make_strategy(grouped_config(aggregation), 15), 1, updates)
    for name in NAMES:
        stacked = np.stack([mean[name] for mean in honest])
        assert np.all(combined[name] >= stacked.min(axis=0) - 1e-6)
        assert np.all(combined[name] <= stacked.max(axis=0) + 1e-6)
    plain = aggregate_updates(make_strategy(grouped_config("mean"), 15), 1, updates)
    assert np.abs(plain["shared.a"] - np.mean([m["shared.a"] for m in honest], axis=0)).min() > 10  # captured


class GroupRounds:
    """Stands in for one SecAgg+ instance per call: each platform's update is its node id, the group's mean unmasked."""

    def __init__(self, silent: frozenset[int] = frozenset()) -> None:
        self.calls: list[list[int]] = []
        self.silent = silent  # groups (by call index) whose sum too few platforms contributed to

    def __call__(self, grid, arrays, node_ids, server_round, config) -> SecureRound:
        self.calls.append(list(node_ids))
        replies = [TrainReply(node, node, 1, False, None, None, None, PrivacyReport()) for node in node_ids]
        if len(self.calls) - 1 in self.silent:
            return SecureRound(None, [], dropped=len(node_ids))
        mean = {name: np.full_like(value, float(np.mean(node_ids))) for name, value in arrays.items()}
        return SecureRound(mean, replies)


def train_messages(node_ids) -> list[Message]:
    return [Message(content=RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN) for node in node_ids]


def test_a_secure_round_runs_one_secagg_instance_per_group_and_yields_one_update_per_group(monkeypatch):
    rounds = GroupRounds()
    monkeypatch.setattr(federation, "secure_train_round", rounds)
    arrays = {name: np.zeros(3, dtype=np.float32) for name in NAMES}
    nodes = list(range(1, 16))
    replies, updates, groups = federation._secure_round(None, arrays, train_messages(nodes), 2, grouped_config())
    assert rounds.calls == groups == partition_groups(nodes, 5, seed=0, server_round=2)
    assert len(updates) == 5 and sorted(reply.node_id for reply in replies) == nodes
    for (mean, weight), members in zip(updates, groups, strict=True):
        assert weight == len(members)
        np.testing.assert_allclose(mean["shared.a"], np.mean(members))


def test_a_robust_rule_left_with_too_few_group_sums_stops_the_round(monkeypatch):
    monkeypatch.setattr(federation, "secure_train_round", GroupRounds(silent=frozenset({0, 1, 2})))
    arrays = {name: np.zeros(3, dtype=np.float32) for name in NAMES}
    with pytest.raises(FederationError, match=r"only 2 of 5 SecAgg\+ group sums were unmasked.*at least 3"):
        federation._secure_round(None, arrays, train_messages(range(1, 16)), 1, grouped_config())
