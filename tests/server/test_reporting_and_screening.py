"""What the coordinator records and accepts cannot be steered by what one reply claims."""

from __future__ import annotations

import numpy as np
import pytest

from crossfed.server.federation import _epsilon, privacy_block
from crossfed.server.screening import problem_with
from crossfed.shared.config import RunConfig
from crossfed.shared.protocol.replies import EvaluateReply, PrivacyReport, TrainReply


def _train(node: int, platform: int, epsilon: float) -> TrainReply:
    return TrainReply(node, platform, 1, False, None, None, None, PrivacyReport(epsilon=epsilon))


def test_a_platform_claiming_anothers_index_cannot_overwrite_its_epsilon():
    honest, liar = _train(11, 0, 7.5), _train(12, 0, 0.1)
    recorded = _epsilon([honest, _train(13, 1, 7.4), liar])
    assert recorded[1] == 7.4 and 0 not in recorded
    assert recorded["node-11"] == 7.5 and recorded["node-12"] == 0.1


def test_the_summary_keys_epsilon_by_node_when_an_index_is_claimed_twice():
    replies = [EvaluateReply(node, 0, None, None, PrivacyReport(epsilon=eps)) for node, eps in ((5, 7.9), (6, 0.0))]
    block = privacy_block(RunConfig().replace(privacy_unit="user"), replies)
    assert block["epsilon"] == {"node-5": 7.9, "node-6": 0.0}


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_an_update_of_another_float_dtype_is_rejected(dtype):
    reference = {"w": np.zeros(3, np.float32)}
    problem = problem_with({"w": np.zeros(3, dtype)}, reference, 0.0)
    assert problem is not None and "dtype" in problem
    assert problem_with({"w": np.zeros(3, np.float32)}, reference, 0.0) is None
