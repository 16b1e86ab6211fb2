"""``RunConfig``: every section of a run, read from and written to flat ``foo-bar`` keys.

Flower hands apps a flat ``UserConfig`` mapping (``context.run_config``), which is empty
under ``flwr.simulation.run_simulation``; the research CLI therefore passes the same keys
explicitly. Both paths meet here, so a misspelled key or a bad value is refused before
anything runs: a misspelled privacy key silently falling back to a default would run
with privacy settings the operator never chose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from functools import cache
from typing import Any

from crossfed.shared.config.sections import (
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
from crossfed.shared.config.values import Section, check, coerce, key_of, unknown_key

MODES = ("federated", "centralized", "local-only", "popularity")


@dataclass(frozen=True)
class RunConfig:
    """Every tunable of a crossfed run, by concern; field ``foo_bar`` of any section is key ``foo-bar``."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    secure_aggregation: SecureAggregationConfig = field(default_factory=SecureAggregationConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Section attribute name -> section class, in reference-page order."""
        return {f.name: f.default_factory for f in fields(cls)}  # type: ignore[misc]

    @classmethod
    def keys(cls) -> frozenset[str]:
        """Every valid flat key (``learning-rate``)."""
        return frozenset(key_of(name) for name in _owners())

    @classmethod
    def documentation(cls) -> dict[str, str]:
        """Every key's one-line meaning, as written on its field (the reference page and CLI help show it)."""
        return {key_of(name): declared.metadata["doc"] for name, (_section, declared) in _owners().items()}

    @classmethod
    def from_mapping(cls, *layers: Mapping[str, Any] | None, source: str = "run config") -> RunConfig:
        """Merge flat config layers (later wins) keyed ``foo-bar`` or ``foo_bar``, then validate.

        A key no section declares is refused with the nearest valid name; ``source`` names
        where the layers came from in that message.
        """
        owners = _owners()
        values: dict[str, dict[str, Any]] = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                name = str(key).replace("-", "_")
                if name not in owners:
                    raise unknown_key(str(key), source, cls.keys())
                section, declared = owners[name]
                values.setdefault(section, {})[name] = coerce(name, value, declared.type)
        sections = cls.sections()
        config = cls(**{section: sections[section](**given) for section, given in values.items()})
        config.validate()
        return config

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with some keys (``learning_rate=...``) or whole sections (``training=...``) changed."""
        owners = _owners()
        sections: dict[str, Any] = {}
        per_section: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            if name in self.sections():
                sections[name] = value
            elif name in owners:
                per_section.setdefault(owners[name][0], {})[name] = value
            else:
                raise unknown_key(key_of(name), "RunConfig.replace", self.keys())
        for section, given in per_section.items():
            sections[section] = dataclasses.replace(sections.get(section, getattr(self, section)), **given)
        config = dataclasses.replace(self, **sections)
        config.validate()
        return config

    def to_flat(self) -> dict[str, Any]:
        """The Flower-style flat mapping (``foo-bar`` keys), e.g. for a ConfigRecord or ``summary.json``."""
        flat: dict[str, Any] = {}
        for section in self.sections():
            flat.update(getattr(self, section).to_flat())
        return flat

    @property
    def private(self) -> bool:
        return self.privacy.private

    @property
    def served_model(self) -> str:
        """What a platform serves, with ``serve-model = auto`` resolved: ``local-first`` under a privacy unit.

        Under DP the global model carries noise that a platform's own data does not need; a model
        that starts from what the platform has alone can only gain from it.
        """
        if self.serving.serve_model == "auto":
            return "local-first" if self.private else "global"
        return self.serving.serve_model

    def validate(self) -> None:
        """Each section checks its own keys; the rules that tie sections together are checked here."""
        for section in self.sections():
            getattr(self, section).validate()
        federation, robustness, privacy = self.federation, self.robustness, self.privacy
        secure = self.secure_aggregation
        check(
            robustness.aggregation == "mean" or federation.plain_fedavg,
            "aggregation",
            robustness.aggregation,
            "'mean' when server-optimizer is not plain fedavg (median and trimmed mean replace the average)",
        )
        check(
            secure.secagg_groups == 1 or secure.secagg,
            "secagg-groups",
            secure.secagg_groups,
            "1 unless secagg = true (each group is its own SecAgg+ instance)",
        )
        if secure.secagg:
            self._validate_secure_groups()
        check(
            secure.noise_mode == "local" or (secure.secagg and privacy.private),
            "noise-mode",
            secure.noise_mode,
            "'local' unless secagg = true and privacy-unit is set (distributed noise needs secure aggregation)",
        )
        check(
            secure.noise_mode == "local" or privacy.privacy_unit == "user",
            "noise-mode",
            secure.noise_mode,
            "'local' with privacy-unit = 'interaction' (distributed noise sums user-level contributions)",
        )
        check(
            0 <= secure.tolerated_colluders < federation.min_platforms,
            "tolerated-colluders",
            secure.tolerated_colluders,
            f"an integer in [0, min-platforms = {federation.min_platforms})",
        )
        check(
            secure.noise_mode == "local" or robustness.max_update_norm == 0,
            "max-update-norm",
            robustness.max_update_norm,
            "0 with noise-mode = 'distributed' (scaling a noise share down would leave the sum short of noise; "
            "the SecAgg+ range already bounds each platform)",
        )
        check(
            secure.noise_mode == "local" or privacy.noise_multiplier > 0 or privacy.mechanism == "gram-subspace",
            "noise-multiplier",
            privacy.noise_multiplier,
            "an explicit value > 0 with noise-mode = 'distributed' and DP-SGD (every platform's share must add up "
            "to it; the one Gram release calibrates σ from epsilon and delta alone, the same on every platform)",
        )

    def _validate_secure_groups(self) -> None:
        """Under SecAgg+ a robust rule combines group sums: enough groups to outvote one, each a SecAgg+
        round every platform accepts (at least ``min-platforms`` peers, as each platform checks itself)."""
        robustness, secure = self.robustness, self.secure_aggregation
        needed = robustness.values_to_outvote_one
        check(
            needed is not None,
            "trim-fraction",
            robustness.trim_fraction,
            "a number > 0 for trimmed-mean with secagg = true (cutting nothing bounds no hostile group)",
        )
        check(
            robustness.aggregation == "mean" or secure.secagg_groups >= (needed or 0),
            "secagg-groups",
            secure.secagg_groups,
            f"at least {needed} with aggregation = '{robustness.aggregation}' and secagg = true (the rule combines "
            "the sums of disjoint groups, each its own SecAgg+ instance; fewer cannot outvote one hostile group)",
        )
        sampled = self.sampled_platforms
        largest = sampled // self.federation.min_platforms
        check(
            secure.secagg_groups == 1 or secure.secagg_groups <= largest,
            "secagg-groups",
            secure.secagg_groups,
            f"at most {largest}: each group of the {sampled} platforms sampled per round needs at least "
            f"min-platforms = {self.federation.min_platforms}, or its platforms refuse the SecAgg+ round",
        )

    @property
    def sampled_platforms(self) -> int:
        """Platforms a round samples, as Flower's strategies count them."""
        federation, platforms = self.federation, self.data.num_platforms
        return max(int(platforms * federation.fraction_train), min(federation.min_platforms, platforms))


@cache
def _owners() -> dict[str, tuple[str, Field[Any]]]:
    """Field name -> (the section attribute that declares it, its field); each name has one owner."""
    owners: dict[str, tuple[str, Field[Any]]] = {}
    for section, kind in RunConfig.sections().items():
        for declared in kind.settings():
            if declared.name in owners:
                raise TypeError(f"config key '{key_of(declared.name)}' is declared by two sections")
            owners[declared.name] = (section, declared)
    return owners
