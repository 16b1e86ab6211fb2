"""The wire protocol: what a platform's outbox sends is what the coordinator's parser reads, and no more."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import Code, FitRes, Parameters, Status

from crossfed.client import outbox
from crossfed.shared.evaluation.results import PlatformMetrics
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.protocol import keys
from crossfed.shared.protocol.replies import (
    parse_evaluate_reply,
    parse_prepare_reply,
    parse_secure_train_result,
    parse_train_reply,
)

#: One value for every metric a platform may send without DP.
PLAIN = {
    keys.PLATFORM: 2,
    keys.NUM_EXAMPLES: 50,
    keys.DECLINED: 0,
    keys.EPSILON: 1.5,
    keys.EPSILON_ALONE: 2.5,
    keys.NOISE_MULTIPLIER: 0.8,
    keys.DELTA: 1e-5,
    keys.TRAIN_LOSS: 0.3,
    keys.TRAIN_SECONDS: 4.0,
    keys.PAIRS_PER_SECOND: 900.0,
    keys.NUM_USERS: 10,
    **{key: 0.25 for key in keys.RANKING_METRICS},
}


pytestmark = pytest.mark.usefixtures("message_identity")


def request(message_type: str = MessageType.TRAIN, node_id: int = 5) -> Message:
    content = RecordDict({keys.CONFIG_RECORD: ConfigRecord({keys.SERVER_ROUND: 1})})
    return Message(content=content, dst_node_id=node_id, message_type=message_type)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.shared = torch.nn.Linear(4, 2)
    module.user = torch.nn.Embedding(3, 2)
    return module


def test_the_platform_allowlist_is_the_protocol_module_s():
    assert outbox.PLAIN_METRICS is keys.PLAIN_METRICS and outbox.PRIVATE_METRICS is keys.PRIVATE_METRICS
    assert keys.PRIVATE_METRICS < keys.PLAIN_METRICS
    assert set(PLAIN) == keys.PLAIN_METRICS
    ranking = PlatformMetrics(0, 1, {"sampled": 0.1, "full": 0.2}, {"sampled": 0.3, "full": 0.4})
    assert set(ranking.to_flat()) | set(ranking.to_flat(keys.GLOBAL_PREFIX)) == keys.RANKING_METRICS


def test_every_metric_the_outbox_lets_out_is_read_by_the_coordinator_s_parser():
    platform_model = model()
    train = parse_train_reply(outbox.build_reply(request(), PLAIN, private=False, model=platform_model))
    assert (train.node_id, train.platform, train.num_examples, train.declined) == (5, 2, 50, False)
    assert train.train_loss == 0.3
    assert (train.privacy.epsilon, train.privacy.epsilon_alone, train.privacy.noise_multiplier) == (1.5, 2.5, 0.8)
    expected = shared_arrays(platform_model)
    assert list(train.arrays) == list(expected) and train.unreadable is None
    for name, value in expected.items():
        np.testing.assert_array_equal(train.arrays[name], value)

    evaluation = parse_evaluate_reply(outbox.build_reply(request(MessageType.EVALUATE), PLAIN, private=False))
    assert evaluation.served == PlatformMetrics(2, 10, {"sampled": 0.25, "full": 0.25}, {"sampled": 0.25, "full": 0.25})
    assert evaluation.global_model == evaluation.served

    private = {key: value for key, value in PLAIN.items() if key in keys.PRIVATE_METRICS}
    evaluation = parse_evaluate_reply(outbox.build_reply(request(MessageType.EVALUATE), private, private=True))
    assert evaluation.served is None and evaluation.global_model is None and evaluation.privacy.epsilon == 1.5

    ready = parse_prepare_reply(
        outbox.build_reply(request(keys.PREPARE_MESSAGE_TYPE), {keys.PLATFORM: 2}, private=True)
    )
    assert (ready.node_id, ready.platform) == (5, 2)


def train_reply_with(key: str, value) -> Message:
    metrics = {key_: value_ for key_, value_ in PLAIN.items() if key_ not in keys.RANKING_METRICS | {keys.NUM_USERS}}
    reply = outbox.build_reply(request(), metrics, private=False, model=model())
    reply.content[keys.METRICS_RECORD] = MetricRecord({**metrics, key: value})
    return reply


def evaluate_reply_with(key: str, value) -> Message:
    reply = outbox.build_reply(request(MessageType.EVALUATE), PLAIN, private=False)
    reply.content[keys.METRICS_RECORD] = MetricRecord({**PLAIN, key: value})
    return reply


def unreadable_arrays() -> Message:
    reply = train_reply_with(keys.PLATFORM, 2)
    reply.content[keys.ARRAYS_RECORD] = MetricRecord({"shared.weight": [1.0, 2.0]})
    return reply


MALFORMED = {
    "platform negative": (lambda: train_reply_with(keys.PLATFORM, -1), lambda r: r.platform),
    "platform fractional": (lambda: train_reply_with(keys.PLATFORM, 1.5), lambda r: r.platform),
    "platform infinite": (lambda: train_reply_with(keys.PLATFORM, math.inf), lambda r: r.platform),
    "platform NaN": (lambda: train_reply_with(keys.PLATFORM, math.nan), lambda r: r.platform),
    "platform a list": (lambda: train_reply_with(keys.PLATFORM, [1, 2]), lambda r: r.platform),
    "num-examples infinite": (lambda: train_reply_with(keys.NUM_EXAMPLES, math.inf), lambda r: r.num_examples),
    "num-examples NaN": (lambda: train_reply_with(keys.NUM_EXAMPLES, math.nan), lambda r: r.num_examples),
    "num-examples a list": (lambda: train_reply_with(keys.NUM_EXAMPLES, [50]), lambda r: r.num_examples),
    "declined a list": (lambda: train_reply_with(keys.DECLINED, [1]), lambda r: r.declined or None),
    "declined infinite": (lambda: train_reply_with(keys.DECLINED, math.inf), lambda r: r.declined or None),
    "train-loss infinite": (lambda: train_reply_with(keys.TRAIN_LOSS, math.inf), lambda r: r.train_loss),
    "train-loss a list": (lambda: train_reply_with(keys.TRAIN_LOSS, [0.1, 0.2]), lambda r: r.train_loss),
    "epsilon NaN": (lambda: train_reply_with(keys.EPSILON, math.nan), lambda r: r.privacy.epsilon),
    "noise-multiplier infinite": (
        lambda: train_reply_with(keys.NOISE_MULTIPLIER, math.inf),
        lambda r: r.privacy.noise_multiplier,
    ),
    "arrays undecodable": (unreadable_arrays, lambda r: r.arrays),
    "num-users infinite": (lambda: evaluate_reply_with(keys.NUM_USERS, math.inf), lambda r: r.served),
    "num-users negative": (lambda: evaluate_reply_with(keys.NUM_USERS, -4), lambda r: r.served),
    "ranking metric infinite": (
        lambda: evaluate_reply_with(keys.ranking_metric("sampled", "hr"), math.inf),
        lambda r: r.served,
    ),
    "ranking metric a list": (
        lambda: evaluate_reply_with(keys.ranking_metric("full", "hr"), [0.1]),
        lambda r: r.served,
    ),
    "global ranking metric NaN": (
        lambda: evaluate_reply_with(keys.ranking_metric("sampled", "ndcg", keys.GLOBAL_PREFIX), math.nan),
        lambda r: r.global_model,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_parsing_reads_a_malformed_field_as_absent_and_keeps_the_rest(case):
    build, field = MALFORMED[case]
    message = build()
    parse = parse_evaluate_reply if message.metadata.message_type == MessageType.EVALUATE else parse_train_reply
    parsed = parse(message)
    assert field(parsed) is None
    if not case.startswith("platform"):
        assert parsed.platform == 2  # one odd value drops that value, never the reply


def test_a_secagg_result_is_read_by_the_same_rules_and_weighs_what_the_workflow_used():
    result = FitRes(
        Status(Code.OK, ""),
        Parameters([], ""),
        40,
        {
            keys.PLATFORM: 3,
            keys.NUM_EXAMPLES: 1e9,
            keys.TRAIN_LOSS: b"0.3",
            keys.DECLINED: True,
            keys.EPSILON: math.inf,
        },
    )
    parsed = parse_secure_train_result(9, result)
    assert (parsed.node_id, parsed.platform, parsed.num_examples, parsed.arrays) == (9, 3, 40, None)
    assert parsed.train_loss is None and parsed.declined is False  # bytes and bools are no numbers
    assert parsed.privacy.epsilon == math.inf  # an unbounded spend is a true report
    assert not parsed.sent_parameters
