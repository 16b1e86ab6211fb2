"""Which federation a run is: the registered runner of its mechanism.

``privacy.mechanism`` names it: ``gram-subspace`` (one noised Gram release per platform,
:mod:`crossfed.server.gram_release`) under ``privacy-unit = user`` when ``user-dp-mechanism`` says
so; ``dp-sgd`` otherwise - the round loop of :mod:`crossfed.server.federation`, which trains with
DP-SGD under a privacy unit and plainly without one. A new mechanism registers its runner here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flwr.serverapp import Grid

from crossfed.server.federation import run_federation
from crossfed.server.gram_release import run_gram_subspace
from crossfed.shared.config import RunConfig

Federation = Callable[[Grid, RunConfig], dict[str, Any]]

#: Every mechanism's runner, by the name ``privacy.mechanism`` gives.
FEDERATIONS: Mapping[str, Federation] = {"dp-sgd": run_federation, "gram-subspace": run_gram_subspace}


def federation_for(config: RunConfig) -> Federation:
    """The runner of ``config``'s mechanism."""
    return FEDERATIONS[config.privacy.mechanism]
