"""The four-layer recommender: user tower (local), item tower, interaction and prediction (shared).

``Recommender = UserTower + SharedScorer``. The split is structural on purpose: the
shared part is one module that takes already-computed user vectors, so differential
privacy can wrap exactly what leaves the platform (Opacus over ``model.shared``) and
the user tower can be refreshed on its own with the shared part frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from crossfed.shared.config import ModelConfig
from crossfed.shared.data.features import EncodedFeature
from crossfed.shared.model.towers import Tower


class InteractionLayer(nn.Module):
    """NeuMF interaction: GMF (element-wise product) beside an MLP over the concatenation.

    Each tower vector is ``2 * dim`` wide: the first half feeds GMF, the second the MLP,
    as NeuMF keeps separate embeddings for its two branches.
    """

    def __init__(self, dim: int, mlp_layers: Sequence[int]) -> None:
        super().__init__()
        self.dim = dim
        layers: list[nn.Module] = []
        width = 2 * dim
        for size in mlp_layers:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.output_dim = dim + width

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user_gmf, user_mlp = users[..., : self.dim], users[..., self.dim :]
        item_gmf, item_mlp = items[..., : self.dim], items[..., self.dim :]
        gmf = user_gmf * item_gmf
        mlp = self.mlp(torch.cat([user_mlp, item_mlp], dim=-1))
        return torch.cat([gmf, mlp], dim=-1)


class SharedScorer(nn.Module):
    """Item tower, interaction layer and prediction layer: everything a federation shares."""

    def __init__(
        self,
        num_items: int,
        item_features: dict[str, EncodedFeature],
        dim: int,
        mlp_layers: Sequence[int],
        item_ids: bool = True,
    ) -> None:
        super().__init__()
        self.item_tower = Tower(num_items, item_features, 2 * dim, use_ids=item_ids)
        self.interaction = InteractionLayer(dim, mlp_layers)
        self.prediction = nn.Linear(self.interaction.output_dim, 1)
        # One scalar per item (its popularity, in effect): cheap, and kept under DP even
        # when item-id embeddings are dropped.
        self.item_bias = nn.Embedding(num_items, 1)
        nn.init.zeros_(self.item_bias.weight)

    @property
    def num_items(self) -> int:
        return self.item_tower.num_ids

    def forward(
        self, user_vectors: torch.Tensor, items: torch.Tensor, item_vectors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``[U, K]`` for user vectors ``[U, 2*dim]`` and item ids ``[U, K]``.

        All of a row's items are looked up in one call (positives and negatives
        together), which keeps per-sample gradient computation cheap under DP.
        ``item_vectors`` (``item_tower(items)``, computed once) saves the item tower when
        only the user side changes between calls, as in DP's user-embedding refresh.
        """
        if item_vectors is None:
            item_vectors = self.item_tower(items)
        user_vectors = user_vectors.unsqueeze(1).expand(-1, items.shape[1], -1)
        logits = self.prediction(self.interaction(user_vectors, item_vectors)) + self.item_bias(items)
        return logits.squeeze(-1)


class FixedItemScorer:
    """Logits of changing user vectors against fixed items, the shared weights frozen.

    Refreshing a user's own vector scores the same bag again and again with only the user
    side changing, so whatever depends on the items alone - the item tower, the item half
    of the first MLP layer, the item bias - is computed once here, and the first layer's
    user half runs once per user rather than once per (user, item) pair. Every weight is
    detached: gradients reach the user vectors only, and no module hook sees these passes.
    """

    def __init__(self, shared: SharedScorer, items: torch.Tensor, item_vectors: torch.Tensor | None = None) -> None:
        interaction = shared.interaction
        self.dim = dim = interaction.dim
        with torch.no_grad():
            if item_vectors is None:
                item_vectors = shared.item_tower(items)
            item_vectors = item_vectors.detach()
            weight = shared.prediction.weight.detach()[0]
            self.item_gmf = item_vectors[..., :dim] * weight[:dim]  # GMF's prediction weights folded in
            self.mlp_weight = weight[dim:]
            self.offset = shared.prediction.bias.detach() + shared.item_bias(items).detach().squeeze(-1)
            layers = list(interaction.mlp)
            first = _linear(layers[0] if layers else None)
            self.user_weight = first.weight.detach()[:, :dim]
            self.item_hidden = F.linear(item_vectors[..., dim:], first.weight.detach()[:, dim:], first.bias.detach())
            self.rest = [_frozen(layer) for layer in layers[1:]]

    def __call__(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """Logits ``[U, K]`` for user vectors ``[U, 2*dim]`` (the id embedding plus the user features)."""
        gmf = torch.bmm(self.item_gmf, user_vectors[:, : self.dim, None]).squeeze(-1)
        hidden = self.item_hidden + F.linear(user_vectors[:, None, self.dim :], self.user_weight)
        for layer in self.rest:
            hidden = layer(hidden)
        return gmf + F.linear(hidden, self.mlp_weight) + self.offset


def _linear(layer: nn.Module | None) -> nn.Linear:
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"expected an nn.Linear in the interaction MLP, found {type(layer).__name__}")
    return layer


def _frozen(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``layer`` as a function of its input alone, with its weights detached."""
    if isinstance(layer, nn.ReLU):
        return torch.relu
    linear = _linear(layer)
    weight, bias = linear.weight.detach(), None if linear.bias is None else linear.bias.detach()
    return lambda hidden: F.linear(hidden, weight, bias)


class Recommender(nn.Module):
    """User tower (stays on the platform) + shared scorer (federated)."""

    def __init__(
        self,
        num_users: int,
        user_features: dict[str, EncodedFeature],
        num_items: int,
        item_features: dict[str, EncodedFeature],
        dim: int = 32,
        mlp_layers: Sequence[int] = (64, 32, 16),
        item_ids: bool = True,
    ) -> None:
        super().__init__()
        self.user_tower = Tower(num_users, user_features, 2 * dim)
        self.shared = SharedScorer(num_items, item_features, dim, mlp_layers, item_ids)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.shared(self.user_tower(users), items)

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """Scores for ``items [U, C]``, or for the whole catalog when ``items`` is None.

        The item tower runs once per distinct item, not once per (user, item) pair: per pair,
        the title words alone would take U x C x vocabulary floats. Rows that are one item list
        expanded over the users (stride 0, as whole-catalog blocks are) share a single pass.
        """
        if items is None:
            items = torch.arange(self.shared.num_items).expand(len(users), -1)
        if items.dim() == 2 and items.stride(0) == 0:
            item_vectors = self.shared.item_tower(items[0]).expand(len(users), -1, -1)
        else:
            distinct, position = torch.unique(items, return_inverse=True)
            item_vectors = self.shared.item_tower(distinct)[position]
        return self.shared(self.user_tower(users), items, item_vectors)


def build_model(
    shape: ModelConfig,
    num_items: int,
    item_features: dict[str, EncodedFeature],
    num_users: int = 1,
    user_features: dict[str, EncodedFeature] | None = None,
    seed: int = 0,
) -> Recommender:
    """A freshly initialised model; the coordinator builds one with a single dummy user."""
    torch.manual_seed(seed)
    return Recommender(
        num_users=num_users,
        user_features=user_features or {},
        num_items=num_items,
        item_features=item_features,
        dim=shape.embedding_dim,
        mlp_layers=shape.mlp_layer_sizes,
        item_ids=shape.item_id_embedding,
    )
