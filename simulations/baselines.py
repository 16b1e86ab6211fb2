"""The two baselines that say whether federation pays, in the same code, split and protocol.

* ``centralized``: every platform's training data pooled into one model - the upper bound
  (users stay distinct per platform; nobody links identities).
* ``local-only``: each platform trains the whole model alone - what a platform has
  without crossfed.
* ``popularity``: no model; items ranked by how often they were trained on, per platform
  and over all platforms - the reference a learned model must beat.

The two models train for at most ``num-server-rounds x local-epochs`` epochs, the federated
run's budget, in blocks of ``local-epochs`` (a round), and stop early by the federated run's
rule (``crossfed.shared.training.early_stopping``): each is tested at its best round. A
local-only platform stops on its own validation split, as a platform alone would: its
neighbours' figures are not something it could see. All three rank exactly the same
candidate lists as the federated run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import PlatformData, leave_last_out, pool
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.evaluation.per_user_results import GlobalPerUserResults, PerUserResults
from crossfed.shared.evaluation.progress import RoundReport, validation_score
from crossfed.shared.evaluation.ranking import UserResults
from crossfed.shared.evaluation.results import PlatformMetrics, build_summary, platform_dir, write_summary
from crossfed.shared.trainer import PlatformTrainer, rank_on_split
from crossfed.shared.training.early_stopping import EarlyStopping, ModelState, copy_state

logger = logging.getLogger(__name__)


def run_local_only(config: RunConfig) -> dict[str, Any]:
    """Each platform alone, stopping on its own validation split.

    A platform that stopped shows in later progress lines with its best round's figures (the model it is
    tested with) while the others go on; the training loss is the mean over the platforms still training.
    """
    run_started = time.perf_counter()
    trainers = [PlatformTrainer(data, config) for data in all_platforms(config)]
    stopping = [EarlyStopping(config.federation.patience) for _ in trainers]
    best_states: list[ModelState] = [copy_state(trainer.model) for trainer in trainers]
    best_validation: list[PlatformMetrics | None] = [None] * len(trainers)
    started = time.perf_counter()  # the history's clock: training, as in the federated run
    history: list[dict[str, Any]] = []
    for block in range(1, config.federation.num_server_rounds + 1):
        active = [i for i, rule in enumerate(stopping) if not rule.should_stop]
        if not active:
            break
        losses = [trainers[i].train(config.training.local_epochs, salt=block).loss for i in active]
        full = config.evaluation.full_ranking_due(block)
        validation: list[PlatformMetrics] = []
        for i, trainer in enumerate(trainers):
            if i not in active:
                validation.extend(metrics for metrics in [best_validation[i]] if metrics is not None)
                continue
            measured = PlatformMetrics.from_results(trainer.data.platform, trainer.evaluate("validation", full=full))
            validation.append(measured)
            if stopping[i].report(block, validation_score([measured])):
                best_states[i], best_validation[i] = copy_state(trainer.model), measured
            if stopping[i].should_stop:
                _log_stop(f"platform {trainer.data.platform}", stopping[i])
        _record(history, RoundReport(block, float(np.mean(losses)), validation, time.perf_counter() - started), config)
    for trainer, state in zip(trainers, best_states):
        trainer.model.load_state_dict(state)
    outcome = {trainer.data.platform: rule.outcome() for trainer, rule in zip(trainers, stopping)}
    extra = {
        "selected_round": max(o["selected_round"] for o in outcome.values()),
        "stopped_round": max(o["stopped_round"] for o in outcome.values()),
        "selected_rounds": {str(p): o["selected_round"] for p, o in outcome.items()},
        "stopped_rounds": {str(p): o["stopped_round"] for p, o in outcome.items()},
    }
    return _test_and_finish(
        "local-only", config, trainers, history, run_started=run_started, started=started, extra=extra
    )


def run_centralized(config: RunConfig) -> dict[str, Any]:
    run_started = time.perf_counter()
    platforms = all_platforms(config)
    pooled_data = pool(list(platforms))
    trainer = PlatformTrainer(pooled_data, config)
    offsets = np.cumsum([0] + [p.num_users for p in platforms])
    evaluators = [_PooledEvaluator(trainer, data, int(offset), config) for data, offset in zip(platforms, offsets)]
    stopping = EarlyStopping(config.federation.patience)
    best_state = copy_state(trainer.model)
    started = time.perf_counter()  # the history's clock: training, as in the federated run
    history: list[dict[str, Any]] = []
    for block in range(1, config.federation.num_server_rounds + 1):
        loss = trainer.train(config.training.local_epochs, salt=block).loss
        validation = [e.validate(full=config.evaluation.full_ranking_due(block)) for e in evaluators]
        _record(history, RoundReport(block, loss, validation, time.perf_counter() - started), config)
        if stopping.report(block, validation_score(validation)):
            best_state = copy_state(trainer.model)
        if stopping.should_stop:
            _log_stop("centralized", stopping)
            break
    trainer.model.load_state_dict(best_state)
    return _test_and_finish(
        "centralized", config, evaluators, history, run_started=run_started, started=started, extra=stopping.outcome()
    )


def run_popularity(config: RunConfig) -> dict[str, Any]:
    """Rank items by how often they were trained on: the reference any learned model must beat.

    ``metrics`` rank by the platform's own training counts (what a platform has alone),
    ``global_metrics`` by the counts over every platform's training data (what pooling counts
    gives); both on the same split and candidate lists as the models.
    """
    run_started = time.perf_counter()
    platforms = all_platforms(config)
    testers = [_PopularityTester(data, config) for data in platforms]
    everywhere = np.sum([t.counts for t in testers], axis=0)
    for tester in testers:
        tester.everywhere = everywhere
    summary = _test_and_finish(
        "popularity",
        config,
        testers,
        [],
        run_started=run_started,
        started=time.perf_counter(),
        extra={"selected_round": 0, "stopped_round": 0},
    )
    summary.update(rounds=0, local_epochs=0)  # nothing is trained
    write_summary(config.experiment.run_dir, summary)
    return summary


class _PopularityTester:
    """One platform's popularity rankings: by its own training counts and by everyone's."""

    def __init__(self, data: PlatformData, config: RunConfig) -> None:
        self.data, self.config = data, config
        self.split = leave_last_out(data.interactions)
        self.counts = np.bincount(self.split.train.items, minlength=data.num_items).astype(np.float32)
        self.everywhere = self.counts

    def _evaluate(self, counts: np.ndarray) -> UserResults:
        scores = torch.as_tensor(counts)
        return rank_on_split(
            lambda users, items: scores.expand(len(users), -1) if items is None else scores[items],
            self.data,
            self.split,
            self.config,
            "test",
        )

    def test(self) -> tuple[UserResults, UserResults]:
        return self._evaluate(self.counts), self._evaluate(self.everywhere)


class _PooledEvaluator:
    """One platform's view of the pooled model: its users and its candidate lists."""

    def __init__(self, trainer: PlatformTrainer, data: PlatformData, offset: int, config: RunConfig) -> None:
        self.trainer, self.data, self.offset, self.config = trainer, data, offset, config
        self.split = leave_last_out(data.interactions)

    def _evaluate(self, stage: str, full: bool = True) -> UserResults:
        model = self.trainer.model
        model.eval()
        return rank_on_split(
            lambda users, items: model.score(users + self.offset, items),
            self.data,
            self.split,
            self.config,
            stage,
            full=full,
        )

    def validate(self, full: bool) -> PlatformMetrics:
        return PlatformMetrics.from_results(self.data.platform, self._evaluate("validation", full=full))

    def test(self) -> tuple[UserResults, UserResults]:
        final = self._evaluate("test")
        return final, final


