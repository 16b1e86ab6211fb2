"""One experiment in any mode, and the logging every research run starts with.

``crossfed run`` and each cell of ``crossfed sweep`` call :func:`run_mode`, so a sweep cell
is exactly the run a researcher would start by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from crossfed.shared.config import RunConfig


def run_mode(mode: str, config: RunConfig) -> dict[str, Any]:
    """Run ``config`` federated, centralized or local-only; returns the written ``summary.json``."""
    if mode == "federated":
        from crossfed.simulations.federated import run_federated

        return run_federated(config)
    from crossfed.simulations.baselines import run_centralized, run_local_only

    # Nothing leaves a platform in either baseline, so neither needs noise: they are the references.
    config = config.replace(privacy_unit="none")
    return run_centralized(config) if mode == "centralized" else run_local_only(config)


def configure_logging(quiet: bool) -> None:
    """crossfed's progress at INFO (WARNING when ``quiet``); Flower and Ray only at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("crossfed").setLevel(logging.WARNING if quiet else logging.INFO)
    import flwr.common.logger  # noqa: F401  (flwr sets its own levels on import; override them after)

    for noisy in ("flwr", "ray"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("flwr").propagate = False
    # We call flwr.simulation.run_simulation on purpose (see README); its deprecation notice is noise here.
    logging.getLogger("flwr").addFilter(lambda record: "DEPRECATED FEATURE" not in record.getMessage())
