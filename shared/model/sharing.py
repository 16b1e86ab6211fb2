"""The one rule that decides what may leave a platform.

Shared: parameters of ``model.shared`` (item tower, interaction layer, prediction
layer). Local: everything else - the user tower's id and feature embeddings - and
every buffer (feature values are data, not parameters). Every outgoing message is
built from :func:`shared_arrays`; nothing else reads parameters for sending.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

SHARED_PREFIX = "shared."


def is_shared(parameter_name: str) -> bool:
    """True for parameters a platform sends to the coordinator."""
    return parameter_name.startswith(SHARED_PREFIX)


def shared_arrays(model: nn.Module) -> OrderedDict[str, np.ndarray]:
    """Copies of the shared parameters, in a stable order, as numpy arrays."""
    return OrderedDict(
        (name, parameter.detach().cpu().numpy().copy())
        for name, parameter in model.named_parameters()
        if is_shared(name)
    )


def update_norm(arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray] | None = None) -> float:
    """L2 norm of ``arrays - reference`` over every array (of ``arrays`` alone without a reference), in float64.

    The one measure of an update's size: platforms bound theirs by it, the coordinator
    checks it against ``max-update-norm``, and the research tools compare against both.
    """
    total = 0.0
    for name, value in arrays.items():
        difference = np.asarray(value, dtype=np.float64)
        if reference is not None:
            difference = difference - np.asarray(reference[name], dtype=np.float64)
        total += float(np.sum(difference * difference))
    return math.sqrt(total)


def local_parameters(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Copies of the parameters that never leave the platform (the user tower)."""
    return OrderedDict(
        (name, parameter.detach().clone()) for name, parameter in model.named_parameters() if not is_shared(name)
    )


def load_shared_arrays(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Overwrite the shared parameters; keys and shapes must match exactly."""
    _load(model, arrays, is_shared, "shared")


def load_local_parameters(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    _load(model, tensors, lambda name: not is_shared(name), "local")


def _load(model: nn.Module, values: dict, selector: Callable[[str], bool], what: str) -> None:
    parameters = {name: p for name, p in model.named_parameters() if selector(name)}
    missing = sorted(set(parameters) - set(values))
    unexpected = sorted(set(values) - set(parameters))
    if missing or unexpected:
        raise ValueError(f"{what} parameters do not match the model: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for name, parameter in parameters.items():
            value = torch.as_tensor(np.asarray(values[name]) if not torch.is_tensor(values[name]) else values[name])
            if tuple(value.shape) != tuple(parameter.shape):
                raise ValueError(
                    f"{what} parameter {name!r} has shape {tuple(value.shape)}, model expects {tuple(parameter.shape)}"
                )
            parameter.copy_(value.to(parameter.dtype))
