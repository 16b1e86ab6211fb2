"""Run configuration: typed sections for every key of ``[tool.flwr.app.config]``.

* :mod:`.values` - documented fields, range checks, the error for a bad or unknown key;
* :mod:`.sections` - one frozen dataclass per concern, each checking its own keys;
* :mod:`.run` - :class:`RunConfig`, the sections together, read from flat ``foo-bar`` keys;
* :mod:`.node` - what a SuperNode's node config may hold;
* :mod:`.reference` - the generated reference page ``docs/reference/configuration.md``.
"""

from crossfed.shared.config.node import NODE_ONLY_KEYS, pinned_run_config
from crossfed.shared.config.reference import reference_markdown
from crossfed.shared.config.run import MODES, RunConfig
from crossfed.shared.config.sections import (
    ACCOUNTANTS,
    AGGREGATIONS,
    NOISE_MODES,
    PARTITION_SCHEMES,
    PRIVACY_UNITS,
    SERVE_MODELS,
    SERVER_OPTIMIZERS,
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    FederationConfig,
    ModelConfig,
    PrivacyConfig,
    RobustnessConfig,
    SecureAggregationConfig,
    ServingConfig,
    TrainingConfig,
)
from crossfed.shared.config.values import ConfigError

__all__ = [
    "ACCOUNTANTS",
    "AGGREGATIONS",
    "MODES",
    "NODE_ONLY_KEYS",
    "NOISE_MODES",
    "PARTITION_SCHEMES",
    "PRIVACY_UNITS",
    "SERVER_OPTIMIZERS",
    "SERVE_MODELS",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FederationConfig",
    "ModelConfig",
    "PrivacyConfig",
    "RobustnessConfig",
    "RunConfig",
    "SecureAggregationConfig",
    "ServingConfig",
    "TrainingConfig",
    "pinned_run_config",
    "reference_markdown",
]
