"""One audited training run: canaries in, one ordinary federated run, scores and bounds out.

``run_audit`` writes the canaries into a copy of the dataset (``audit-data/``), runs the
federation on it with a mod that records every platform's update (``audit-updates/``),
scores each canary for each adversary and writes ``audit.json`` beside the run's
``summary.json``, with ``canaries.json`` (every canary, its coin, platform and scores) and
``item_inference.json`` (what the coordinator learns of each platform's items in round 1).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import (
    BUILT_IN_DATASETS,
    item_side,
    load_dataset,
    partition_only_columns,
    source_tables,
)
from crossfed.shared.data.interactions import leave_last_out
from crossfed.shared.data.loader import all_platforms, describe
from crossfed.shared.evaluation.results import write_summary
from crossfed.shared.storage.checkpoint import FinalModel
from crossfed.simulations.audit.bounds import audit_bound, auroc, ceiling, tpr_at_fpr
from crossfed.simulations.audit.canaries import (
    CanarySet,
    canary_platforms,
    draw_canaries,
    keep_users,
    write_audited_dataset,
)
from crossfed.simulations.audit.capture import Rounds, load_rounds, update_recorder
from crossfed.simulations.audit.items import score_inference
from crossfed.simulations.audit.kinds import AUDIT_FILE, OWN_ITEMS
from crossfed.simulations.audit.membership import attack_scores, membership_features, shadow_split
from crossfed.simulations.audit.scores import (
    coordinator_scores,
    fold_in_scorer,
    own_item_coordinator_scores,
    own_item_model_scores,
)

logger = logging.getLogger("crossfed.audit")

ITEM_INFERENCE_FILE = "item_inference.json"
#: How many items the item-inference attack guesses per platform.
ITEM_INFERENCE_K = 100
DATA_FOLDER = "audit-data"
UPDATES_FOLDER = "audit-updates"


def prepare_canaries(
    config: RunConfig, count: int, items_each: int, out: Path, kind: str = OWN_ITEMS
) -> tuple[RunConfig, CanarySet]:
    """Draw the canaries, write the audited dataset, and the run configuration that trains on it."""
    data = config.data
    tables = keep_users(source_tables(data.dataset, data.data_dir), data.max_users, config.experiment.seed)
    canaries = draw_canaries(tables, count, items_each, config.experiment.seed, config.privacy.privacy_unit, kind)
    hidden = partition_only_columns(data.dataset) if data.dataset in BUILT_IN_DATASETS else ()
    hidden = tuple(c for c in hidden if c != data.partition_attribute)
    folder = write_audited_dataset(tables, canaries, out / DATA_FOLDER, hidden)
    # The audit captures every round's update: it measures DP-SGD training, which has rounds; the one
    # Gram release of ``gram-subspace`` has none to capture.
    audited = config.replace(
        dataset=str(folder.resolve()),
        data_dir="",
        max_users=0,
        run_dir=str(out.resolve()),
        user_dp_mechanism="dp-sgd",
    )
    return audited, canaries.with_platforms(canary_platforms(canaries, all_platforms(audited)))


def run_audit(config: RunConfig, count: int, items_each: int, out: Path, kind: str = OWN_ITEMS) -> dict[str, Any]:
    """The audited run; returns the ``audit.json`` content (also written to ``out``)."""
    from crossfed.simulations.federated import run_federated

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    audited, canaries = prepare_canaries(config, count, items_each, out, kind)
    summary = run_federated(audited, client_mods=[update_recorder(out / UPDATES_FOLDER, out.resolve())])
    summary = {**summary, **describe(audited, all_platforms(audited)).summary_entries()}
    write_summary(out, summary)
    trained = time.perf_counter()
    result = score_audit(audited, canaries, out, summary)
    inference = item_inference(audited, load_rounds(out / UPDATES_FOLDER))
    (out / ITEM_INFERENCE_FILE).write_text(json.dumps(inference, indent=2) + "\n")
    logger.info(
        "audit: run (canaries written, trained, tested) %.1f s; scoring and item inference %.1f s",
        trained - started,
        time.perf_counter() - trained,
    )
    (out / AUDIT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def score_audit(config: RunConfig, canaries: CanarySet, out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Every adversary's scores, bounds, AUROC and TPR at 1 % FPR; saves ``canaries.json`` with the scores."""
    final = FinalModel.load(out)
    if final is None:
        raise FileNotFoundError(f"{out / FinalModel.FILE_NAME}: the run left no global model to audit")
    scores = adversary_scores(config, canaries, load_rounds(out / UPDATES_FOLDER), final.arrays)
    canaries.save(out, scores)
    result = audit_result(scores, canaries, config.privacy.delta, claimed_epsilon(summary))
    result["adversaries"]["membership"] = membership_figures(config, canaries, final.arrays)
    return result


