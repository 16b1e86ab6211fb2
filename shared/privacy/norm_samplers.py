"""Per-user gradient norms for ghost clipping, each at the cheaper of two exact methods.

Ghost clipping needs every sample's gradient norm per layer. A sample here is one user's
bag: T rows (positives and their negatives, T = 160 by default). Opacus 1.6 computes a
linear layer's norm over such a sequence through two T x T Gram matrices, which costs
``T^2 (in + out)`` per sample whatever the layer's size; materialising the sample's
gradient ``G^T A`` costs ``T in out``. For the layers of this model (in and out between 1
and 256, T = 160) the second is up to 5x cheaper, so each call picks whichever is
cheaper. The embedding norm groups equal (sample, id) pairs; Opacus does it with a
two-column ``unique(dim=0)``, a slow lexicographic sort, where one int64 key per pair
sorts the same pairs far faster. A multi-hot feature's layer
(:class:`~crossfed.shared.model.multi_hot.MultiHotEmbedding`) is an embedding whose rows
are looked up with weights, so its norm is the embedding's over the (row, word) pairs with
non-zero weight: a few per row instead of the whole vocabulary.

Both return exactly Opacus' values (``tests/shared/privacy/test_privacy.py`` compares them) and are
registered over Opacus' own samplers through its public ``register_norm_sampler``, so
they apply to every ghost-clipping module this process wraps.
"""

from __future__ import annotations

import math

import torch
from opacus.grad_sample.utils import register_grad_sampler, register_norm_sampler
from torch import nn

from crossfed.shared.model.multi_hot import MultiHotEmbedding

#: A dense (sample, id) table replaces sorting when it has at most this many rows per gradient row.
DENSE_ROWS_FACTOR = 4


