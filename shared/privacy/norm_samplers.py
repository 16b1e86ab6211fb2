"""Per-user gradient norms for ghost clipping, each at the cheaper of two exact methods.

Ghost clipping needs every sample's gradient norm per layer. A sample here is one user's
bag: T rows (positives and their negatives, T = 160 by default). Opacus 1.6 computes a
linear layer's norm over such a sequence through two T x T Gram matrices, which costs
``T^2 (in + out)`` per sample whatever the layer's size; materialising the sample's
gradient ``G^T A`` costs ``T in out``. For the layers of this model (in and out between 1
and 256, T = 160) the second is up to 5x cheaper, so each call picks whichever is
cheaper. The embedding norm groups equal (sample, id) pairs; Opacus does it with a
two-column ``unique(dim=0)``, a slow lexicographic sort, where one int64 key per pair
sorts the same pairs far faster.

Both return exactly Opacus' values (``tests/shared/privacy/test_privacy.py`` compares them) and are
registered over Opacus' own samplers through its public ``register_norm_sampler``, so
they apply to every ghost-clipping module this process wraps.
"""

from __future__ import annotations

import math

import torch
from opacus.grad_sample.utils import register_norm_sampler
from torch import nn


def linear_norm_sample(
    layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradient norms of ``layer.weight`` (and bias) for inputs ``[n, ..., in]``."""
    samples, rows = backprops.shape[0], math.prod(backprops.shape[1:-1])  # explicit: an empty batch has no -1
    inputs = activations[0].to(backprops.dtype).reshape(samples, rows, layer.in_features)
    grads = backprops.reshape(samples, rows, layer.out_features)
    norms: dict[nn.Parameter, torch.Tensor] = {}
    if layer.weight.requires_grad:
        if rows * rows * (layer.in_features + layer.out_features) < rows * layer.in_features * layer.out_features:
            gram = torch.bmm(grads, grads.transpose(1, 2)) * torch.bmm(inputs, inputs.transpose(1, 2))
            squared = gram.sum(dim=(1, 2)).clamp(min=0)
        else:
            squared = torch.bmm(grads.transpose(1, 2), inputs).pow(2).sum(dim=(1, 2))
        norms[layer.weight] = squared.sqrt()
    if layer.bias is not None and layer.bias.requires_grad:
        norms[layer.bias] = grads.sum(dim=1).norm(dim=1)
    return norms


def embedding_norm_sample(
    layer: nn.Embedding, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-sample gradient norms of an embedding table: rows of one id within one sample add up first."""
    samples, per_sample = activations[0].shape[0], math.prod(activations[0].shape[1:])
    ids = activations[0].reshape(samples, per_sample).to(torch.int64)
    grads = backprops.reshape(samples * per_sample, layer.embedding_dim)
    owner = torch.arange(samples, device=ids.device).repeat_interleave(per_sample)
    keys = owner * layer.num_embeddings + ids.reshape(-1)
    unique_keys, position = torch.unique(keys, return_inverse=True)
    summed = torch.zeros(len(unique_keys), grads.shape[1], dtype=grads.dtype, device=grads.device)
    summed.index_add_(0, position, grads)
    squared = torch.zeros(samples, dtype=grads.dtype, device=grads.device)
    squared.index_add_(0, unique_keys // layer.num_embeddings, summed.pow(2).sum(dim=1))
    return {layer.weight: squared.sqrt()}


register_norm_sampler(nn.Linear)(linear_norm_sample)
register_norm_sampler(nn.Embedding)(embedding_norm_sample)
