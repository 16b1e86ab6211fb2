"""The configuration sections: each key of ``[tool.flwr.app.config]`` belongs to exactly one.

A function that reads one concern takes only its section (``make_strategy`` needs the
federation, not the privacy budget), so what a function depends on shows in its signature.
Each section checks the ranges of its own keys; checks spanning sections live in ``RunConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

from crossfed.shared.config.values import Section, check, setting

PARTITION_SCHEMES = ("natural", "dirichlet", "iid", "overlap")
SERVER_OPTIMIZERS = ("fedavg", "fedavgm", "fedadam")
PRIVACY_UNITS = ("none", "user", "interaction")
ACCOUNTANTS = ("rdp", "prv")
SERVE_MODELS = ("auto", "global", "fine-tuned", "local-first")
AGGREGATIONS = ("mean", "median", "trimmed-mean")
NOISE_MODES = ("local", "distributed")
USER_DP_MECHANISMS = ("gram-subspace", "dp-sgd")


def layer_sizes(text: str) -> tuple[int, ...]:
    """Layer widths from their comma-separated spelling (``"64,32,16"``)."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def weight_list(text: str) -> tuple[float, ...]:
    """Weights from their comma-separated spelling (``"0,0.5,1"``)."""
    return tuple(float(part) for part in text.split(",") if part.strip())


def _check_layers(key: str, text: str) -> None:
    try:
        sizes = layer_sizes(text)
    except ValueError:
        sizes = ()
    check(len(sizes) >= 1 and min(sizes) >= 1, key, text, "comma-separated positive integers")


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """Where a run writes its results and what makes it reproducible."""

    title = "Run"

    run_dir: str = setting(
        "runs/latest", "where checkpoints, platform states and `summary.json` go (the CLI sets it from `--out`)"
    )
    seed: int = setting(0, "seeds partitioning, initialisation, negatives and evaluation candidates (not DP noise)")
    resume: bool = setting(False, "continue from `run-dir/checkpoint.pt` (settings must match the checkpoint's)")


@dataclass(frozen=True)
class DataConfig(Section):
    """Which interactions each platform trains on: the dataset and its split, or the platform's own files."""

    title = "Data and platforms"

    dataset: str = setting(
        "ml-100k",
        "a built-in (`ml-100k`, `ml-1m`: MovieLens 100K or 1M, the same features) or a folder in the data "
        "contract (`interactions`, `items` or `catalog.json`, optional `users`; CSV or Parquet)",
    )
    data_dir: str = setting(
        "",
        "local copy of a built-in dataset (the folder holding its files); empty: `$CROSSFED_DATA_DIR` (that "
        "folder, or its `ml-100k/` or `ml-1m/` subfolder), else download into the cache",
    )
    max_users: int = setting(0, "keep a random subset of users (0 = all); for quick tests")
    extra_items: int = setting(
        0,
        "append this many items nobody interacted with (features copied from random "
        "real items) to the catalog: varies catalog size at a fixed amount of data, "
        "for cost studies",
    )
    num_platforms: int = setting(5, "platforms in a simulation")
    partition: str = setting("natural", "`natural`, `dirichlet`, `iid` or `overlap`")
    partition_attribute: str = setting(
        "region", "user attribute for `natural` / `dirichlet` (`region`, `occupation`, `gender`, `zip`, ...)"
    )
    dirichlet_alpha: float = setting(0.5, "Dirichlet concentration (smaller: more unequal platforms)")
    overlap_k: int = setting(2, "platforms per user for `overlap`")
    catalog: str = setting("", "the coordinator's catalog file (`crossfed catalog publish`); empty: none")
    catalog_version: str = setting("", "catalog version the run uses; a platform refuses another version (empty: any)")
    operator_data: str = setting(
        "",
        "train on the platform's own files instead of a partition of `dataset`: a "
        "folder with `interactions.csv`/`.parquet` (and optionally `users.csv`/"
        "`.parquet`), checked against `catalog`; `{partition-id}` is replaced by the "
        "platform's index (set it per SuperNode in node config)",
    )

    def validate(self) -> None:
        check(self.max_users >= 0, "max-users", self.max_users, "an integer >= 0 (0 = every user)")
        check(self.extra_items >= 0, "extra-items", self.extra_items, "an integer >= 0")
        check(
            self.extra_items == 0 or not (self.catalog or self.operator_data),
            "extra-items",
            self.extra_items,
            "0 with a published catalog or operator data (padding is for simulated catalogs only)",
        )
        check(self.num_platforms >= 1, "num-platforms", self.num_platforms, "an integer >= 1")
        check(self.partition in PARTITION_SCHEMES, "partition", self.partition, f"one of {PARTITION_SCHEMES}")
        check(self.dirichlet_alpha > 0, "dirichlet-alpha", self.dirichlet_alpha, "a number > 0")
        check(self.overlap_k >= 1, "overlap-k", self.overlap_k, "an integer >= 1")
        check(
            self.overlap_k <= self.num_platforms or self.partition != "overlap",
            "overlap-k",
            self.overlap_k,
            f"at most num-platforms ({self.num_platforms})",
        )
        check(
            not self.operator_data or bool(self.catalog),
            "operator-data",
            self.operator_data,
            "a folder of the platform's own files together with 'catalog' (items are catalog ids)",
        )


