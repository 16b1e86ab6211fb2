"""A platform keeps its own update within the agreed L2 bound before it leaves.

The coordinator rejects updates above ``max-update-norm`` (``crossfed.server.screening``), so an
honest platform must never exceed it, whatever its data or learning rate did this round:
it scales its update down to the bound instead. Under secure aggregation the coordinator
cannot check individual updates at all, and this is the only place the bound holds, so it
must run before masking.

Scaling an already privatised (DP) update is post-processing: it costs no privacy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from crossfed.shared.model.sharing import is_shared, update_norm

logger = logging.getLogger(__name__)


def bound_update(model: nn.Module, reference: Mapping[str, np.ndarray], max_norm: float) -> float:
    """Scale ``model``'s shared parameters towards ``reference`` so the update norm is at most ``max_norm``.

    Returns the norm of the update before bounding. ``max_norm <= 0`` means no bound.
    The result is computed in float64 and written back in the parameters' dtype; the
    small rounding is covered by the coordinator's tolerance.
    """
    shared = {name: p for name, p in model.named_parameters() if is_shared(name)}
    norm = update_norm({name: p.detach().cpu().numpy() for name, p in shared.items()}, reference)
    if max_norm <= 0 or norm <= max_norm:
        return norm
    scale = max_norm / norm
    with torch.no_grad():
        for name, parameter in shared.items():
            base = torch.as_tensor(np.asarray(reference[name]), dtype=torch.float64)
            parameter.copy_((base + (parameter.detach().double() - base) * scale).to(parameter.dtype))
    logger.info("update norm %.4g scaled down to max-update-norm = %g", norm, max_norm)
    return norm


def bound_arrays(
    arrays: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], max_norm: float
) -> dict[str, np.ndarray]:
    """The same bound on plain arrays (for a path that sends arrays rather than a model)."""
    norm = update_norm(arrays, reference)
    if max_norm <= 0 or norm <= max_norm:
        return dict(arrays)
    scale = max_norm / norm
    return {
        name: (
            np.asarray(reference[name], np.float64)
            + (np.asarray(value, np.float64) - np.asarray(reference[name], np.float64)) * scale
        ).astype(np.asarray(value).dtype)
        for name, value in arrays.items()
    }
