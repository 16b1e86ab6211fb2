"""A platform's own metrics log: each (round, stage, platform) counted once, readable by its owner only."""

from __future__ import annotations

import stat

import numpy as np

from crossfed.client.local_metrics import LOCAL_METRICS_FILE, read_locally, record_locally
from crossfed.shared.evaluation.per_user_results import PerUserResults
from crossfed.shared.evaluation.ranking import PROTOCOLS, UserResults


def test_a_resumed_runs_repeated_entries_are_read_once_the_last_one_winning(tmp_path):
    record_locally(tmp_path, {"round": 1, "stage": "validation", "platform": 0, "hr": 0.1})
    record_locally(tmp_path, {"round": 2, "stage": "validation", "platform": 0, "hr": 0.2})
    record_locally(tmp_path, {"round": 2, "stage": "test", "platform": 0, "hr": 0.3, "num-users": 300})
    # the run resumed from round 1: round 2 and the test are asked again
    record_locally(tmp_path, {"round": 2, "stage": "validation", "platform": 0, "hr": 0.25})
    record_locally(tmp_path, {"round": 2, "stage": "test", "platform": 0, "hr": 0.35, "num-users": 300})
    entries = read_locally(tmp_path / LOCAL_METRICS_FILE, 0)
    assert [(e["round"], e["stage"], e["hr"]) for e in entries] == [
        (1, "validation", 0.1),
        (2, "validation", 0.25),
        (2, "test", 0.35),
    ]
    assert sum(e["num-users"] for e in entries if e["stage"] == "test") == 300


def test_the_metrics_log_and_per_user_results_are_readable_by_their_owner_only(tmp_path):
    record_locally(tmp_path, {"round": 1, "stage": "train", "loss": 0.5})
    scores = {protocol: np.ones(3) for protocol in PROTOCOLS}
    results = UserResults(users=np.arange(3), hits=scores, ndcgs=scores)
    path = PerUserResults.save(tmp_path, results)
    for written in (tmp_path / LOCAL_METRICS_FILE, path):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written
