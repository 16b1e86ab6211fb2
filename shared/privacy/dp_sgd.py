"""A private local round with Opacus: what may leave the platform is clipped and noised.

User level (the default unit). For every step: Poisson-sample users; for each sampled
user, refresh *their own* user-id embedding with everything else frozen (it depends on
their data and on already-privatised parameters only, so it needs no noise - joint DP,
as in private alternating minimisation and federated reconstruction); then take one
DP-SGD step on everything that is shared *or influences other users' contributions*:
the shared scorer and the user-feature embeddings (e.g. "age 25-34" is common to many
users, so it is trained with noise too even though it never leaves). Each user's bag is
one sample, clipped to ``clip-norm``; Gaussian noise is added once per step.

Interaction level: plain Opacus over the whole model, one interaction row (a positive
and its negatives) per sample. Sound only because every locally trained parameter,
the user tower included, goes through DP-SGD.
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from opacus import GradSampleModule, PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch import nn
from torch.utils.data import TensorDataset

from crossfed.shared.config import PrivacyConfig, RunConfig
from crossfed.shared.data.interactions import Interactions
from crossfed.shared.model.recommender import FixedItemScorer, Recommender
from crossfed.shared.privacy import norm_samplers  # noqa: F401 - registers the cheaper ghost-clipping norms
from crossfed.shared.privacy.bags import BagLoss, user_bags
from crossfed.shared.privacy.clipping import ClippedGradients
from crossfed.shared.privacy.ledger import PrivacyLedger
from crossfed.shared.training.fit import FitResult
from crossfed.shared.training.sampling import sample_negatives

#: How per-user gradients are clipped (see :func:`train_private_round`); all give the same clipped sums.
GRAD_SAMPLE_MODES = ("ghost", "opacus-ghost", "hooks")


class UserLevelCore(nn.Module):
    """What user-level DP-SGD trains: user-feature embeddings and the shared scorer.

    The user-id vectors come in as an input, already refreshed per user.
    """

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.user_features = model.user_tower.features
        self.shared = model.shared

    def forward(
        self,
        id_vectors: torch.Tensor,
        users: torch.Tensor,
        items: torch.Tensor,
        item_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        features = self.user_features(users)
        return self.shared(id_vectors if features is None else id_vectors + features, items, item_vectors)


def private_parameters(model: Recommender, unit: str) -> list[nn.Parameter]:
    """The parameters DP-SGD updates for ``unit`` (the optimizer is built over exactly these)."""
    if unit == "interaction":
        return list(model.parameters())
    return list(UserLevelCore(model).parameters())


@dataclass(frozen=True)
class PrivateStepPlan:
    """How a private round samples: ``steps_per_epoch`` Poisson draws at rate ``1 / steps_per_epoch``.

    ``population`` is the number of privacy units (users, or interaction rows).
    """

    population: int
    steps_per_epoch: int
    epochs: int
    #: Distributed noise: one step per round, its noisy sum aggregated with every other platform's.
    single_step: bool = False

    @property
    def sample_rate(self) -> float:
        return 1.0 / self.steps_per_epoch

    @property
    def steps_per_round(self) -> int:
        return 1 if self.single_step else self.steps_per_epoch * self.epochs


def plan(config: RunConfig, train: Interactions) -> PrivateStepPlan:
    population = train.num_users if config.privacy.privacy_unit == "user" else len(train)
    batch = config.privacy.user_batch if config.privacy.privacy_unit == "user" else config.training.batch_size
    return PrivateStepPlan(
        population,
        max(1, math.ceil(population / batch)),
        config.training.local_epochs,
        single_step=config.secure_aggregation.noise_mode == "distributed",
    )


def noise_share(config: RunConfig) -> float:
    """The fraction of the noise standard deviation this platform adds itself.

    Distributed: ``1 / sqrt(min-platforms - tolerated-colluders)``. The coordinator never
    unmasks a sum of fewer than ``min-platforms`` contributions, and colluding platforms can
    subtract their own shares: the honest rest still carry the full noise.
    """
    if config.secure_aggregation.noise_mode != "distributed":
        return 1.0
    return 1.0 / math.sqrt(config.federation.min_platforms - config.secure_aggregation.tolerated_colluders)


def train_private_round(
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    train: Interactions,
    ledger: PrivacyLedger,
    config: RunConfig,
    rng: np.random.Generator,
    grad_sample_mode: str = "ghost",
) -> FitResult:
    """One round of DP-SGD; the ledger's accountant continues from the earlier rounds.

    ``grad_sample_mode="ghost"`` (ghost clipping in one backward pass,
    :mod:`crossfed.shared.privacy.clipping`) never materialises per-sample gradients;
    ``"opacus-ghost"`` (Opacus' own ghost clipping, two backward passes) and ``"hooks"``
    (Opacus' default, per-sample gradients materialised) compute the same clipped sums
    and are there for comparison.

    Poisson sampling and noise draw from a generator seeded with OS entropy, never from
    the run seed: the coordinator knows the run seed, and noise it can predict protects
    nothing. (Opacus' ``secure_mode`` would need ``torchcsprng``, which has no build for
    this torch.) ``rng`` - seeded - drives only the bags' negatives and the refresh.
    """
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ValueError(f"grad_sample_mode {grad_sample_mode!r} is not one of {GRAD_SAMPLE_MODES}")
    step_plan = plan(config, train)
    share = noise_share(config)
    engine = PrivacyEngine(accountant=ledger.accountant)
    engine.accountant.history = list(ledger.history)
    generator = torch.Generator().manual_seed(secrets.randbits(63))
    # Opacus' Poisson sampler, read directly: its DataLoader would fetch and collate every index one by one.
    sampler = UniformWithReplacementSampler(
        num_samples=step_plan.population, sample_rate=step_plan.sample_rate, generator=generator
    )
    if len(sampler) != step_plan.steps_per_epoch:
        raise RuntimeError(f"DP sampler takes {len(sampler)} steps per epoch, the plan {step_plan.steps_per_epoch}")
    core: nn.Module = model if config.privacy.privacy_unit == "interaction" else UserLevelCore(model)
    noise_multiplier = ledger.noise_multiplier * share
    model.train()
    if grad_sample_mode == "ghost":
        clipper = ClippedGradients(core, config.privacy.clip_norm)
        clipped = {id(parameter) for parameter in clipper.parameters}
        if any(id(p) not in clipped for group in optimizer.param_groups for p in group["params"]):
            clipper.close()
            raise ValueError("the optimizer updates parameters the private step does not clip")
        private_optimizer = DPOptimizerFastGradientClipping(
            optimizer.original_optimizer if isinstance(optimizer, DPOptimizer) else optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=config.privacy.clip_norm,
            expected_batch_size=int(step_plan.population * step_plan.sample_rate),
            loss_reduction="mean",
            generator=generator,
        )
        private_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=step_plan.sample_rate))
        backward: ClippedBackward = _one_pass_backward(core, clipper)
        close = clipper.close
    else:
        private_module, private_optimizer, backward = _opacus_backward(
            engine, core, optimizer, sampler, noise_multiplier, config, generator, grad_sample_mode
        )
        close = private_module._close  # remove Opacus hooks: the model is reused after the round
    step = _user_level_step if config.privacy.privacy_unit == "user" else _interaction_level_step
    items_by_user = train.items_per_user()
    started, pairs, losses = time.perf_counter(), 0, []
    apply_step = private_optimizer.step
    if step_plan.single_step:

        def apply_step() -> None:
            distributed_step(model, private_optimizer, config, ledger.noise_multiplier, share, generator)

    try:
        for _epoch in range(1 if step_plan.single_step else config.training.local_epochs):
            for indices in sampler:
                rows = np.asarray(indices, dtype=np.int64)
                private_optimizer.zero_grad(set_to_none=True)
                if len(rows) == 0:  # an empty Poisson draw still releases a (pure-noise) step
                    for parameter in private_optimizer.params:
                        parameter.grad = torch.zeros_like(parameter)
                else:
                    loss, scored = step(model, backward, rows, train, items_by_user, config, rng)
                    losses.append(loss)
                    pairs += scored
                apply_step()
                if step_plan.single_step:
                    break
    finally:
        close()
        model.eval()
    if share == 1.0:
        ledger.record_round(engine.accountant.history)
    else:  # the accountant saw this platform's share; the unmasked sum carries the full noise
        ledger.record_round(
            [(noise / share, rate, steps) for noise, rate, steps in engine.accountant.history[len(ledger.history) :]],
            keep=True,
        )
    return FitResult(
        float(np.mean(losses)) if losses else float("nan"),
        step_plan.population * config.training.local_epochs,
        pairs,
        time.perf_counter() - started,
    )


#: ``backward(forward, targets)``: runs ``forward()`` (the trained module's logits ``[samples, K]``), leaves
#: the sum of per-sample clipped gradients in ``.grad`` and returns the mean per-sample loss.
ClippedBackward = Callable[[Callable[[], torch.Tensor], torch.Tensor], float]


def _one_pass_backward(core: nn.Module, clipper: ClippedGradients) -> ClippedBackward:
    def backward(forward: Callable[[], torch.Tensor], targets: torch.Tensor) -> float:
        with clipper.recording():
            logits = forward()
        loss_per_sample = BagLoss(reduction="none")(logits, targets)
        clipper.backward(loss_per_sample)
        return float(loss_per_sample.detach().mean())

    return backward


def _opacus_backward(
    engine: PrivacyEngine,
    core: nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: UniformWithReplacementSampler,
    noise_multiplier: float,
    config: RunConfig,
    generator: torch.Generator,
    grad_sample_mode: str,
) -> tuple[GradSampleModule, DPOptimizer, ClippedBackward]:
    """Opacus' own clipping (``"opacus-ghost"``: two backward passes; ``"hooks"``: per-sample gradients)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Secure RNG.*")
        warnings.filterwarnings("ignore", message=".*Optimal order.*")
        wrapped = engine.make_private(
            module=core,
            optimizer=optimizer,
            criterion=BagLoss(),
            # Read for its length and dataset size only (the expected batch size); the round iterates ``sampler``.
            data_loader=DPDataLoader(
                TensorDataset(torch.arange(sampler.num_samples)), sample_rate=sampler.sample_rate, generator=generator
            ),
            noise_multiplier=noise_multiplier,
            max_grad_norm=config.privacy.clip_norm,
            grad_sample_mode="ghost" if grad_sample_mode == "opacus-ghost" else grad_sample_mode,
            poisson_sampling=False,
            noise_generator=generator,
        )
    if grad_sample_mode == "opacus-ghost":  # the criterion comes back wrapped: its backward() clips
        private_module, private_optimizer, criterion, _loader = wrapped
    else:
        (private_module, private_optimizer, _loader), criterion = wrapped, BagLoss()

    def backward(forward: Callable[[], torch.Tensor], targets: torch.Tensor) -> float:
        loss = criterion(forward(), targets)
        loss.backward()
        return float(loss.detach())

    return private_module, private_optimizer, backward


def distributed_step(
    model: Recommender,
    optimizer,
    config: RunConfig,
    noise_multiplier: float,
    share: float,
    generator: torch.Generator,
) -> None:
    """One SGD step whose shared part is this platform's noisy clipped sum, normalised by ``user-batch``.

    Opacus clips, adds this platform's share of the noise and divides by its expected batch
    size; rescaling to the common ``user-batch`` makes every platform's update a sum with the
    same sensitivity (``learning-rate * clip-norm / user-batch``), so the unmasked sum is the
    Gaussian mechanism at the full noise. Parameters that stay here but are shared between
    users (user-feature embeddings) get the rest of the noise locally: they feed later
    rounds' updates and must be as private as the sum.
    """
    optimizer.pre_step()  # clip, add the share of noise, scale by 1 / expected batch size; accountant step
    shared = {id(parameter) for parameter in model.shared.parameters()}
    rescale = optimizer.expected_batch_size / config.privacy.user_batch
    privacy = config.privacy
    top_up = noise_multiplier * privacy.clip_norm * math.sqrt(max(0.0, 1.0 - share**2)) / privacy.user_batch
    with torch.no_grad():
        for parameter in optimizer.params:
            gradient = parameter.grad * rescale
            if id(parameter) not in shared and top_up > 0:
                gradient = gradient + top_up * torch.randn(parameter.shape, generator=generator)
            parameter -= config.training.learning_rate * gradient


def _user_level_step(
    model: Recommender,
    backward: ClippedBackward,
    users: np.ndarray,
    train: Interactions,
    items_by_user: list[np.ndarray],
    config: RunConfig,
    rng: np.random.Generator,
) -> tuple[float, int]:
    items, targets = user_bags(
        users,
        items_by_user,
        train,
        positives=config.privacy.bag_positives,
        negatives=config.training.negatives,
        rng=rng,
    )
    user_tensor = torch.as_tensor(users)
    core = UserLevelCore(model)

    def forward() -> torch.Tensor:
        item_vectors = model.shared.item_tower(items)  # once per step: the refresh reuses it, detached
        scorer = FixedItemScorer(model.shared, items, item_vectors)
        id_vectors = refresh_user_embeddings(model, scorer, user_tensor, targets, config.privacy)
        return core(id_vectors, user_tensor, items, item_vectors)

    loss = backward(forward, targets)
    return loss, int((targets >= 0).sum())


def refresh_user_embeddings(
    model: Recommender,
    scorer: FixedItemScorer,
    users: torch.Tensor,
    targets: torch.Tensor,
    privacy: PrivacyConfig,
) -> torch.Tensor:
    """A few gradient steps on each sampled user's own id embedding, everything else frozen.

    The loss is summed over users, so each row's gradient is that user's alone. ``scorer``
    holds the bag's items with the shared weights detached: these passes compute gradients
    for the user vectors only, never for a parameter, and no clipping hook sees them.
    """
    table = model.user_tower.ids.weight
    vectors = table[users].detach().clone()
    with torch.no_grad():
        features = model.user_tower.features(users)
    for _ in range(privacy.refresh_steps):
        vectors.requires_grad_(True)
        inputs = vectors if features is None else vectors + features
        loss = BagLoss(reduction="none")(scorer(inputs), targets).sum()
        (gradient,) = torch.autograd.grad(loss, vectors)
        vectors = (vectors - privacy.refresh_learning_rate * gradient).detach()
    with torch.no_grad():
        table[users] = vectors
    return vectors


def _interaction_level_step(
    model: Recommender,
    backward: ClippedBackward,
    rows: np.ndarray,
    train: Interactions,
    _items_by_user: list[np.ndarray],
    config: RunConfig,
    rng: np.random.Generator,
) -> tuple[float, int]:
    users = train.users[rows]
    negatives = sample_negatives(users, config.training.negatives, train, rng)
    items = torch.as_tensor(np.concatenate([train.items[rows, None], negatives], axis=1))
    targets = torch.zeros(items.shape)
    targets[:, 0] = 1.0
    loss = backward(lambda: model(torch.as_tensor(users), items), targets)
    return loss, items.numel()