@dataclass(frozen=True)
class ModelConfig(Section):
    """The shape of the shared recommender (NeuMF towers over user and item features)."""

    title = "Model"

    embedding_dim: int = setting(32, "width of each NeuMF branch (towers emit 2 × this)")
    mlp_layers: str = setting("64,32,16", "widths of the interaction MLP")
    item_id_embedding: bool = setting(
        True, "learn item-id embeddings; `false`: items are their (public) features plus a bias"
    )

    @property
    def mlp_layer_sizes(self) -> tuple[int, ...]:
        return layer_sizes(self.mlp_layers)

    def validate(self) -> None:
        check(self.embedding_dim >= 1, "embedding-dim", self.embedding_dim, "an integer >= 1")
        _check_layers("mlp-layers", self.mlp_layers)


@dataclass(frozen=True)
class TrainingConfig(Section):
    """How each platform trains locally in a round."""

    title = "Local training"

    local_epochs: int = setting(1, "epochs per round on each platform")
    batch_size: int = setting(
        64, "positives per step (each with its negatives); interaction-level DP: expected rows per step"
    )
    learning_rate: float = setting(0.002, "Adam learning rate on the platforms")
    weight_decay: float = setting(0.0, "Adam weight decay")
    negatives: int = setting(4, "sampled negatives per positive")

    def validate(self) -> None:
        check(self.local_epochs >= 1, "local-epochs", self.local_epochs, "an integer >= 1")
        check(self.batch_size >= 1, "batch-size", self.batch_size, "an integer >= 1")
        check(self.learning_rate > 0, "learning-rate", self.learning_rate, "a number > 0")
        check(self.weight_decay >= 0, "weight-decay", self.weight_decay, "a number >= 0")
        check(self.negatives >= 1, "negatives", self.negatives, "an integer >= 1")


@dataclass(frozen=True)
class FederationConfig(Section):
    """How the coordinator runs rounds and combines the platforms' updates."""

    title = "Federation"

    num_server_rounds: int = setting(
        30, "most federation rounds (baselines: blocks of `local-epochs` epochs); `patience` may stop sooner"
    )
    patience: int = setting(
        5,
        "early stopping, the same rule in every mode: stop after this many rounds (baselines: blocks of "
        "`local-epochs` epochs) without a strict improvement of validation HR@K (sampled protocol, over all "
        "platforms' users; local-only: each platform on its own) and test the best round's model; 0 = train "
        "every round and still test the best. Under DP nobody sees validation figures: the whole budget runs",
    )
    fraction_train: float = setting(1.0, "fraction of platforms sampled per round")
    min_platforms: int = setting(2, "fewest platforms a round may go on with")
    server_optimizer: str = setting(
        "fedavg",
        "`fedavg`, `fedavgm` or `fedadam` (`fedavg` with a server learning rate ≠ 1 is FedAvgM without momentum)",
    )
    server_learning_rate: float = setting(1.0, "server step size (FedAvgM / FedAdam η)")
    server_momentum: float = setting(0.0, "FedAvgM momentum")
    reply_timeout: float = setting(
        1800.0,
        "seconds the coordinator waits for a round's replies (each SecAgg+ "
        "stage too); a platform that does not answer in time counts as dropped",
    )

    def validate(self) -> None:
        check(self.num_server_rounds >= 1, "num-server-rounds", self.num_server_rounds, "an integer >= 1")
        check(self.patience >= 0, "patience", self.patience, "an integer >= 0 (0 = train every round)")
        check(0 < self.fraction_train <= 1, "fraction-train", self.fraction_train, "a number in (0, 1]")
        check(self.reply_timeout > 0, "reply-timeout", self.reply_timeout, "a number of seconds > 0")
        check(self.min_platforms >= 1, "min-platforms", self.min_platforms, "an integer >= 1")
        check(
            self.server_optimizer in SERVER_OPTIMIZERS,
            "server-optimizer",
            self.server_optimizer,
            f"one of {SERVER_OPTIMIZERS}",
        )
        check(self.server_learning_rate > 0, "server-learning-rate", self.server_learning_rate, "a number > 0")
        check(0 <= self.server_momentum < 1, "server-momentum", self.server_momentum, "a number in [0, 1)")

    @property
    def plain_fedavg(self) -> bool:
        """Whether the server step is the plain weighted average (no server optimizer on top)."""
        return self.server_optimizer == "fedavg" and self.server_learning_rate == 1.0


