"""Serving: top-K unseen items per user, with scores and explanations, on the platform itself.

Why it lives on the platform: the user tower never leaves it, so neither can serving. The
service combines the platform's latest local state (its user tower, from ``PlatformState``)
with the latest global parameters the coordinator distributed (its ``Checkpoint`` each round,
its ``FinalModel`` at the end), and serves either that global model or a private copy built
from it on the platform: fine-tuned, or local first (config key ``serve-model``; under DP the
default is local first); the copy is cached in the platform's own state
directory (``PrivateCopy``) and never sent anywhere. A platform state is only served with the
users it was trained on, row for row: an interactions file with other users is refused.

Explanations (``crossfed.client.serving.explanations``) quote only the user's own past items and the item's
features those items share. Users without history get
the cold-start list (``crossfed.client.serving.cold_start``); users folded in since the last round
(``crossfed.client.serving.foldin``) are served from their folded-in vector.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from crossfed.client.serving.cold_start import Popularity, Segment, find_segment
from crossfed.client.serving.explanations import Explainer, Explanation
from crossfed.client.serving.foldin import fold_in, segment_start
from crossfed.client.serving.scoring import CatalogScorer
from crossfed.shared.config import RunConfig
from crossfed.shared.data.platform_files import OperatorData
from crossfed.shared.errors import CrossfedError
from crossfed.shared.model.sharing import load_local_parameters, load_shared_arrays
from crossfed.shared.storage.checked import atomic_write_bytes, read_record
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.foldins import FoldIns
from crossfed.shared.storage.platform_state import PlatformState, PlatformUsersError
from crossfed.shared.storage.served_copy import PrivateCopy
from crossfed.shared.trainer import local_first_copy, platform_model
from crossfed.shared.training.private_copy import combined_copy, local_model, private_copy

logger = logging.getLogger(__name__)


class ServingError(CrossfedError, RuntimeError):
    """The platform cannot serve: missing state, mismatched files; the message says what to do."""


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    explanation: Explanation


# --------------------------------------------------------------------------------------------
# Files


@dataclass
class GlobalParameters:
    arrays: dict[str, np.ndarray]
    config: dict[str, Any]
    last_round: int | None
    source: str
    #: A final model's round selected by early stopping (None for a checkpoint): its user tower goes with it.
    selected_round: int | None = None


def load_global_parameters(path: str | Path) -> GlobalParameters:
    """The coordinator's latest parameters: a run folder or either of its files.

    In a run folder the newer file wins. A finished run writes its final model (early stopping's
    selected round, the model it tested) after its last checkpoint, so that is what a platform
    serves; a run still going, or resumed into the same folder, has a newer checkpoint.
    """
    p = Path(path)
    if p.is_dir():
        present = [p / kind.FILE_NAME for kind in (FinalModel, Checkpoint) if (p / kind.FILE_NAME).is_file()]
        if not present:
            raise ServingError(f"{p}: holds neither {Checkpoint.FILE_NAME} nor {FinalModel.FILE_NAME}")
        p = max(present, key=lambda file: file.stat().st_mtime_ns)  # ties: the final model, listed first
    if not p.is_file():
        raise ServingError(f"{p}: global parameters not found")
    record = read_record(p, Checkpoint, FinalModel)
    if isinstance(record, Checkpoint):
        return GlobalParameters(dict(record.arrays), dict(record.config), record.last_round, str(p))
    return GlobalParameters(dict(record.arrays), dict(record.config), None, str(p), record.selected_round or None)


def _fingerprint(*parts: Any) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, nn.Module):
            for name, tensor in part.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The service


class RecommendationService:
    """Top-K recommendations with explanations for one platform's users."""

    def __init__(
        self,
        platform: OperatorData,
        config: RunConfig,
        global_parameters: GlobalParameters,
        state_dir: str | Path,
    ) -> None:
        self.platform = platform
        self.config = config
        self.state_dir = Path(state_dir)
        data = platform.data
        expected_version = config.data.catalog_version
        if expected_version and platform.catalog is not None and platform.catalog.version != expected_version:
            raise ServingError(
                f"the global model was trained on catalog version {config.data.catalog_version!r}, the "
                f"platform's catalog is {platform.catalog.version!r}; serve with the matching catalog"
            )
        self.global_model = platform_model(data, config)
        try:
            load_shared_arrays(self.global_model, global_parameters.arrays)
        except ValueError as error:
            raise ServingError(
                f"{global_parameters.source} does not fit this platform's model ({error}); is it from "
                "the run this platform takes part in, with the same catalog?"
            ) from None
        try:
            state = PlatformState.load_for_users(self.state_dir, platform.user_ids)
        except PlatformUsersError as error:
            raise ServingError(
                f"{error}. Serve with the interactions file the platform trained on and fold newer "
                "interactions in (crossfed fold-in)"
            ) from None
        if state is None:
            raise ServingError(
                f"{self.state_dir}: no platform state ({PlatformState.FILE_NAME}); the platform must "
                "train in at least one round before it can serve"
            )
        # The final model is early stopping's selected round: serve it with the user tower of that round.
        user_tower = state.kept_towers.get(global_parameters.selected_round or -1, state.user_tower)
        try:
            load_local_parameters(self.global_model, user_tower)
        except ValueError as error:
            raise ServingError(
                f"{self.state_dir}: the platform state does not fit the interactions file ({error}). "
                "Serve with the file the platform trained on and fold newer interactions in "
                "(crossfed fold-in)"
            ) from None
        self.global_model.eval()
        self.state_round = state.last_round
        self.model = self._served_model()
        self.scorer = CatalogScorer(self.model)
        self.fingerprint = _fingerprint(self.model, config.serving.foldin_steps, config.serving.foldin_learning_rate)
        self.histories = [np.unique(h) for h in data.interactions.items_per_user()]
        self.popularity = Popularity(data.interactions)
        self.item_ids = platform.item_ids
        self.explainer = Explainer(
            self.global_model, platform.item_ids, platform.tables.items, platform.tables.feature_kinds.get("items", {})
        )
        self.foldins = self._load_foldins()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        platform: OperatorData,
        global_parameters: str | Path,
        state_dir: str | Path,
        overrides: Mapping[str, Any] | None = None,
    ) -> RecommendationService:
        """Serve ``platform`` with the global parameters at ``global_parameters`` and the state in ``state_dir``.

        The model's shape comes from the configuration saved with the global parameters;
        ``overrides`` (the platform's own serving keys: ``serve-model``, ``top-k``, fold-in
        settings) are applied on top.
        """
        parameters = load_global_parameters(global_parameters)
        config = RunConfig.from_mapping(parameters.config, overrides)
        return cls(platform, config, parameters, state_dir)

    def _served_model(self) -> nn.Module:
        kind = self.config.served_model
        if kind == "global":
            return self.global_model
        fingerprint = _fingerprint(self.global_model, *self._copy_settings(kind))
        cached = PrivateCopy.load(self.state_dir)
        fresh = cached is None or cached.fingerprint != fingerprint
        copy = self._private_copy(kind, train=fresh)
        if cached is not None and not fresh:
            copy.load_state_dict(cached.parameters)
            logger.info("serving the cached private copy from %s", self.state_dir / PrivateCopy.FILE_NAME)
        else:
            PrivateCopy(fingerprint, copy.state_dict()).save(self.state_dir)
            logger.info("built a private %s copy and cached it in %s", kind, self.state_dir)
        copy.eval()
        return copy

    def _copy_settings(self, kind: str) -> tuple[Any, ...]:
        """Everything besides the global model that a private copy of ``kind`` is built from."""
        serving = self.config.serving
        common = (kind, serving.finetune_learning_rate, serving.finetune_embedding_dim, serving.finetune_mlp_layers)
        if kind == "fine-tuned":
            return (*common, serving.finetune_epochs)
        config = self.config
        return (
            *common,
            serving.local_first_weights,
            config.model,
            config.training,
            config.federation.num_server_rounds,
            config.experiment.seed,
        )

    def _private_copy(self, kind: str, train: bool) -> nn.Module:
        data = self.platform.data
        if kind == "local-first":
            if train:
                return local_first_copy(self.global_model, data, self.config)
            return combined_copy(self.global_model, local_model(data, data.interactions, self.config, trained=False), 0)
        return private_copy(self.global_model, data, data.interactions, self.config, epochs=None if train else 0)

    # -- fold-in ---------------------------------------------------------------------------

    def _load_foldins(self) -> FoldIns:
        record = FoldIns.load(self.state_dir) or FoldIns(fingerprint=self.fingerprint)
        if record.items and record.fingerprint != self.fingerprint:
            logger.info("model changed since %d users were folded in; folding them in again", len(record.items))
            record.vectors = self._fold(record.items, record.features)
            record.fingerprint = self.fingerprint
        return record

    def fold_in(
        self,
        new_items: Mapping[str, Sequence[int]],
        features: Mapping[str, Mapping[str, str]] | None = None,
        *,
        save: bool = True,
    ) -> dict[str, int]:
        """Update the vectors of ``new_items``' users (item codes) now; returns each user's history size.

        Known users start from their trained vector, new users from their feature segment's mean.
        Saved atomically in the platform's state directory (``FoldIns``) unless ``save`` is False.
        """
        record = self.foldins
        for user_id, items in new_items.items():
            merged = set(record.items.get(user_id, [])) | {int(i) for i in items}
            record.items[user_id] = sorted(merged)
        for user_id, given in (features or {}).items():
            record.features[user_id] = {str(k): str(v) for k, v in given.items()}
        touched = list(new_items)
        vectors = self._fold({u: record.items[u] for u in touched}, record.features)
        record.vectors.update(vectors)
        record.fingerprint = self.fingerprint
        if save:
            record.save(self.state_dir)
        return {u: len(self._history(u)) for u in touched}

    def _fold(
        self, items: Mapping[str, Sequence[int]], features: Mapping[str, Mapping[str, str]]
    ) -> dict[str, list[torch.Tensor]]:
        users = list(items)
        if not users:
            return {}
        parts = self.scorer.parts
        starts: list[list[torch.Tensor]] = [[] for _ in parts]
        histories = []
        for user_id in users:
            code = self.platform.user_code(user_id)
            if code >= 0:
                vectors = self.scorer.user_vectors(torch.tensor([code]))
            else:
                vectors = segment_start(parts, self._segment(user_id, features.get(user_id)).users)
            for j, v in enumerate(vectors):
                starts[j].append(v)
            known = self.histories[code] if code >= 0 else np.zeros(0, dtype=np.int64)
            histories.append(np.union1d(known, np.asarray(items[user_id], dtype=np.int64)))
        folded = fold_in(
            self.scorer,
            [torch.cat(s) for s in starts],
            histories,
            steps=self.config.serving.foldin_steps,
            learning_rate=self.config.serving.foldin_learning_rate,
            negatives=self.config.training.negatives,
            seed=self.config.experiment.seed,
        )
        return {u: [f[row : row + 1] for f in folded] for row, u in enumerate(users)}

    # -- recommending ------------------------------------------------------------------------

    def _history(self, user_id: str) -> np.ndarray:
        code = self.platform.user_code(user_id)
        known = self.histories[code] if code >= 0 else np.zeros(0, dtype=np.int64)
        extra = self.foldins.items.get(user_id)
        return np.union1d(known, np.asarray(extra, dtype=np.int64)) if extra else known

    def history(self, user_id: str) -> list[str]:
        """Catalog ids of every item the platform knows ``user_id`` interacted with."""
        return [str(self.item_ids[i]) for i in self._history(user_id)]

    def _segment(self, user_id: str, given: Mapping[str, str] | None) -> Segment:
        if given is None:
            given = self._features_on_file(user_id)
        return find_segment(self.platform.attributes, given)

    def _features_on_file(self, user_id: str) -> dict[str, str] | None:
        users = self.platform.tables.users
        if users is None:
            return None
        row = users.loc[users["user_id"] == user_id]
        if row.empty:
            return None
        return {k: v for k, v in row.iloc[0].items() if k != "user_id" and not pd.isna(v)}

    def recommend(
        self, user_id: str, k: int | None = None, features: Mapping[str, str] | None = None
    ) -> list[Recommendation]:
        """Top ``k`` (default ``top-k``) items ``user_id`` has not interacted with, best first.

        ``features`` only matter for a user without any history (cold start); otherwise the
        platform's user table is consulted.
        """
        k = self.config.evaluation.top_k if k is None else k
        user_id = str(user_id)
        seen = self._history(user_id)
        code = self.platform.user_code(user_id)
        if user_id in self.foldins.vectors:
            scores, basis = self.scorer.scores(self.foldins.vectors[user_id])[0], "fold-in"
        elif code >= 0:
            scores, basis = self.scorer.scores(self.scorer.user_vectors(torch.tensor([code])))[0], "history"
        else:
            segment = self._segment(user_id, features or self.foldins.features.get(user_id))
            scores = torch.as_tensor(self.popularity.scores(segment))
            basis = f"cold start: {segment.describe()}"
        scores = scores.clone()
        if len(seen):
            scores[torch.as_tensor(seen)] = -torch.inf
        count = min(k, self.scorer.num_items - len(seen))
        top = torch.topk(scores, count).indices.numpy() if count > 0 else np.zeros(0, dtype=np.int64)
        return [
            Recommendation(str(self.item_ids[i]), float(scores[i]), explanation)
            for i, explanation in zip(top, self.explainer.explain(top, seen, basis))
        ]

    def recommend_many(self, user_ids: Iterable[str], k: int | None = None) -> dict[str, list[Recommendation]]:
        return {str(u): self.recommend(str(u), k) for u in user_ids}

    def all_users(self) -> list[str]:
        return [*map(str, self.platform.user_ids), *(u for u in self.foldins.items if self.platform.user_code(u) < 0)]

    def write_all(self, path: str | Path, k: int | None = None, users: Iterable[str] | None = None) -> int:
        """Write every user's top ``k`` to ``path`` (``.csv`` or ``.jsonl``) atomically; returns the rows written."""
        path = Path(path)
        rows = [
            row
            for u in (users if users is not None else self.all_users())
            for row in recommendation_rows(u, self.recommend(u, k))
        ]
        if path.suffix.lower() == ".jsonl":
            data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        elif path.suffix.lower() == ".csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(ROW_FIELDS))
            writer.writeheader()
            writer.writerows(
                {
                    **row,
                    "similar_items": " ".join(f"{i}:{s:.3f}" for i, s in row["similar_items"]),
                    "matching_features": "; ".join(f"{c}={'|'.join(v)}" for c, v in row["matching_features"].items()),
                }
                for row in rows
            )
            data = buffer.getvalue().encode()
        else:
            raise ServingError(f"{path}: write recommendations to a .csv or .jsonl file")
        atomic_write_bytes(path, data)
        return len(rows)


ROW_FIELDS = ("user_id", "rank", "item_id", "score", "similar_items", "matching_features", "basis")


def recommendation_rows(user_id: str, recommendations: Sequence[Recommendation]) -> list[dict[str, Any]]:
    """One flat row per recommendation (for files and JSON)."""
    return [
        {
            "user_id": user_id,
            "rank": rank,
            "item_id": r.item_id,
            "score": round(r.score, 6),
            "similar_items": [list(s) for s in r.explanation.similar_items],
            "matching_features": {c: list(v) for c, v in r.explanation.matching_features.items()},
            "basis": r.explanation.basis,
        }
        for rank, r in enumerate(recommendations, start=1)
    ]


__all__ = [
    "Explanation",
    "GlobalParameters",
    "Recommendation",
    "RecommendationService",
    "ServingError",
    "load_global_parameters",
    "recommendation_rows",
]
