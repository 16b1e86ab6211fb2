"""Which settings a deployed platform takes only from its own operator.

In a deployment the run config is what the coordinator submitted, and the coordinator is
not trusted with a platform's privacy: a run config with ``noise-mode = "distributed"`` and
``min-platforms = 10000`` would make a platform add a hundredth of its noise while its
ledger still priced the full noise. So every key that sets how much privacy a platform
spends, how much noise it adds or how many peers its update is hidden among
(:data:`PRIVACY_KEYS`) is accepted from the coordinator only at its declared default;
any other value must be pinned by the operator in the SuperNode's node config, where it
wins.

``noise-mode`` is the exception: a coordinator may ask for distributed noise, but unless the
operator pinned ``noise-mode = "distributed"`` (:func:`trusts_distributed_noise`) the
platform prices its budget on the noise it adds itself, so a small share only exhausts its
budget sooner. Once the operator opted in, ``min-platforms`` and ``tolerated-colluders``
set that share (:data:`NOISE_SCALING_KEYS`) and must be pinned too; otherwise they are the
coordinator's to choose. A simulation's run config is the researcher's own and is taken
as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crossfed.shared.config.run import RunConfig
from crossfed.shared.config.values import ConfigError

#: Privacy-relevant keys and what a coordinator could do with each: spend more budget, add
#: less noise, or let fewer peers hide a platform's update. Settings that only change what
#: the ledger already prices (``local-epochs``, ``batch-size``, ``num-server-rounds``) are
#: not here: the ledger accounts for them and refuses a round past the budget.
PRIVACY_KEYS: dict[str, str] = {
    "privacy-unit": "switches differential privacy off or changes what it protects",
    "epsilon": "the platform's whole budget",
    "delta": "the failure probability the budget is priced at",
    "noise-multiplier": "the noise added at every step",
    "clip-norm": "the sensitivity the noise is scaled to",
    "user-batch": "the sampling rate the accountant amplifies by",
    "accountant": "how the spend is counted",
    "user-dp-mechanism": "what the budget is spent on: one Gram release or DP-SGD rounds",
    "secagg": "whether the coordinator sees each update or only the sum",
    "secagg-shares": "among how many peers a platform's mask secrets are split",
    "secagg-threshold": "how many of those peers can unmask a platform's update",
    "min-platforms": "under distributed noise: how small each platform's share of the noise is",
    "tolerated-colluders": "under distributed noise: how small each platform's share of the noise is",
}

#: Keys in :data:`PRIVACY_KEYS` that matter only when the operator opted into distributed noise.
NOISE_SCALING_KEYS = frozenset({"min-platforms", "tolerated-colluders"})


class UnpinnedPrivacySetting(ConfigError):
    """The coordinator set a privacy-relevant key the platform's operator did not pin."""


def refuse_unpinned_privacy_settings(config: RunConfig, pinned: Mapping[str, Any]) -> None:
    """Refuse a privacy-relevant value in ``config`` that is neither pinned nor the key's default.

    ``pinned`` holds the keys the platform's operator set (node config, local overrides);
    ``config`` is the merged configuration the platform would train with.
    """
    given, defaults = config.to_flat(), RunConfig().to_flat()
    own = {str(key).replace("_", "-") for key in pinned}
    distributed = trusts_distributed_noise(config, pinned)
    for key in sorted(PRIVACY_KEYS):
        if key in own or given[key] == defaults[key]:
            continue
        if key in NOISE_SCALING_KEYS and not distributed:
            continue
        raise UnpinnedPrivacySetting(
            f"config key '{key}' = {given[key]!r} came from the coordinator's run config; a platform takes "
            f"'{key}' only from its operator ({PRIVACY_KEYS[key]}): pin it in the SuperNode's node config "
            f"or leave it at its default {defaults[key]!r}"
        )


def trusts_distributed_noise(config: RunConfig, pinned: Mapping[str, Any]) -> bool:
    """Whether the platform's operator chose distributed noise (pinned ``noise-mode``), so that
    the budget may count the noise its peers add; otherwise it counts the platform's own only."""
    own = {str(key).replace("_", "-") for key in pinned}
    return config.secure_aggregation.noise_mode == "distributed" and "noise-mode" in own


class RevealingSettingError(ConfigError):
    """A value the coordinator set could only be honoured by revealing a count of the platform's data."""


def refuse_revealing_settings(config: RunConfig, catalog_size: int) -> None:
    """Refuse coordinator-set values that exceed what public quantities allow.

    ``eval-negatives`` samples items a user has not interacted with: a value near the
    catalog size fails for exactly the users with the most interactions, and whether it
    fails tells the coordinator about them. Bounding it by half the catalog (public) keeps
    every ordinary platform clear of that edge; a platform whose user has still seen more
    than half the catalog fails with a code, never with the count.
    """
    limit = catalog_size // 2
    negatives = config.evaluation.eval_negatives
    if negatives > limit:
        raise RevealingSettingError(
            f"config key 'eval-negatives' = {negatives} is out of range: expected at most half the catalog "
            f"({limit} of {catalog_size} items), so that no user's count of unseen items decides the outcome"
        )