@dataclass(frozen=True)
class RobustnessConfig(Section):
    """Defences against broken or hostile platforms (crossfed.server.screening, crossfed.client.bound)."""

    title = "Robustness"

    aggregation: str = setting(
        "mean",
        "`mean` (the `server-optimizer`'s), `median` (coordinate-wise) or "
        "`trimmed-mean`; the last two need plain `fedavg` "
        "(see README, 'Faults and attacks')",
    )
    trim_fraction: float = setting(0.2, "fraction cut from each tail by `trimmed-mean`, in [0, 0.5)")
    max_update_norm: float = setting(
        0.0,
        "agreed L2 bound on a platform's update of the shared parameters: "
        "platforms clip to it, the coordinator rejects updates above it "
        "(0 = no bound)",
    )

    @property
    def values_to_outvote_one(self) -> int | None:
        """Fewest values the rule must combine so that one arbitrary value among them cannot move the
        result outside the range of the others (``None``: no count does, as for a trimmed mean that cuts nothing).

        A median needs 3; a trimmed mean needs enough values that Flower's ``int(trim-fraction * n)``
        cuts at least one from each tail; a mean is never robust, so any count will do for it.
        """
        if self.aggregation == "median":
            return 3
        if self.aggregation == "trimmed-mean":
            if self.trim_fraction <= 0:
                return None
            count = 3
            while int(self.trim_fraction * count) < 1:
                count += 1
            return count
        return 1

    def validate(self) -> None:
        check(self.aggregation in AGGREGATIONS, "aggregation", self.aggregation, f"one of {AGGREGATIONS}")
        check(0 <= self.trim_fraction < 0.5, "trim-fraction", self.trim_fraction, "a number in [0, 0.5)")
        check(self.max_update_norm >= 0, "max-update-norm", self.max_update_norm, "a number >= 0 (0 = no bound)")


@dataclass(frozen=True)
class PrivacyConfig(Section):
    """Differential privacy of each platform's training (crossfed.shared.privacy)."""

    title = "Differential privacy"

    privacy_unit: str = setting("none", "`none`, `user` or `interaction`")
    epsilon: float = setting(8.0, "each platform's ε budget for the whole run")
    delta: float = setting(1e-5, "δ; must be below 1/n for the platform's n privacy units")
    noise_multiplier: float = setting(
        0.0, "explicit noise multiplier; 0: calibrate from `epsilon`, `delta` over the planned rounds"
    )
    clip_norm: float = setting(1.0, "per-sample (user or row) L2 clip")
    user_batch: int = setting(64, "expected users per step under user-level DP (rate 1 / ceil(users / user-batch))")
    bag_positives: int = setting(32, "positives per user bag (a uniform sample of the user's training items)")
    refresh_steps: int = setting(3, "gradient steps on a sampled user's own id embedding before each DP step")
    refresh_learning_rate: float = setting(0.5, "step size of that refresh")
    accountant: str = setting("rdp", "`rdp` or `prv` (Opacus accountants)")
    user_dp_mechanism: str = setting(
        "gram-subspace",
        "`privacy-unit = user` only: `gram-subspace` (each platform releases its noised item Gram matrix "
        "once; the coordinator sends back the top eigenvectors, which each platform serves beside its "
        "local-only model) or `dp-sgd` (every round trains the shared model with DP-SGD)",
    )

    @property
    def private(self) -> bool:
        return self.privacy_unit != "none"

    @property
    def mechanism(self) -> str:
        """How the federation runs: `gram-subspace` under user-level DP when chosen, else `dp-sgd` rounds
        (plain rounds when no privacy unit is set)."""
        return self.user_dp_mechanism if self.privacy_unit == "user" else "dp-sgd"

    def validate(self) -> None:
        check(self.privacy_unit in PRIVACY_UNITS, "privacy-unit", self.privacy_unit, f"one of {PRIVACY_UNITS}")
        check(self.epsilon > 0, "epsilon", self.epsilon, "a number > 0")
        check(0 < self.delta < 1, "delta", self.delta, "a number in (0, 1)")
        check(self.noise_multiplier >= 0, "noise-multiplier", self.noise_multiplier, "a number >= 0 (0 = calibrate)")
        check(self.clip_norm > 0, "clip-norm", self.clip_norm, "a number > 0")
        check(self.user_batch >= 1, "user-batch", self.user_batch, "an integer >= 1")
        check(self.bag_positives >= 1, "bag-positives", self.bag_positives, "an integer >= 1")
        check(self.refresh_steps >= 0, "refresh-steps", self.refresh_steps, "an integer >= 0")
        check(self.refresh_learning_rate > 0, "refresh-learning-rate", self.refresh_learning_rate, "a number > 0")
        check(self.accountant in ACCOUNTANTS, "accountant", self.accountant, f"one of {ACCOUNTANTS}")
        check(
            self.user_dp_mechanism in USER_DP_MECHANISMS,
            "user-dp-mechanism",
            self.user_dp_mechanism,
            f"one of {USER_DP_MECHANISMS}",
        )