def membership_figures(config: RunConfig, canaries: CanarySet, released: dict[str, np.ndarray]) -> dict[str, float]:
    """The user-membership attack (:mod:`crossfed.simulations.audit.membership`) on the half it did not train on."""
    dataset = load_dataset(config.data.dataset)
    item_index = {str(item): code for code, item in enumerate(dataset.item_ids)}
    num_items, item_features = item_side(config)
    features = membership_features(canaries, released, config.model, num_items, item_features, item_index)
    attack = attack_scores(features, canaries.included, shadow_split(len(canaries), canaries.seed))
    included = canaries.included[attack.scored]
    guess = audit_bound(attack.scores, included, config.privacy.delta)
    figures = {
        "epsilon_lower_bound": guess.epsilon_lower_bound,
        "auroc": auroc(attack.scores, included),
        "tpr_at_1pct_fpr": tpr_at_fpr(attack.scores, included),
    }
    logger.info(
        "audit membership: epsilon >= %.3f on the %d canaries outside the shadow, AUROC %.3f",
        guess.epsilon_lower_bound,
        len(included),
        figures["auroc"],
    )
    return figures


def adversary_scores(
    config: RunConfig, canaries: CanarySet, rounds: Rounds, released: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Each adversary's score of every canary: from the recorded updates and the released shared parameters."""
    dataset = load_dataset(config.data.dataset)
    item_index = {str(item): code for code, item in enumerate(dataset.item_ids)}
    secure = config.secure_aggregation.secagg
    if canaries.kind == OWN_ITEMS:
        return {
            "coordinator": own_item_coordinator_scores(canaries, rounds, item_index, secure),
            "model": own_item_model_scores(canaries, released, item_index),
        }
    num_items, item_features = item_side(config)
    fit = fold_in_scorer(canaries, config.model, num_items, item_features, item_index)
    return {"coordinator": coordinator_scores(canaries, rounds, fit, secure=secure), "model": fit(released)}


def audit_result(
    scores: dict[str, np.ndarray], canaries: CanarySet, delta: float, claimed: float | None
) -> dict[str, Any]:
    """The ``audit.json`` content: per adversary the bound, AUROC and TPR at 1 % FPR, beside the claim and ceiling."""
    adversaries = {}
    for name, values in scores.items():
        guess = audit_bound(values, canaries.included, delta)
        adversaries[name] = {
            "epsilon_lower_bound": guess.epsilon_lower_bound,
            "auroc": auroc(values, canaries.included),
            "tpr_at_1pct_fpr": tpr_at_fpr(values, canaries.included),
        }
        logger.info(
            "audit %s: epsilon >= %.3f (%d of %d guesses right), AUROC %.3f",
            name,
            guess.epsilon_lower_bound,
            guess.correct,
            guess.guesses,
            adversaries[name]["auroc"],
        )
    return {
        "canaries": len(canaries),
        "canary_kind": canaries.kind,
        "epsilon_claimed": claimed,
        "ceiling": ceiling(len(canaries), delta),
        "adversaries": adversaries,
    }


def claimed_epsilon(summary: dict[str, Any]) -> float | None:
    """The largest epsilon any platform's ledger reports; ``None`` for a non-private run."""
    privacy = summary.get("privacy")
    if not privacy or not privacy.get("epsilon"):
        return None
    values = [float(v) for v in privacy["epsilon"].values()]
    return max(values) if all(math.isfinite(v) for v in values) else math.inf


def item_inference(config: RunConfig, rounds: Rounds, k: int = ITEM_INFERENCE_K) -> dict[str, Any]:
    """Round 1's item inference for every platform, from its own update or, under SecAgg+, from the sum."""
    first = min(rounds)
    _reference, updates = rounds[first]
    secure = config.secure_aggregation.secagg
    total = {name: sum(u[name] for u in updates.values()) for name in next(iter(updates.values()))}
    results = []
    for platform in all_platforms(config):
        if platform.platform not in updates:
            continue
        truth = np.zeros(platform.num_items, dtype=bool)
        truth[leave_last_out(platform.interactions).train.items] = True
        seen = total if secure else updates[platform.platform]
        results.append(score_inference(platform.platform, seen, truth, k).as_dict())
    return {
        "round": first,
        "view": "sum over platforms (SecAgg+)" if secure else "each platform's update",
        "private": config.private,
        "platforms": results,
    }
