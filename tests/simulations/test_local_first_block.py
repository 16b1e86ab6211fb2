"""The summary's local-first block: each platform's weight and its served model paired with local-only."""

from __future__ import annotations

import numpy as np

from crossfed.client.local_metrics import LOCAL_FIRST_WEIGHT, LOCAL_ONLY_PREFIX
from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.per_user_results import LocalOnlyPerUserResults, PerUserResults
from crossfed.shared.evaluation.ranking import UserResults
from crossfed.shared.evaluation.results import PlatformMetrics, platform_dir
from crossfed.simulations.local_first import local_first_block

USERS = 400


def _results(hits: np.ndarray) -> UserResults:
    hits = hits.astype(np.float64)
    full = hits * (np.arange(len(hits)) % 4 == 0)
    return UserResults(
        users=np.arange(len(hits)), hits={"sampled": hits, "full": full}, ndcgs={"sampled": hits / 2, "full": full / 3}
    )


def _platform(run_dir, platform: int, weight: float, served: np.ndarray, alone: np.ndarray) -> dict:
    """A platform's files as a local-first test leaves them: per-user outcomes and its log entry."""
    directory = platform_dir(run_dir, platform)
    directory.mkdir(parents=True)
    PerUserResults.save(directory, _results(served))
    LocalOnlyPerUserResults.save(directory, _results(alone))
    return {
        "round": 3,
        "stage": "test",
        "platform": platform,
        "num-users": len(served),
        **PlatformMetrics.from_results(platform, _results(served)).to_flat(),
        LOCAL_FIRST_WEIGHT: weight,
        **PlatformMetrics.from_results(platform, _results(alone)).to_flat(prefix=LOCAL_ONLY_PREFIX),
    }


def test_each_platform_is_paired_with_its_local_only_model_on_the_same_users(tmp_path):
    rng = np.random.default_rng(0)
    alone = rng.random((3, USERS)) < 0.5
    better, same, worse = alone[0] | (rng.random(USERS) < 0.3), alone[1].copy(), alone[2] & (rng.random(USERS) < 0.6)
    entries = [
        _platform(tmp_path, 0, 0.5, better, alone[0]),
        _platform(tmp_path, 1, 0.0, same, alone[1]),
        _platform(tmp_path, 2, 1.0, worse, alone[2]),
    ]
    block = local_first_block(RunConfig(), tmp_path, entries[::-1])
    assert block is not None
    assert [p["weight"] for p in block["per_platform"]] == [0.5, 0.0, 1.0]
    assert block["platforms_significantly_better"] == [0]
    assert block["platforms_significantly_worse"] == [2]
    gains = [p["served_minus_local_only"] for p in block["per_platform"]]
    assert gains[1] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    expected = [float(np.mean(s.astype(float) - a)) for s, a in zip((better, same, worse), alone)]
    assert np.allclose([g["mean"] for g in gains], expected)
    assert np.isclose(block["mean_gain_over_platforms"], np.mean(expected))
    assert np.isclose(block["local_only_metrics"]["sampled"]["hr@10"], alone.mean())
    assert np.isclose(block["per_platform"][2]["local_only_metrics"]["sampled"]["hr@10"], alone[2].mean())


def test_no_local_first_entry_means_no_block(tmp_path):
    entry = {"round": 3, "stage": "test", "platform": 0, "num-users": 1, "sampled-hr": 1.0, "sampled-ndcg": 1.0}
    assert local_first_block(RunConfig(), tmp_path, [entry]) is None


def test_a_platform_without_its_per_user_files_has_no_interval(tmp_path):
    entry = _platform(tmp_path, 0, 0.25, np.ones(10, bool), np.zeros(10, bool))
    (platform_dir(tmp_path, 0) / LocalOnlyPerUserResults.FILE_NAME).unlink()
    block = local_first_block(RunConfig(), tmp_path, [entry])
    assert block is not None
    assert block["per_platform"][0]["served_minus_local_only"] is None
    assert block["mean_gain_over_platforms"] is None
    assert block["platforms_significantly_worse"] == []