@dataclass(frozen=True)
class SecureAggregationConfig(Section):
    """Flower SecAgg+ and how the DP noise is split across platforms under it."""

    title = "Secure aggregation"

    secagg: bool = setting(
        False, "aggregate every training round with Flower's SecAgg+: the coordinator learns only the sum"
    )
    secagg_clip_range: float = setting(
        1.0,
        "per-coordinate bound on a platform's (weighted) round update; "
        "platforms clip to it before masking and log what they clipped",
    )
    secagg_max_weight: float = setting(
        50000.0, "cap on a platform's aggregation weight (its positives) under SecAgg+; private platforms all weigh 1"
    )
    secagg_shares: float = setting(1.0, "fraction of the round's platforms each platform secret-shares its masks with")
    secagg_threshold: float = setting(
        0.5, "fraction of those shares needed to unmask; dropouts are tolerated while enough remain"
    )
    secagg_groups: int = setting(
        1,
        "disjoint groups of the sampled platforms, each its own SecAgg+ instance: the coordinator learns "
        "each group's sum and combines the group means by `aggregation` (at least 3 for `median`; "
        "each group at least `min-platforms`)",
    )
    noise_mode: str = setting(
        "local",
        "`local`: each platform adds all the DP noise; `distributed`: each adds "
        "σ/√n and SecAgg+ sums them (needs `secagg`)",
    )
    tolerated_colluders: int = setting(
        0,
        "distributed noise: platforms that may collude with the coordinator and "
        "subtract their own shares; each platform adds "
        "σ/√(`min-platforms` − this)",
    )

    def validate(self) -> None:
        check(self.secagg_clip_range > 0, "secagg-clip-range", self.secagg_clip_range, "a number > 0")
        check(self.secagg_max_weight >= 1, "secagg-max-weight", self.secagg_max_weight, "a number >= 1")
        check(0 < self.secagg_shares <= 1, "secagg-shares", self.secagg_shares, "a fraction in (0, 1]")
        check(0 < self.secagg_threshold <= 1, "secagg-threshold", self.secagg_threshold, "a fraction in (0, 1]")
        check(self.noise_mode in NOISE_MODES, "noise-mode", self.noise_mode, f"one of {NOISE_MODES}")
        check(self.secagg_groups >= 1, "secagg-groups", self.secagg_groups, "an integer >= 1")


