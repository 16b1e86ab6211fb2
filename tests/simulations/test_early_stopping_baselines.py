"""Centralized and local-only stop early by the federated rule and are tested with their best round's model.

Validation scores are scripted (``validation_score`` replaced), so which round is best is known in advance;
everything else - training, copying and restoring the model, testing - is the real code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import pytest
import torch

import crossfed.simulations.baselines as baselines
from crossfed.shared.config import RunConfig
from crossfed.shared.errors import UsageError
from crossfed.shared.evaluation.results import PlatformMetrics
from crossfed.shared.trainer import PlatformTrainer
from crossfed.simulations.baselines import run_centralized, run_local_only
from crossfed.simulations.runner import check_keys_for_mode

#: Validation HR@10 by platform, one per round: platform 0 peaks in round 2 and stops after round 4
#: (patience 2); platform 1 improves every round and trains the whole budget of 6.
SCRIPTED = {0: [0.30, 0.50, 0.40, 0.45, 0.90, 0.95], 1: [0.10, 0.20, 0.30, 0.40, 0.50, 0.60]}
#: Pooled (centralized) scores: best in round 2, no strict improvement in rounds 3 and 4 (a tie included).
POOLED = [0.30, 0.50, 0.40, 0.50, 0.90, 0.95]


def tiny_config(movielens_dir, tmp_path, **settings) -> RunConfig:
    return RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(tmp_path),
        max_users=60,
        num_platforms=2,
        partition="iid",
        num_server_rounds=6,
        embedding_dim=8,
        mlp_layers="16,8",
        patience=2,
        **settings,
    )


def fingerprint(model: torch.nn.Module) -> list[torch.Tensor]:
    return [value.detach().clone() for value in model.state_dict().values()]


def same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return len(first) == len(second) and all(torch.equal(a, b) for a, b in zip(first, second))


def test_centralized_stops_after_patience_and_tests_the_best_epoch(movielens_dir, tmp_path, monkeypatch):
    scores = iter(POOLED)
    monkeypatch.setattr(baselines, "validation_score", lambda validation: next(scores))
    validated: list[list[torch.Tensor]] = []  # the model after each round, as validated
    tested: list[list[torch.Tensor]] = []
    validate, test = baselines._PooledEvaluator.validate, baselines._PooledEvaluator.test

    def recording_validate(self, full):
        if self.data.platform == 0:
            validated.append(fingerprint(self.trainer.model))
        return validate(self, full)

    def recording_test(self):
        tested.append(fingerprint(self.trainer.model))
        return test(self)

    monkeypatch.setattr(baselines._PooledEvaluator, "validate", recording_validate)
    monkeypatch.setattr(baselines._PooledEvaluator, "test", recording_test)
    summary = run_centralized(tiny_config(movielens_dir, tmp_path))
    assert [entry["round"] for entry in summary["history"]] == [1, 2, 3, 4]
    assert (summary["selected_round"], summary["stopped_round"]) == (2, 4)
    assert len(validated) == 4 and not same(validated[1], validated[3])
    assert all(same(model, validated[1]) for model in tested)  # round 2's model, not the last


def test_patience_zero_trains_the_whole_budget_and_still_tests_the_best(movielens_dir, tmp_path, monkeypatch):
    scores = iter([0.30, 0.50, 0.40, 0.45, 0.42, 0.41])
    monkeypatch.setattr(baselines, "validation_score", lambda validation: next(scores))
    summary = run_centralized(tiny_config(movielens_dir, tmp_path).replace(patience=0))
    assert len(summary["history"]) == 6
    assert (summary["selected_round"], summary["stopped_round"]) == (2, 6)


def test_each_local_only_platform_stops_on_its_own_validation(movielens_dir, tmp_path, monkeypatch):
    calls: dict[int, int] = defaultdict(int)

    def scripted(validation: Sequence[PlatformMetrics]) -> float:
        (measured,) = validation
        calls[measured.platform] += 1
        return SCRIPTED[measured.platform][calls[measured.platform] - 1]

    monkeypatch.setattr(baselines, "validation_score", scripted)
    validated: dict[int, list[list[torch.Tensor]]] = defaultdict(list)
    tested: dict[int, list[torch.Tensor]] = {}
    evaluate = PlatformTrainer.evaluate

    def recording_evaluate(self, stage, model=None, *, full=True):
        if stage == "validation":
            validated[self.data.platform].append(fingerprint(self.model))
        elif stage == "test":
            tested[self.data.platform] = fingerprint(self.model)
        return evaluate(self, stage, model, full=full)

    monkeypatch.setattr(PlatformTrainer, "evaluate", recording_evaluate)
    summary = run_local_only(tiny_config(movielens_dir, tmp_path))
    assert summary["selected_rounds"] == {"0": 2, "1": 6} and summary["stopped_rounds"] == {"0": 4, "1": 6}
    assert (summary["selected_round"], summary["stopped_round"]) == (6, 6)
    assert len(validated[0]) == 4 and len(validated[1]) == 6  # platform 0 trained no further after round 4
    assert same(tested[0], validated[0][1]) and not same(tested[0], validated[0][3])
    assert same(tested[1], validated[1][5])
    # A platform that stopped appears in later progress lines with its best round's figures.
    late = summary["history"][-1]["per_platform"]
    assert set(late) == {"0", "1"}
    assert late["0"] == summary["history"][1]["per_platform"]["0"]


@pytest.mark.parametrize("run", [run_centralized, run_local_only])
def test_the_summary_says_which_round_was_tested(run, movielens_dir, tmp_path):
    summary = run(tiny_config(movielens_dir, tmp_path).replace(num_server_rounds=2, patience=5))
    assert 1 <= summary["selected_round"] <= summary["stopped_round"] == 2


def test_patience_is_a_key_of_every_training_mode_and_refused_without_training():
    for mode in ("federated", "centralized", "local-only"):
        check_keys_for_mode(mode, {"patience"}, RunConfig())
    with pytest.raises(UsageError, match="'patience' has no effect in mode 'popularity'"):
        check_keys_for_mode("popularity", {"patience"}, RunConfig())
