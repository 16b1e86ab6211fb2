"""Metrics of the protocols that ran: validation may carry the sampled protocol alone, the test both."""

from __future__ import annotations

import pytest

from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.progress import RoundReport
from crossfed.shared.evaluation.results import PlatformMetrics, pooled

SAMPLED_ONLY = {"platform": 1, "num-users": 30, "sampled-hr": 0.5, "sampled-ndcg": 0.25}
BOTH = {**SAMPLED_ONLY, "platform": 2, "num-users": 10, "full-hr": 0.1, "full-ndcg": 0.05}


def test_a_validation_with_the_sampled_protocol_alone_is_read_and_reported_without_full_figures():
    metrics = PlatformMetrics.from_flat(SAMPLED_ONLY)
    assert metrics.protocols == ("sampled",) and metrics.to_flat() == {"sampled-hr": 0.5, "sampled-ndcg": 0.25}
    entry = RoundReport(3, 0.4, [metrics], 1.0).as_dict()
    assert entry["validation"] == {"sampled_hr": 0.5, "sampled_ndcg": 0.25}


def test_pooling_keeps_only_the_protocols_every_platform_ran():
    both = PlatformMetrics.from_flat(BOTH)
    assert both.protocols == ("sampled", "full")
    assert pooled([both]).block(10)["full"] == {"hr@10": 0.1, "ndcg@10": 0.05}
    mixed = pooled([PlatformMetrics.from_flat(SAMPLED_ONLY), both])
    assert mixed.protocols == ("sampled",) and mixed.hr["sampled"] == pytest.approx(0.5)


def test_half_a_protocol_is_a_broken_report():
    with pytest.raises(KeyError):
        PlatformMetrics.from_flat({**SAMPLED_ONLY, "full-hr": 0.1})


@pytest.mark.parametrize(("every", "due"), [(0, []), (1, [1, 2, 3, 4, 5, 6]), (3, [3, 6])])
def test_full_ranking_runs_on_the_rounds_the_config_asks_for(every, due):
    evaluation = RunConfig().replace(full_ranking_every=every).evaluation
    assert [r for r in range(1, 7) if evaluation.full_ranking_due(r)] == due