@dataclass(frozen=True)
class ServingConfig(Section):
    """What a platform serves: the global model or its private fine-tuned copy, and fold-in of new interactions."""

    title = "Serving on a platform"

    finetune_epochs: int = setting(0, "epochs of the private copy a platform serves (0: serve the global model)")
    finetune_learning_rate: float = setting(0.002, "learning rate of that copy")
    finetune_embedding_dim: int = setting(
        0, "0: fine-tune a copy of the global model; d > 0: stack a local model of width d on the frozen global one"
    )
    finetune_mlp_layers: str = setting("64,32,16", "MLP widths of the stacked local model")
    serve_model: str = setting(
        "auto",
        "what a platform serves: `global`, `fine-tuned` (the private copy; needs `finetune-epochs` ≥ 1), "
        "`local-first` (its own local-only model plus the global model's logits at the weight its validation "
        "users prefer) or `auto` (`local-first` when `privacy-unit` is set, else `global`)",
    )
    local_first_weights: str = setting(
        "0,0.125,0.25,0.5,1",
        "`local-first`: weights of the global model's logits tried on the platform's validation users "
        "(0: the local model alone)",
    )
    subspace_ranks: str = setting(
        "8,16,24,32,64",
        "`gram-subspace`: ranks k of the item subspace a platform tries on its validation users "
        "(the coordinator sends the largest)",
    )
    subspace_weights: str = setting(
        "0,0.125,0.25,0.5,1,2,4,8",
        "`gram-subspace`: weights of the standardised subspace scores tried on the platform's validation "
        "users (0: the local model alone; another is served only if its gain there is significant)",
    )
    foldin_steps: int = setting(
        20, "Adam steps on a user's own vector when new interactions are folded in between rounds"
    )
    foldin_learning_rate: float = setting(0.05, "step size of fold-in")

    @property
    def local_first_weight_grid(self) -> tuple[float, ...]:
        return weight_list(self.local_first_weights)

    @property
    def subspace_rank_grid(self) -> tuple[int, ...]:
        return layer_sizes(self.subspace_ranks)

    @property
    def subspace_weight_grid(self) -> tuple[float, ...]:
        return weight_list(self.subspace_weights)

    @property
    def stacked_model(self) -> ModelConfig:
        """The shape of the local model stacked on the frozen global one (``finetune-embedding-dim`` > 0)."""
        model = ModelConfig(
            embedding_dim=self.finetune_embedding_dim, mlp_layers=self.finetune_mlp_layers, item_id_embedding=True
        )
        model.validate()
        return model

    def validate(self) -> None:
        check(self.finetune_epochs >= 0, "finetune-epochs", self.finetune_epochs, "an integer >= 0")
        check(
            self.finetune_embedding_dim >= 0,
            "finetune-embedding-dim",
            self.finetune_embedding_dim,
            "an integer >= 0 (0 = fine-tune a copy of the global model)",
        )
        check(self.finetune_learning_rate > 0, "finetune-learning-rate", self.finetune_learning_rate, "a number > 0")
        check(self.serve_model in SERVE_MODELS, "serve-model", self.serve_model, f"one of {SERVE_MODELS}")
        check(
            self.serve_model != "fine-tuned" or self.finetune_epochs >= 1,
            "serve-model",
            self.serve_model,
            "not 'fine-tuned' unless finetune-epochs >= 1 (the fine-tuned copy needs local epochs)",
        )
        try:
            weights = self.local_first_weight_grid
        except ValueError:
            weights = ()
        check(
            len(weights) >= 1 and min(weights) >= 0,
            "local-first-weights",
            self.local_first_weights,
            "comma-separated numbers >= 0",
        )
        _check_layers("subspace-ranks", self.subspace_ranks)
        try:
            subspace_weights = self.subspace_weight_grid
        except ValueError:
            subspace_weights = ()
        check(
            len(subspace_weights) >= 1 and min(subspace_weights) >= 0,
            "subspace-weights",
            self.subspace_weights,
            "comma-separated numbers >= 0",
        )
        check(self.foldin_steps >= 0, "foldin-steps", self.foldin_steps, "an integer >= 0")
        check(self.foldin_learning_rate > 0, "foldin-learning-rate", self.foldin_learning_rate, "a number > 0")


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """How ranking quality is measured."""

    title = "Evaluation"

    eval_negatives: int = setting(99, "negatives per user in the sampled protocol")
    top_k: int = setting(10, "cut-off of HR and NDCG")
    full_ranking_every: int = setting(
        0,
        "validation also ranks every user against the whole catalog every this many rounds "
        "(0: only the final test does; the sampled protocol runs every round, at a cost independent of the catalog)",
    )

    def validate(self) -> None:
        check(self.eval_negatives >= 1, "eval-negatives", self.eval_negatives, "an integer >= 1")
        check(self.top_k >= 1, "top-k", self.top_k, "an integer >= 1")
        check(self.full_ranking_every >= 0, "full-ranking-every", self.full_ranking_every, "an integer >= 0")

    def full_ranking_due(self, server_round: int) -> bool:
        """Whether validation after ``server_round`` ranks the whole catalog too."""
        return self.full_ranking_every > 0 and server_round % self.full_ranking_every == 0
