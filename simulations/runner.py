"""One experiment in any mode, and the logging every research run starts with.

``crossfed run`` and each cell of ``crossfed sweep`` call :func:`run_mode`, so a sweep cell
is exactly the run a researcher would start by hand.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from crossfed.shared.config import MODES, RunConfig
from crossfed.shared.config.values import key_of
from crossfed.shared.data.loader import all_platforms, describe
from crossfed.shared.errors import UsageError
from crossfed.shared.evaluation.results import write_summary


def run_mode(mode: str, config: RunConfig) -> dict[str, Any]:
    """Run ``config`` in ``mode`` (:data:`MODES`); returns the written ``summary.json``.

    The summary names the data the run trained on (``dataset`` and ``data``: the built-in,
    folder or operator files, their size and the split rule), whatever the mode.
    """
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} is not known: expected one of {MODES}")
    if mode == "federated":
        from crossfed.simulations.federated import run_federated

        summary = run_federated(config)
    else:
        from crossfed.simulations.baselines import run_centralized, run_local_only, run_popularity

        # Nothing leaves a platform in a baseline, so none needs noise: they are the references.
        config = config.replace(privacy_unit="none")
        run = {"centralized": run_centralized, "local-only": run_local_only, "popularity": run_popularity}[mode]
        summary = run(config)
    summary = {**summary, **describe(config, all_platforms(config)).summary_entries()}
    write_summary(config.experiment.run_dir, summary)
    return summary


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


#: Sections only a federated run reads: the baselines exchange nothing, so there is nothing to
#: aggregate, protect or screen.
_FEDERATED_ONLY_SECTIONS = ("federation", "robustness", "privacy", "secure_aggregation")
#: Sections popularity ignores too: it trains no model.
_MODEL_SECTIONS = ("model", "training", "serving")
#: Keys that shape a split of ``dataset``; platforms with their own files have no split to shape.
_SPLIT_KEYS = frozenset(
    {
        "dataset",
        "data-dir",
        "max-users",
        "extra-items",
        "partition",
        "partition-attribute",
        "dirichlet-alpha",
        "overlap-k",
    }
)


#: Federation keys every model-training mode honours: the budget of rounds and early stopping's patience.
_TRAINING_BUDGET_KEYS = frozenset({"num-server-rounds", "patience"})


def check_keys_for_mode(mode: str, given: Iterable[str], config: RunConfig) -> None:
    """Refuse a key the researcher set that ``mode`` cannot honour, rather than run without it.

    Raises:
        UsageError: names the key and the mode (or ``operator-data``) that cannot honour it.
    """
    ignored = set(_section_keys(_FEDERATED_ONLY_SECTIONS)) - _TRAINING_BUDGET_KEYS if mode != "federated" else set()
    if mode == "popularity":
        ignored |= set(_section_keys(_MODEL_SECTIONS)) | _TRAINING_BUDGET_KEYS | {"full-ranking-every"}
    for key in sorted(set(given)):
        if key in ignored:
            raise UsageError(f"config key {key!r} has no effect in mode {mode!r}: leave it out")
        if config.data.operator_data and key in _SPLIT_KEYS:
            raise UsageError(
                f"config key {key!r} shapes a split of 'dataset', but 'operator-data' gives each platform "
                "its own files: leave one of them out"
            )


def _section_keys(sections: Iterable[str]) -> list[str]:
    classes = RunConfig.sections()
    return [key_of(f.name) for name in sections for f in dataclasses.fields(classes[name])]
