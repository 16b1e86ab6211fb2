"""Run configuration: one typed object for every key of ``[tool.flwr.app.config]``.

Flower hands apps a flat ``UserConfig`` mapping (``context.run_config``), which is
empty under ``flwr.simulation.run_simulation``; the research CLI therefore passes
the same keys explicitly. Both paths meet here, so defaults, types and range
checks live in exactly one place and a bad value is rejected before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from crossfed.shared.errors import UsageError

PARTITION_SCHEMES = ("natural", "dirichlet", "iid", "overlap")
SERVER_OPTIMIZERS = ("fedavg", "fedavgm", "fedadam")
MODES = ("federated", "centralized", "local-only")
PRIVACY_UNITS = ("none", "user", "interaction")
ACCOUNTANTS = ("rdp", "prv")
SERVE_MODELS = ("global", "fine-tuned")
AGGREGATIONS = ("mean", "median", "trimmed-mean")
NOISE_MODES = ("local", "distributed")


class ConfigError(UsageError, ValueError):
    """A configuration key holds a value outside its allowed range."""


@dataclass(frozen=True)
class RunConfig:
    """Every tunable of a crossfed run; field ``foo_bar`` is run-config key ``foo-bar``."""

    dataset: str = "ml-100k"
    data_dir: str = ""
    run_dir: str = "runs/latest"
    seed: int = 0
    max_users: int = 0
    extra_items: int = 0
    # Platforms and their data
    num_platforms: int = 5
    partition: str = "natural"
    partition_attribute: str = "region"
    dirichlet_alpha: float = 0.5
    overlap_k: int = 2
    # Model
    embedding_dim: int = 32
    mlp_layers: str = "64,32,16"
    item_id_embedding: bool = True
    # Local training
    local_epochs: int = 1
    batch_size: int = 256
    learning_rate: float = 0.002
    weight_decay: float = 0.0
    negatives: int = 4
    # Federation
    num_server_rounds: int = 30
    fraction_train: float = 1.0
    min_platforms: int = 2
    server_optimizer: str = "fedavg"
    server_learning_rate: float = 1.0
    server_momentum: float = 0.0
    # Robustness against broken or hostile platforms (crossfed.server.screening, crossfed.server.strategy, crossfed.client.bound)
    aggregation: str = "mean"
    trim_fraction: float = 0.2
    max_update_norm: float = 0.0
    resume: bool = False
    reply_timeout: float = 1800.0
    finetune_epochs: int = 0
    finetune_learning_rate: float = 0.002
    finetune_embedding_dim: int = 0
    finetune_mlp_layers: str = "64,32,16"
    # Differential privacy (crossfed.shared.privacy)
    privacy_unit: str = "none"
    epsilon: float = 8.0
    delta: float = 1e-5
    noise_multiplier: float = 0.0
    clip_norm: float = 1.0
    user_batch: int = 64
    bag_positives: int = 32
    refresh_steps: int = 3
    refresh_learning_rate: float = 0.5
    accountant: str = "rdp"
    # Secure aggregation (crossfed.shared.protocol.secure_aggregation, crossfed.server.secure_round)
    secagg: bool = False
    secagg_clip_range: float = 1.0
    secagg_max_weight: float = 50000.0
    secagg_shares: float = 1.0
    secagg_threshold: float = 0.5
    noise_mode: str = "local"
    tolerated_colluders: int = 0
    # Serving on a platform (crossfed.shared.data.catalog, crossfed.client.serving.service, crossfed.client.serving.foldin)
    catalog: str = ""
    catalog_version: str = ""
    operator_data: str = ""
    serve_model: str = "global"
    foldin_steps: int = 20
    foldin_learning_rate: float = 0.05
    # Evaluation
    eval_negatives: int = 99
    top_k: int = 10
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_mapping(cls, *layers: Mapping[str, Any] | None) -> "RunConfig":
        """Merge config layers (later wins) keyed ``foo-bar`` or ``foo_bar``, then validate.

        Unknown keys are kept in ``extra`` rather than rejected, because Flower
        may add its own keys to a run config.
        """
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                name = str(key).replace("-", "_")
                if name in known:
                    values[name] = _coerce(name, value, known[name].type)
                else:
                    extra[str(key)] = value
        config = cls(**values, extra=extra)
        config.validate()
        return config

    def replace(self, **changes: Any) -> "RunConfig":
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    @property
    def private(self) -> bool:
        return self.privacy_unit != "none"

    def to_flat(self) -> dict[str, Any]:
        """The Flower-style flat mapping (``foo-bar`` keys), e.g. for a ConfigRecord."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self) if f.name != "extra"}

    @property
    def mlp_layer_sizes(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.mlp_layers.split(",") if part.strip())

    def validate(self) -> None:
        """Reject out-of-range values with the key name and the allowed range."""
        _check(self.max_users >= 0, "max-users", self.max_users, "an integer >= 0 (0 = every user)")
        _check(self.extra_items >= 0, "extra-items", self.extra_items, "an integer >= 0")
        _check(self.extra_items == 0 or not (self.catalog or self.operator_data), "extra-items", self.extra_items,
               "0 with a published catalog or operator data (padding is for simulated catalogs only)")
        _check(self.num_platforms >= 1, "num-platforms", self.num_platforms, "an integer >= 1")
        _check(self.partition in PARTITION_SCHEMES, "partition", self.partition, f"one of {PARTITION_SCHEMES}")
        _check(self.dirichlet_alpha > 0, "dirichlet-alpha", self.dirichlet_alpha, "a number > 0")
        _check(self.overlap_k >= 1, "overlap-k", self.overlap_k, "an integer >= 1")
        _check(
            self.overlap_k <= self.num_platforms or self.partition != "overlap",
            "overlap-k", self.overlap_k, f"at most num-platforms ({self.num_platforms})",
        )
        _check(self.embedding_dim >= 1, "embedding-dim", self.embedding_dim, "an integer >= 1")
        try:
            sizes = self.mlp_layer_sizes
        except ValueError:
            sizes = ()
        _check(len(sizes) >= 1 and min(sizes) >= 1, "mlp-layers", self.mlp_layers, "comma-separated positive integers")
        _check(self.local_epochs >= 1, "local-epochs", self.local_epochs, "an integer >= 1")
        _check(self.batch_size >= 1, "batch-size", self.batch_size, "an integer >= 1")
        _check(self.learning_rate > 0, "learning-rate", self.learning_rate, "a number > 0")
        _check(self.weight_decay >= 0, "weight-decay", self.weight_decay, "a number >= 0")
        _check(self.negatives >= 1, "negatives", self.negatives, "an integer >= 1")
        _check(self.num_server_rounds >= 1, "num-server-rounds", self.num_server_rounds, "an integer >= 1")
        _check(0 < self.fraction_train <= 1, "fraction-train", self.fraction_train, "a number in (0, 1]")
        _check(not self.operator_data or bool(self.catalog), "operator-data", self.operator_data,
               "a folder of the platform's own files together with 'catalog' (items are catalog ids)")
        _check(self.reply_timeout > 0, "reply-timeout", self.reply_timeout, "a number of seconds > 0")
        _check(self.min_platforms >= 1, "min-platforms", self.min_platforms, "an integer >= 1")
        _check(
            self.server_optimizer in SERVER_OPTIMIZERS,
            "server-optimizer", self.server_optimizer, f"one of {SERVER_OPTIMIZERS}",
        )
        _check(self.server_learning_rate > 0, "server-learning-rate", self.server_learning_rate, "a number > 0")
        _check(0 <= self.server_momentum < 1, "server-momentum", self.server_momentum, "a number in [0, 1)")
        _check(self.aggregation in AGGREGATIONS, "aggregation", self.aggregation, f"one of {AGGREGATIONS}")
        _check(
            self.aggregation == "mean" or (self.server_optimizer == "fedavg" and self.server_learning_rate == 1.0),
            "aggregation", self.aggregation,
            "'mean' when server-optimizer is not plain fedavg (median and trimmed mean replace the average)",
        )
        _check(self.aggregation == "mean" or not self.secagg, "aggregation", self.aggregation,
               "'mean' with secagg = true (median and trimmed mean need each update; SecAgg+ reveals only the sum)")
        _check(0 <= self.trim_fraction < 0.5, "trim-fraction", self.trim_fraction, "a number in [0, 0.5)")
        _check(self.max_update_norm >= 0, "max-update-norm", self.max_update_norm, "a number >= 0 (0 = no bound)")
        _check(self.finetune_epochs >= 0, "finetune-epochs", self.finetune_epochs, "an integer >= 0")
        _check(self.privacy_unit in PRIVACY_UNITS, "privacy-unit", self.privacy_unit, f"one of {PRIVACY_UNITS}")
        _check(self.epsilon > 0, "epsilon", self.epsilon, "a number > 0")
        _check(0 < self.delta < 1, "delta", self.delta, "a number in (0, 1)")
        _check(self.noise_multiplier >= 0, "noise-multiplier", self.noise_multiplier, "a number >= 0 (0 = calibrate)")
        _check(self.clip_norm > 0, "clip-norm", self.clip_norm, "a number > 0")
        _check(self.user_batch >= 1, "user-batch", self.user_batch, "an integer >= 1")
        _check(self.bag_positives >= 1, "bag-positives", self.bag_positives, "an integer >= 1")
        _check(self.refresh_steps >= 0, "refresh-steps", self.refresh_steps, "an integer >= 0")
        _check(self.refresh_learning_rate > 0, "refresh-learning-rate", self.refresh_learning_rate, "a number > 0")
        _check(self.secagg_clip_range > 0, "secagg-clip-range", self.secagg_clip_range, "a number > 0")
        _check(self.secagg_max_weight >= 1, "secagg-max-weight", self.secagg_max_weight, "a number >= 1")
        _check(0 < self.secagg_shares <= 1, "secagg-shares", self.secagg_shares, "a fraction in (0, 1]")
        _check(0 < self.secagg_threshold <= 1, "secagg-threshold", self.secagg_threshold, "a fraction in (0, 1]")
        _check(self.noise_mode in NOISE_MODES, "noise-mode", self.noise_mode, f"one of {NOISE_MODES}")
        _check(self.noise_mode == "local" or (self.secagg and self.private), "noise-mode", self.noise_mode,
               "'local' unless secagg = true and privacy-unit is set (distributed noise needs secure aggregation)")
        _check(self.noise_mode == "local" or self.privacy_unit == "user", "noise-mode", self.noise_mode,
               "'local' with privacy-unit = 'interaction' (distributed noise sums user-level contributions)")
        _check(0 <= self.tolerated_colluders < self.min_platforms, "tolerated-colluders", self.tolerated_colluders,
               f"an integer in [0, min-platforms = {self.min_platforms})")
        _check(self.noise_mode == "local" or self.max_update_norm == 0, "max-update-norm", self.max_update_norm,
               "0 with noise-mode = 'distributed' (scaling a noise share down would leave the sum short of noise; "
               "the SecAgg+ range already bounds each platform)")
        _check(self.noise_mode == "local" or self.noise_multiplier > 0, "noise-multiplier", self.noise_multiplier,
               "an explicit value > 0 with noise-mode = 'distributed' (every platform's share must add up to it)")
        _check(self.accountant in ACCOUNTANTS, "accountant", self.accountant, f"one of {ACCOUNTANTS}")
        _check(self.finetune_embedding_dim >= 0, "finetune-embedding-dim", self.finetune_embedding_dim,
               "an integer >= 0 (0 = fine-tune a copy of the global model)")
        _check(self.finetune_learning_rate > 0, "finetune-learning-rate", self.finetune_learning_rate, "a number > 0")
        _check(self.serve_model in SERVE_MODELS, "serve-model", self.serve_model, f"one of {SERVE_MODELS}")
        _check(self.serve_model == "global" or self.finetune_epochs >= 1, "serve-model", self.serve_model,
               "'global' unless finetune-epochs >= 1 (the fine-tuned copy needs local epochs)")
        _check(self.foldin_steps >= 0, "foldin-steps", self.foldin_steps, "an integer >= 0")
        _check(self.foldin_learning_rate > 0, "foldin-learning-rate", self.foldin_learning_rate, "a number > 0")
        _check(self.eval_negatives >= 1, "eval-negatives", self.eval_negatives, "an integer >= 1")
        _check(self.top_k >= 1, "top-k", self.top_k, "an integer >= 1")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is out of range: expected {allowed}")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert TOML/CLI values to the field's type, naming the key on failure."""
    kind = annotation if isinstance(annotation, type) else {"int": int, "float": float, "bool": bool, "str": str}.get(
        str(annotation), None
    )
    if kind is None:
        return value
    key = name.replace("_", "-")
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return lowered in {"true", "1", "yes"}
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}' = {value!r} is not a valid {kind.__name__}") from None
