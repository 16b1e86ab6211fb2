"""The sum of per-sample clipped gradients from a single backward pass.

DP-SGD needs, per step, ``sum_i c_i * grad_i`` with ``c_i = min(1, clip / |grad_i|)``.
Opacus' ghost clipping gets it with two backward passes: the first yields every sample's
gradient norm (and every parameter's gradient, which it then throws away), the second
runs again with each sample's loss scaled by ``c_i``. Both passes see the same inputs and
output gradients at every layer; only the scale differs. So one backward pass that
computes the output gradients of every trained layer - and no parameter gradient - is
enough: the norms come from the same per-layer samplers Opacus uses
(:mod:`crossfed.shared.privacy.norm_samplers`), and each parameter's clipped sum is then
assembled from its layer's inputs and output gradients scaled by ``c_i`` (the
"book-keeping" form of ghost clipping, Bu et al. 2023). The result is the sum Opacus
computes, with the same clipping factors; ``tests/shared/privacy/test_clipping.py``
compares them.

Where a layer's norm already needs each sample's gradient - a linear layer whose
per-sample gradient is cheaper to form than its Gram matrices, an embedding's or a
multi-hot layer's per-sample rows - the clipped sum is the factor-weighted sum of those
same per-sample gradients, so the layer's inputs are not multiplied out a second time.

Every trained parameter must belong to an ``nn.Linear``, a plain ``nn.Embedding`` or a
:class:`~crossfed.shared.model.multi_hot.MultiHotEmbedding` that runs once per forward
pass; anything else is refused when the clipper is built or used, never clipped
approximately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from crossfed.shared.model.multi_hot import MultiHotEmbedding
from crossfed.shared.privacy.norm_samplers import (
    embedding_rows,
    gram_is_cheaper,
    gram_squared_norms,
    multi_hot_rows,
    per_sample_weight_gradients,
    sequences,
    squared_by_sample,
)

#: Opacus' ghost clipping adds this to a norm before dividing by it; the same factors follow.
NORM_EPSILON = 1e-6


class ClippedGradients:
    """Records the trained layers' inputs and outputs during a forward pass, then clips in one backward pass.

    ``with clipper.recording(): logits = module(...)`` followed by
    ``clipper.backward(loss_per_sample)`` leaves ``sum_i c_i * grad_i`` in every trained
    parameter's ``.grad``. Forward passes outside ``recording()`` (the user-vector refresh,
    evaluation) are not seen.
    """

    def __init__(self, module: nn.Module, max_grad_norm: float) -> None:
        self.max_grad_norm = max_grad_norm
        self.layers = trained_layers(module)
        self.parameters = [p for layer in self.layers for p in layer.parameters(recurse=False) if p.requires_grad]
        self._calls: list[tuple[nn.Module, list[torch.Tensor], torch.Tensor]] = []
        self._recording = False
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]

    def close(self) -> None:
        """Removes the forward hooks: the module is reused after the round."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @contextmanager
    def recording(self) -> Iterator[None]:
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def _record(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not self._recording or not torch.is_grad_enabled():
            return
        if any(recorded is layer for recorded, _, _ in self._calls):
            raise ValueError(
                f"{type(layer).__name__} ran twice in one private step: a shared (tied) parameter "
                "has no per-sample gradient this clipper can compute"
            )
        self._calls.append((layer, [value.detach() for value in inputs], output))

    def backward(self, loss_per_sample: torch.Tensor) -> torch.Tensor:
        """Sets ``.grad`` of every trained parameter to the clipped sum; returns the per-sample norms."""
        calls, self._calls = self._calls, []
        outputs = [output for _, _, output in calls]
        gradients = torch.autograd.grad(loss_per_sample.sum(), outputs, allow_unused=True) if outputs else ()
        backprops = [
            torch.zeros_like(output) if gradient is None else gradient
            for output, gradient in zip(outputs, gradients, strict=True)
        ]
        squared = torch.zeros(loss_per_sample.shape[0], dtype=loss_per_sample.dtype)
        assemblers = []
        with torch.no_grad():
            for (layer, activations, _), backprop in zip(calls, backprops, strict=True):
                layer_squared, assemble = _per_sample(layer, activations, backprop)
                squared = squared + layer_squared
                assemblers.append(assemble)
            norms = squared.sqrt()
            factors = (self.max_grad_norm / (norms + NORM_EPSILON)).clamp(max=1.0)
            for parameter in self.parameters:
                parameter.grad = torch.zeros_like(parameter)
            for assemble in assemblers:
                assemble(factors)
        return norms


def trained_layers(module: nn.Module) -> list[nn.Module]:
    """The layers holding ``module``'s trained parameters; refuses a parameter no layer here can clip."""
    layers = []
    for layer in module.modules():
        own = [p for p in layer.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(layer, nn.Embedding) and (
            layer.padding_idx is not None or layer.max_norm is not None or layer.sparse or layer.scale_grad_by_freq
        ):
            raise ValueError("per-sample clipping supports plain nn.Embedding only (no padding_idx, max_norm, ...)")
        if not isinstance(layer, nn.Linear | nn.Embedding | MultiHotEmbedding):
            raise ValueError(f"per-sample clipping has no rule for trained parameters of {type(layer).__name__}")
        layers.append(layer)
    return layers


#: Adds a layer's ``sum_i c_i * grad_i`` to its parameters' ``.grad``, given the factors ``c [n]``.
Assemble = Callable[[torch.Tensor], None]


def _per_sample(
    layer: nn.Module, activations: list[torch.Tensor], backprops: torch.Tensor
) -> tuple[torch.Tensor, Assemble]:
    """The layer's per-sample squared gradient norms ``[n]`` (all its trained parameters) and its clipped sum."""
    samples = backprops.shape[0]
    if isinstance(layer, MultiHotEmbedding | nn.Embedding) and not layer.weight.requires_grad:
        return torch.zeros(samples, dtype=backprops.dtype), _nothing
    if isinstance(layer, MultiHotEmbedding):  # its weight is [dim, V]: the rows are those of its transpose
        keys, rows = multi_hot_rows(layer, activations, backprops)
        return _rows_per_sample(keys, rows, samples, layer.in_features, lambda: layer.weight.grad.t())
    if isinstance(layer, nn.Embedding):
        keys, rows = embedding_rows(activations[0], backprops, layer.num_embeddings)
        return _rows_per_sample(keys, rows, samples, layer.num_embeddings, lambda: layer.weight.grad)
    return _linear_per_sample(layer, activations[0], backprops)


def _nothing(_factors: torch.Tensor) -> None:
    return None


def _rows_per_sample(
    keys: torch.Tensor, rows: torch.Tensor, samples: int, vocabulary: int, table: Callable[[], torch.Tensor]
) -> tuple[torch.Tensor, Assemble]:
    """An embedding-like layer from its per-sample rows (``keys = sample * vocabulary + id``).

    ``table()`` is the gradient ``[vocabulary, d]`` to add the clipped rows into, read when
    the sum is assembled (the gradients are allocated after every norm is known).
    """
    if len(keys) == samples * vocabulary:  # every (sample, id): a dense [samples, vocabulary * d] table
        dense = rows.reshape(samples, vocabulary * rows.shape[1])

        def assemble_dense(factors: torch.Tensor) -> None:
            table().add_((factors @ dense).reshape(vocabulary, rows.shape[1]))

        return dense.pow(2).sum(dim=1), assemble_dense
    owner, ids = torch.div(keys, vocabulary, rounding_mode="floor"), keys % vocabulary

    def assemble(factors: torch.Tensor) -> None:
        table().index_add_(0, ids, rows * factors[owner, None])

    return squared_by_sample(keys, rows, samples, vocabulary), assemble


def _linear_per_sample(
    layer: nn.Linear, activations: torch.Tensor, backprops: torch.Tensor
) -> tuple[torch.Tensor, Assemble]:
    """A linear layer: its per-sample gradients are formed when that is cheaper than Gram matrices, then reused."""
    inputs, grads = sequences(layer, activations, backprops)
    samples = grads.shape[0]
    squared = torch.zeros(samples, dtype=grads.dtype)
    parts: list[Assemble] = []
    if layer.weight.requires_grad:
        if gram_is_cheaper(layer, inputs.shape[1]):
            squared = squared + gram_squared_norms(inputs, grads)

            def weight(factors: torch.Tensor) -> None:
                scaled = (grads * factors[:, None, None]).reshape(-1, layer.out_features)
                layer.weight.grad.add_(scaled.T @ inputs.reshape(-1, layer.in_features))

        else:
            per_sample = per_sample_weight_gradients(inputs, grads).reshape(samples, -1)
            squared = squared + per_sample.pow(2).sum(dim=1)

            def weight(factors: torch.Tensor) -> None:
                layer.weight.grad.add_((factors @ per_sample).reshape(layer.weight.shape))

        parts.append(weight)
    if layer.bias is not None and layer.bias.requires_grad:
        per_sample_bias = grads.sum(dim=1)
        squared = squared + per_sample_bias.pow(2).sum(dim=1)
        parts.append(lambda factors: layer.bias.grad.add_(factors @ per_sample_bias))

    def assemble(factors: torch.Tensor) -> None:
        for part in parts:
            part(factors)

    return squared, assemble
