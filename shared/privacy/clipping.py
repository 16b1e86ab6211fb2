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

Every trained parameter must belong to an ``nn.Linear`` or a plain ``nn.Embedding`` that
runs once per forward pass; anything else is refused when the clipper is built or used,
never clipped approximately.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from crossfed.shared.privacy.norm_samplers import embedding_norm_sample, linear_norm_sample

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
        self._calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
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
        self._calls.append((layer, inputs[0].detach(), output))

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
        for (layer, activations, _), backprop in zip(calls, backprops, strict=True):
            for norm in _norms(layer, activations, backprop).values():
                squared = squared + norm.pow(2)
        norms = squared.sqrt()
        factors = (self.max_grad_norm / (norms + NORM_EPSILON)).clamp(max=1.0)
        for parameter in self.parameters:
            parameter.grad = torch.zeros_like(parameter)
        for (layer, activations, _), backprop in zip(calls, backprops, strict=True):
            _add_clipped_gradient(layer, activations, backprop * factors.reshape(-1, *[1] * (backprop.dim() - 1)))
        return norms


def trained_layers(module: nn.Module) -> list[nn.Module]:
    """The layers holding ``module``'s trained parameters; refuses a parameter no layer here can clip."""
    layers = []
    for layer in module.modules():
        own = [p for p in layer.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(layer, nn.Embedding):
            if layer.padding_idx is not None or layer.max_norm is not None or layer.sparse or layer.scale_grad_by_freq:
                raise ValueError("per-sample clipping supports plain nn.Embedding only (no padding_idx, max_norm, ...)")
        elif not isinstance(layer, nn.Linear):
            raise ValueError(f"per-sample clipping has no rule for trained parameters of {type(layer).__name__}")
        layers.append(layer)
    return layers


def _norms(layer: nn.Module, activations: torch.Tensor, backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    if isinstance(layer, nn.Embedding):
        return embedding_norm_sample(layer, [activations], backprops)
    return linear_norm_sample(layer, [activations], backprops)


def _add_clipped_gradient(layer: nn.Module, activations: torch.Tensor, scaled_backprops: torch.Tensor) -> None:
    """Adds ``sum_i c_i * grad_i`` of the layer's parameters, given output gradients already scaled by ``c_i``."""
    with torch.no_grad():
        if isinstance(layer, nn.Embedding):
            if layer.weight.requires_grad:
                rows = scaled_backprops.reshape(-1, layer.embedding_dim)
                layer.weight.grad.index_add_(0, activations.reshape(-1).to(torch.int64), rows)
            return
        outputs = scaled_backprops.reshape(-1, layer.out_features)
        if layer.weight.requires_grad:
            inputs = activations.to(outputs.dtype).reshape(-1, layer.in_features)
            layer.weight.grad.add_(outputs.T @ inputs)
        if layer.bias is not None and layer.bias.requires_grad:
            layer.bias.grad.add_(outputs.sum(dim=0))
