"""Broken or hostile platforms: their updates are rejected or outvoted, and the aggregate stays honest.

Stated tolerances (what each defence guarantees, and what the tests check):
* screening (any aggregation): a rejected update has no effect at all - the aggregate
  equals the honest-only one up to float32 rounding (1e-6);
* norm bounding with ``max-update-norm`` = C over n platforms: one accepted hostile
  update moves the mean by at most 2C/n from the honest-only mean;
* coordinate-wise median and trimmed mean with one hostile platform of n: every
  coordinate of the aggregate stays within the honest platforms' range.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from crossfed.client.bound import bound_arrays, bound_update
from crossfed.server.federation import aggregate_in_order
from crossfed.server.screening import screen_updates
from crossfed.server.strategy import make_strategy
from crossfed.shared.config import RunConfig
from crossfed.shared.model.sharing import update_norm
from crossfed.shared.protocol.records import to_array_record
from crossfed.shared.protocol.replies import TrainReply, parse_train_reply

NAMES = ("shared.item_bias.weight", "shared.prediction.weight")


pytestmark = pytest.mark.usefixtures("message_identity")


def global_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        NAMES[0]: rng.normal(size=(40, 1)).astype(np.float32),
        NAMES[1]: rng.normal(size=(1, 12)).astype(np.float32),
    }


def honest_updates(count: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    base = global_arrays()
    return [
        {name: (value + rng.normal(scale=0.02, size=value.shape)).astype(np.float32) for name, value in base.items()}
        for _ in range(count)
    ]


def reply(arrays: dict[str, np.ndarray], platform: int, num_examples: float = 100) -> TrainReply:
    """A training reply as the coordinator holds it: parsed on arrival."""
    return parse_train_reply(reply_message(arrays, platform, num_examples))


def reply_message(arrays: dict[str, np.ndarray], platform: int, num_examples: float = 100) -> Message:
    request = Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=platform + 1,
        message_type=MessageType.TRAIN,
    )
    record = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    content = RecordDict(
        {
            "arrays": to_array_record(record),
            "metrics": MetricRecord({"platform": platform, "num-examples": num_examples}),
        }
    )
    return Message(content=content, reply_to=request)


def aggregate(
    config: RunConfig, updates: list[dict[str, np.ndarray]], bound: float = 0.0, weights: list[float] | None = None
) -> dict[str, np.ndarray]:
    """Screen, then aggregate with the configured Flower strategy, as the round loop does."""
    replies = [reply(u, p, (weights or [100] * len(updates))[p]) for p, u in enumerate(updates)]
    accepted, _ = screen_updates(replies, global_arrays(), bound, server_round=1)
    return aggregate_in_order(make_strategy(config, len(updates)), 1, accepted)


def honest_mean(updates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.mean([u[name] for u in updates], axis=0) for name in NAMES}


def broken_updates() -> dict[str, tuple[dict[str, np.ndarray], float, str]]:
    base = global_arrays()
    nan, inf = dict(base), dict(base)
    nan[NAMES[0]] = base[NAMES[0]].copy()
    nan[NAMES[0]][3, 0] = np.nan
    inf[NAMES[1]] = base[NAMES[1]].copy()
    inf[NAMES[1]][0, 2] = -np.inf
    huge = {name: value + 10.0 for name, value in base.items()}
    return {
        "nan": (nan, 100, "NaN or Inf"),
        "inf": (inf, 100, "NaN or Inf"),
        "missing key": ({NAMES[0]: base[NAMES[0]]}, 100, "missing ['shared.prediction.weight']"),
        "extra key": ({**base, "shared.user_tower.ids.weight": np.zeros((3, 2), np.float32)}, 100, "unexpected"),
        "wrong shape": ({**base, NAMES[1]: np.zeros((1, 13), np.float32)}, 100, "has shape (1, 13)"),
        "integer dtype": ({**base, NAMES[1]: np.zeros((1, 12), np.int64)}, 100, "dtype int64"),
        "norm beyond bound": (huge, 100, "exceeds max-update-norm"),
        "infinite weight": (base, math.inf, "num-examples"),
        "zero weight": (base, 0, "num-examples"),
    }


@pytest.mark.parametrize("kind", list(broken_updates()))
def test_screening_rejects_and_logs_a_broken_update(kind, caplog):
    arrays, weight, reason = broken_updates()[kind]
    honest = [reply(u, p) for p, u in enumerate(honest_updates(3))]
    with caplog.at_level(logging.WARNING, logger="crossfed.server.screening"):
        accepted, rejected = screen_updates([*honest, reply(arrays, 7, weight)], global_arrays(), 1.0, server_round=4)
    assert accepted == honest
    assert [r.platform for r in rejected] == [7] and reason in rejected[0].reason
    assert "round 4: rejected the update of platform 7" in caplog.text and reason in caplog.text


@pytest.mark.parametrize("aggregation", ["mean", "median", "trimmed-mean"])
def test_rejected_updates_leave_the_aggregate_exactly_as_without_them(aggregation):
    honest = honest_updates(4)
    config = RunConfig().replace(aggregation=aggregation, trim_fraction=0.25)
    hostile = [arrays for arrays, _, _ in list(broken_updates().values())[:7]]  # NaN, Inf, keys, shapes, dtype, norm
    defended = aggregate(config, [*honest, *hostile], bound=1.0)
    clean = aggregate(config, honest, bound=1.0)
    for name in NAMES:
        np.testing.assert_allclose(defended[name], clean[name], atol=1e-6)


def test_norm_bounding_limits_what_one_platform_can_move_the_mean():
    bound, honest = 0.5, honest_updates(4)
    base = global_arrays()
    push = {name: value + 50.0 for name, value in base.items()}  # a promotion attempt far beyond the bound
    hostile = bound_arrays(push, base, bound * 0.999)  # the attacker scales itself down to pass the check
    assert update_norm(hostile, base) <= bound
    defended = aggregate(RunConfig(), [*honest, hostile], bound=bound)
    undefended = aggregate(RunConfig(), [*honest, push])
    clean = honest_mean(honest)
    shift = math.sqrt(sum(float(np.sum((defended[n] - clean[n]) ** 2)) for n in NAMES))
    assert shift <= 2 * bound / 5 + 1e-6  # the stated tolerance: 2C/n
    assert math.sqrt(sum(float(np.sum((undefended[n] - clean[n]) ** 2)) for n in NAMES)) > 10 * shift


@pytest.mark.parametrize("aggregation", ["median", "trimmed-mean"])
@pytest.mark.parametrize("platforms", [5, 20])
def test_median_and_trimmed_mean_keep_one_hostile_platform_within_the_honest_range(aggregation, platforms):
    honest = honest_updates(platforms - 1, seed=platforms)
    base = global_arrays()
    hostile = {name: value + 1e3 for name, value in base.items()}  # finite: passes screening without a bound
    defended = aggregate(
        RunConfig().replace(aggregation=aggregation, trim_fraction=0.25),
        [*honest, hostile],
        weights=[100] * (platforms - 1) + [1e9],
    )  # an inflated weight buys nothing here either
    for name in NAMES:
        stacked = np.stack([u[name] for u in honest])
        assert np.all(defended[name] >= stacked.min(axis=0) - 1e-6)
        assert np.all(defended[name] <= stacked.max(axis=0) + 1e-6)
    plain = aggregate(RunConfig(), [*honest, hostile])
    assert np.abs(plain[NAMES[0]] - honest_mean(honest)[NAMES[0]]).min() > 10  # the plain mean is captured


def test_a_platform_bounds_its_own_update_before_sending():
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.shared = torch.nn.Linear(6, 3)
    reference = {f"shared.{k}": v.detach().numpy().copy() for k, v in model.shared.named_parameters()}
    with torch.no_grad():
        model.shared.weight.add_(5.0)
    direction = model.shared.weight.detach().numpy() - reference["shared.weight"]
    before = bound_update(model, reference, 0.7)
    after = {f"shared.{k}": v.detach().numpy() for k, v in model.shared.named_parameters()}
    assert before > 0.7
    assert update_norm(after, reference) == pytest.approx(0.7, rel=1e-5)
    moved = after["shared.weight"] - reference["shared.weight"]
    np.testing.assert_allclose(moved / np.linalg.norm(moved), direction / np.linalg.norm(direction), atol=1e-5)
    assert bound_update(model, reference, 0.0) == pytest.approx(0.7, rel=1e-5)  # 0 = no bound: unchanged
    assert update_norm(
        {f"shared.{k}": v.detach().numpy() for k, v in model.shared.named_parameters()}, reference
    ) == pytest.approx(0.7, rel=1e-5)


def test_robust_aggregation_needs_plain_fedavg():
    from crossfed.shared.config import ConfigError

    with pytest.raises(ConfigError, match="aggregation"):
        RunConfig().replace(aggregation="median", server_optimizer="fedadam").validate()


def test_under_dp_a_platform_claiming_more_weight_is_rejected():
    """DP platforms all weigh 1; a bounded update with weight 1e9 would otherwise own the mean."""
    honest = [reply(u, p, num_examples=1) for p, u in enumerate(honest_updates(3))]
    greedy = reply(honest_updates(1, seed=9)[0], 7, num_examples=1e9)
    accepted, rejected = screen_updates([*honest, greedy], global_arrays(), 1.0, server_round=2, private=True)
    assert accepted == honest
    assert [r.platform for r in rejected] == [7] and "weighs 1" in rejected[0].reason


def test_list_valued_metrics_are_rejected_not_a_crash():
    """A MetricRecord may hold lists; a hostile reply sending them must not stop the coordinator."""
    from crossfed.server.federation import platform_order
    from crossfed.shared.protocol.replies import numeric_metrics

    honest = [reply(u, p) for p, u in enumerate(honest_updates(3))]
    message = reply_message(honest_updates(1, seed=9)[0], 7)
    message.content["metrics"] = MetricRecord({"platform": [7, 8], "num-examples": [100.0], "train-loss": [0.1]})
    accepted, rejected = screen_updates([*honest, parse_train_reply(message)], global_arrays(), 0.0, server_round=3)
    assert accepted == honest
    assert [r.platform for r in rejected] == [None] and "num-examples" in rejected[0].reason
    assert numeric_metrics(message.content["metrics"]) == {}  # every value was a list: none reads as a metric
    message.content["metrics"] = MetricRecord(
        {"platform": math.inf, "declined": 1, "train-loss": math.nan, "num-examples": 3}
    )
    assert numeric_metrics(message.content["metrics"]) == {"declined": 1, "num-examples": 3}
    hostile = parse_train_reply(message)
    assert (hostile.platform, hostile.declined, hostile.num_examples, hostile.train_loss) == (None, True, 3, None)
    assert max([hostile, *honest], key=platform_order) is hostile  # ordered last, after known platforms


def test_an_update_with_odd_metrics_is_averaged_like_any_other():
    """Flower averages every metric of every reply and wants them all alike: the round loop hands
    it only parameters and weights, so a list-valued loss or an extra record fails nothing."""
    updates = honest_updates(4)
    messages = [reply_message(u, p) for p, u in enumerate(updates)]
    messages[3].content["metrics"] = MetricRecord({"platform": 3, "num-examples": 100, "train-loss": [0.1, 0.2]})
    messages[2].content["extra"] = MetricRecord({"user-ids": [1, 2, 3]})
    replies = [parse_train_reply(message) for message in messages]
    accepted, rejected = screen_updates(replies, global_arrays(), 0.0, server_round=1)
    assert accepted == replies and rejected == []  # the parameters are fine; odd metrics are not screened
    aggregated = aggregate_in_order(make_strategy(RunConfig(), 4), 1, accepted)
    for name, mean in honest_mean(updates).items():
        np.testing.assert_allclose(aggregated[name], mean, atol=1e-6)
