"""Towers that turn an id plus its features into one vector.

A tower is an id embedding plus one embedding per encoded feature, summed, so a
rarely seen id still gets a useful vector from its features (genres, year, age, ...).
Feature values live in buffers, never in parameters: they are data, not learned, and
the sharing rule (``crossfed.shared.model.sharing``) only ever sends parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from crossfed.shared.data.features import EncodedFeature
from crossfed.shared.model.multi_hot import MultiHotEmbedding, index_bags

EMBEDDING_INIT_STD = 0.01


class FeatureEmbedding(nn.Module):
    """Sum of learned embeddings of a row's encoded features.

    Categorical features use ``nn.Embedding`` (index 0 = missing), multi-hot features
    (genres, title words) a bias-free linear map of the row's mean-normalised indicator
    vector, computed from its non-zero entries only (:class:`MultiHotEmbedding`), and all
    numeric features together one ``nn.Linear``.
    """

    def __init__(self, features: dict[str, EncodedFeature], dim: int) -> None:
        super().__init__()
        self.categorical_names: list[str] = []
        self.multi_hot_names: list[str] = []
        self.categorical = nn.ModuleDict()
        self.multi_hot = nn.ModuleDict()
        numeric_columns: list[np.ndarray] = []
        for name, feature in sorted(features.items()):
            key = _module_key(name)
            if feature.kind == "categorical":
                self.categorical[key] = nn.Embedding(feature.cardinality, dim)
                self.register_buffer(f"values_{key}", torch.as_tensor(feature.values, dtype=torch.long))
                self.categorical_names.append(key)
            elif feature.kind == "multi_hot":
                counts = np.maximum(feature.values.sum(axis=1, keepdims=True), 1.0)
                self.multi_hot[key] = MultiHotEmbedding(feature.values.shape[1], dim)
                tokens, weights = index_bags(feature.values / counts)
                self.register_buffer(f"tokens_{key}", tokens)
                self.register_buffer(f"token_weights_{key}", weights)
                self.multi_hot_names.append(key)
            elif feature.kind == "numeric":
                numeric_columns.append(np.asarray(feature.values, dtype=np.float32))
            else:
                raise ValueError(f"feature {name!r} has unsupported kind {feature.kind!r}")
        self.numeric = nn.Linear(len(numeric_columns), dim, bias=False) if numeric_columns else None
        if numeric_columns:
            self.register_buffer("values_numeric", torch.as_tensor(np.stack(numeric_columns, axis=1)))
        for embedding in self.categorical.values():
            nn.init.normal_(embedding.weight, std=EMBEDDING_INIT_STD)

    def forward(self, rows: torch.Tensor) -> torch.Tensor | None:
        parts = [self.categorical[key](getattr(self, f"values_{key}")[rows]) for key in self.categorical_names]
        parts += [
            self.multi_hot[key](getattr(self, f"tokens_{key}")[rows], getattr(self, f"token_weights_{key}")[rows])
            for key in self.multi_hot_names
        ]
        if self.numeric is not None:
            parts.append(self.numeric(self.values_numeric[rows]))
        if not parts:
            return None
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total


class Tower(nn.Module):
    """``id embedding + feature embeddings`` -> a ``dim``-wide vector per row.

    ``use_ids=False`` drops the id embedding: rows are then described by their features
    alone. Under differential privacy this keeps the noisy shared part small (public
    item features carry the item side).
    """

    def __init__(self, num_ids: int, features: dict[str, EncodedFeature], dim: int, use_ids: bool = True) -> None:
        super().__init__()
        self.num_ids = num_ids
        self.ids = nn.Embedding(num_ids, dim) if use_ids else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=EMBEDDING_INIT_STD)
        self.features = FeatureEmbedding(features, dim)
        if self.ids is None and not features:
            raise ValueError("a tower without id embeddings needs at least one feature")

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        features = self.features(rows)
        if self.ids is None:
            return features
        vectors = self.ids(rows)
        return vectors if features is None else vectors + features


def _module_key(name: str) -> str:
    """ModuleDict keys cannot contain dots."""
    return name.replace(".", "_")