def linear_norm_sample(
    layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradient norms of ``layer.weight`` (and bias) for inputs ``[n, ..., in]``."""
    inputs, grads = sequences(layer, activations[0], backprops)
    norms: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        if gram_is_cheaper(layer, inputs.shape[1]):
            norms[layer.weight] = gram_squared_norms(inputs, grads).sqrt()
        else:
            norms[layer.weight] = per_sample_weight_gradients(inputs, grads).pow(2).sum(dim=(1, 2)).sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        norms[layer.bias] = grads.sum(dim=1).norm(dim=1)
    return norms


def sequences(
    layer: nn.Linear, activations: torch.Tensor, backprops: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[n, T, in]`` and output gradients ``[n, T, out]``, however many row axes a sample has."""
    samples, rows = backprops.shape[0], math.prod(backprops.shape[1:-1])  # explicit: an empty batch has no -1
    inputs = activations.to(backprops.dtype).reshape(samples, rows, layer.in_features)
    return inputs, backprops.reshape(samples, rows, layer.out_features)


def gram_is_cheaper(layer: nn.Linear, rows: int) -> bool:
    """Whether two ``T x T`` Gram matrices cost less than materialising each sample's ``out x in`` gradient."""
    return rows * rows * (layer.in_features + layer.out_features) < rows * layer.in_features * layer.out_features


def gram_squared_norms(inputs: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    gram = torch.bmm(grads, grads.transpose(1, 2)) * torch.bmm(inputs, inputs.transpose(1, 2))
    return gram.sum(dim=(1, 2)).clamp(min=0)


def per_sample_weight_gradients(inputs: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``[n, out, in]``: each sample's weight gradient ``G^T A``."""
    return torch.bmm(grads.transpose(1, 2), inputs)


def embedding_norm_sample(
    layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradient norms of an embedding table: rows of one id within one sample add up first."""
    samples = activations[0].shape[0]
    keys, summed = embedding_rows(activations[0], backprops, layer.num_embeddings)
    return {layer.weight: squared_by_sample(keys, summed, samples, layer.num_embeddings).sqrt()}


def embedding_rows(ids: torch.Tensor, backprops: torch.Tensor, vocabulary: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's gradient of an embedding table as its non-zero rows.

    ``ids [n, ...]`` and output gradients ``[n, ..., d]`` give ``keys [r]``
    (``sample * vocabulary + id``, sorted, distinct) and ``rows [r, d]``, the sum of that
    sample's output gradients at that id.
    """
    samples, per_sample = ids.shape[0], math.prod(ids.shape[1:])
    owner = torch.arange(samples, device=ids.device).repeat_interleave(per_sample)
    grads = backprops.reshape(samples * per_sample, backprops.shape[-1])
    return _grouped(owner * vocabulary + ids.reshape(-1).to(torch.int64), grads, samples * vocabulary)


def multi_hot_rows(
    layer: MultiHotEmbedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`embedding_rows` of a multi-hot layer's transposed weight ``[V, dim]``.

    ``activations`` are its inputs, bags ``tokens`` and ``weights`` ``[n, ..., M]``. Output
    row ``t`` of sample ``i`` adds ``weight * backprop_t`` to the row of each of its words;
    padding (weight 0) is dropped, so the work follows the words, not the vocabulary.
    """
    tokens, weights = activations
    samples, per_sample = tokens.shape[0], math.prod(tokens.shape[1:-1])
    tokens = tokens.reshape(samples * per_sample, tokens.shape[-1])
    weights = weights.reshape(samples * per_sample, weights.shape[-1]).to(backprops.dtype)
    position, slot = torch.nonzero(weights, as_tuple=True)
    owner = torch.div(position, max(per_sample, 1), rounding_mode="floor")
    grads = backprops.reshape(samples * per_sample, layer.out_features)[position] * weights[position, slot, None]
    return _grouped(owner * layer.in_features + tokens[position, slot], grads, samples * layer.in_features)


def squared_by_sample(keys: torch.Tensor, rows: torch.Tensor, samples: int, vocabulary: int) -> torch.Tensor:
    """Per-sample squared norms ``[samples]`` of grouped rows (from :func:`embedding_rows`)."""
    squared = torch.zeros(samples, dtype=rows.dtype, device=rows.device)
    return squared.index_add_(0, torch.div(keys, vocabulary, rounding_mode="floor"), rows.pow(2).sum(dim=1))


def multi_hot_norm_sample(
    layer: MultiHotEmbedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradient norms of a multi-hot layer's weight, for bags ``[n, ..., M]``."""
    keys, summed = multi_hot_rows(layer, activations, backprops)
    return {layer.weight: squared_by_sample(keys, summed, backprops.shape[0], layer.in_features).sqrt()}


def multi_hot_grad_sample(
    layer: MultiHotEmbedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradients ``[n, dim, V]`` of a multi-hot layer's weight (Opacus' hooks mode)."""
    samples = backprops.shape[0]
    keys, summed = multi_hot_rows(layer, activations, backprops)
    per_sample = torch.zeros(samples * layer.in_features, layer.out_features, dtype=summed.dtype)
    per_sample.index_add_(0, keys, summed)
    return {layer.weight: per_sample.reshape(samples, layer.in_features, layer.out_features).transpose(1, 2)}


def _grouped(keys: torch.Tensor, grads: torch.Tensor, space: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of equal key summed: sorted distinct keys and their sums.

    When the key space (samples x vocabulary) is small against the rows (a small vocabulary,
    as genres or title words within a user's bag), a dense table is filled directly - every
    key, zero rows included - which costs less than sorting the rows.
    """
    if space <= DENSE_ROWS_FACTOR * len(keys):
        summed = torch.zeros(space, grads.shape[1], dtype=grads.dtype, device=grads.device)
        return torch.arange(space, device=keys.device), summed.index_add_(0, keys, grads)
    unique_keys, position = torch.unique(keys, return_inverse=True)
    summed = torch.zeros(len(unique_keys), grads.shape[1], dtype=grads.dtype, device=grads.device)
    return unique_keys, summed.index_add_(0, position, grads)


register_norm_sampler(nn.Linear)(linear_norm_sample)
register_norm_sampler(nn.Embedding)(embedding_norm_sample)
register_norm_sampler(MultiHotEmbedding)(multi_hot_norm_sample)
register_grad_sampler(MultiHotEmbedding)(multi_hot_grad_sample)