def _test_and_finish(
    mode: str,
    config: RunConfig,
    testers: list[PlatformTrainer] | list[_PooledEvaluator] | list[_PopularityTester],
    history: list[dict[str, Any]],
    *,
    run_started: float,
    started: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Test each platform once, keep its per-user outcomes on its own disk, write the summary (with ``extra``)."""
    served, final = [], []
    for tester in testers:
        platform = tester.data.platform
        served_results, final_results = tester.test()
        directory = platform_dir(config.experiment.run_dir, platform)
        PerUserResults.save(directory, served_results)
        GlobalPerUserResults.save(directory, final_results)
        served.append(PlatformMetrics.from_results(platform, served_results))
        final.append(PlatformMetrics.from_results(platform, final_results))
    summary = build_summary(
        mode=mode,
        config=config,
        wall_seconds=time.perf_counter() - run_started,
        startup_seconds=started - run_started,
        test=served,
        global_test=final,
        history=history,
        extra=extra,
    )
    write_summary(config.experiment.run_dir, summary)
    return summary


def _log_stop(who: str, stopping: EarlyStopping) -> None:
    logger.info(
        "%s: no better validation HR in %d round(s); stopping after round %d, testing round %d",
        who,
        stopping.rounds_without_improvement,
        stopping.last_round,
        stopping.best_round,
    )


def _record(history: list[dict[str, Any]], report: RoundReport, config: RunConfig) -> None:
    history.append(report.as_dict())
    report.log(config)
