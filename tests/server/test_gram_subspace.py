"""``user-dp-mechanism = gram-subspace`` through the real ClientApp: one release, SecAgg+ or plain, then serving.

The platforms are the ClientApp itself (its handlers, mods, outbox and ``secaggplus_mod``) behind an
in-process grid, so no Ray is needed; each node keeps its Flower context, as a SuperNode does.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

import crossfed.server.gram_release as gram_release
from crossfed.client.client_app import build_app
from crossfed.client.outbox import LeakError, build_reply
from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.results import platform_dir, read_summary
from crossfed.shared.model.recommender import build_model
from crossfed.shared.privacy.item_subspace import release_length
from crossfed.shared.protocol.keys import GRAM_RELEASE_MESSAGE_TYPE, RELEASE_ARRAY, SUBSPACE_TEST_MESSAGE_TYPE
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.simulations.federated import platform_entries, with_platform_reported_metrics
from crossfed.simulations.local_first import local_first_block
from crossfed.simulations.synthetic import SyntheticSpec, write_music_dataset

PLATFORMS = 3
ALLOWED = {"platform", "num-examples", "declined", "epsilon", "epsilon-alone", "noise-multiplier", "delta"}


pytestmark = pytest.mark.usefixtures("message_identity")


class ClientAppGrid:
    """Node ``p + 1`` is platform ``p``, answered by the real ClientApp; every reply is recorded."""

    def __init__(self, config: RunConfig) -> None:
        self.app = build_app(config.to_flat())
        self.contexts = {
            p + 1: Context(
                run_id=1,
                node_id=p + 1,
                node_config={"partition-id": p, "num-partitions": PLATFORMS},
                state=RecordDict(),
                run_config={},
            )
            for p in range(PLATFORMS)
        }
        self.replies: list[tuple[str, Message]] = []

    @property
    def run(self):
        class Run:
            run_id = 1

        return Run()

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, *args, **kwargs) -> list[Message]:
        replies = []
        for message in messages:
            delivered = copy.deepcopy(message)  # a real grid serialises; SecAgg+'s mod consumes its config record
            reply = self.app(delivered, self.contexts[message.metadata.dst_node_id])
            self.replies.append((message.metadata.message_type, reply))
            replies.append(reply)
        return replies


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A small generated dataset in the data contract: 300 users, a catalog of 120 items."""
    root = tmp_path_factory.mktemp("synthetic")
    write_music_dataset(root, SyntheticSpec(users=300, items=120, min_interactions=6, max_interactions=20, seed=5))
    return root


def settings(folder, tmp_path, **changes) -> RunConfig:
    return RunConfig().replace(
        dataset=str(folder),
        run_dir=str(tmp_path / "run"),
        num_platforms=PLATFORMS,
        min_platforms=PLATFORMS,
        partition="iid",
        eval_negatives=20,
        embedding_dim=4,
        mlp_layers="8",
        num_server_rounds=2,
        patience=1,
        seed=5,
        privacy_unit="user",
        user_dp_mechanism="gram-subspace",
        delta=1e-3,
        subspace_ranks="2,4",
        subspace_weights="0,1,4",
        **changes,
    )


class Summed(Exception):
    """Stops a run once the coordinator holds the summed release."""


@pytest.fixture
def summed(monkeypatch):
    """The coordinator's summed release, as it hands it to the eigendecomposition."""
    seen: list[np.ndarray] = []
    subspace = gram_release.release_subspace

    def recording(total, num_items, rank):
        seen.append(total.copy())
        return subspace(total, num_items, rank)

    monkeypatch.setattr(gram_release, "release_subspace", recording)
    return seen


@pytest.fixture
def only_summed(monkeypatch):
    """The coordinator's summed release; the run stops there (no eigendecomposition, no serving)."""
    seen: list[np.ndarray] = []

    def recording(total, num_items, rank):
        seen.append(total.copy())
        raise Summed

    monkeypatch.setattr(gram_release, "release_subspace", recording)
    return seen


def test_the_path_sends_one_release_each_and_fills_the_summary(folder, tmp_path, summed):
    config = settings(folder, tmp_path, epsilon=8.0)
    grid = ClientAppGrid(config)
    gram_release.run_gram_subspace(grid, config)
    num_items = gram_release.catalog_size(config)
    releases = [reply for kind, reply in grid.replies if kind == GRAM_RELEASE_MESSAGE_TYPE]
    assert len(releases) == PLATFORMS
    for reply in releases:
        assert not reply.has_error()
        arrays = {name: array for record in reply.content.array_records.values() for name, array in record.items()}
        assert list(arrays) == [RELEASE_ARRAY]  # the release vector and nothing else, nothing user-side
        assert arrays[RELEASE_ARRAY].numpy().shape == (release_length(num_items),)
        assert list(reply.content.config_records) == []
        metrics = {k: v for record in reply.content.metric_records.values() for k, v in record.items()}
        assert set(metrics) <= ALLOWED and metrics["declined"] == 0
    tests = [reply for kind, reply in grid.replies if kind == SUBSPACE_TEST_MESSAGE_TYPE]
    assert len(tests) == PLATFORMS
    for reply in tests:  # under DP the test replies carry the privacy status only, no metric
        assert not reply.has_error() and not reply.content.array_records
        assert {k for record in reply.content.metric_records.values() for k in record} <= ALLOWED
    assert len(summed) == 1 and summed[0].shape == (release_length(num_items),)

    summary = with_platform_reported_metrics(read_summary(config.experiment.run_dir), config)
    test_entries = [e for lines in platform_entries(config).values() for e in lines if e["stage"] == "test"]
    block = local_first_block(config, config.experiment.run_dir, test_entries)
    assert summary["metrics"]["sampled"]["hr@10"] > 0 and summary["global_metrics"]["sampled"]["hr@10"] > 0
    privacy = summary["privacy"]
    assert privacy["mechanism"] == "gram-subspace" and privacy["unit"] == "user"
    assert len(privacy["epsilon"]) == PLATFORMS
    assert all(0 < spent <= config.privacy.epsilon for spent in privacy["epsilon"].values())
    assert [p["platform"] for p in block["per_platform"]] == list(range(PLATFORMS))
    for platform in block["per_platform"]:
        assert platform["rank"] in (2, 4) and platform["weight"] in (0.0, 1.0, 4.0)
        gain = platform["served_minus_local_only"]
        served = summary["per_platform"][platform["platform"]]["metrics"]["sampled"]["hr@10"]
        assert np.isclose(served - platform["local_only_metrics"]["sampled"]["hr@10"], gain["mean"])


def test_a_second_release_is_refused_also_after_a_restart(folder, tmp_path, only_summed):
    config = settings(folder, tmp_path, epsilon=8.0)
    with pytest.raises(Summed):
        gram_release.run_gram_subspace(ClientAppGrid(config), config)
    state = PlatformState.load(platform_dir(config.experiment.run_dir, 0))
    assert state is not None and sum(steps for _, _, steps in state.ledger["history"]) == 1  # one step, on disk
    restarted = ClientAppGrid(config)  # fresh contexts and app: only the platforms' disks remain
    with pytest.raises(gram_release.FederationError, match="fewer than min-platforms"):
        gram_release.run_gram_subspace(restarted, config)
    again = [reply for kind, reply in restarted.replies if kind == GRAM_RELEASE_MESSAGE_TYPE]
    assert len(again) == PLATFORMS
    for reply in again:
        metrics = {k: v for record in reply.content.metric_records.values() for k, v in record.items()}
        assert metrics["declined"] == 1 and not reply.content.array_records  # nothing released
    state = PlatformState.load(platform_dir(config.experiment.run_dir, 0))
    assert sum(steps for _, _, steps in state.ledger["history"]) == 1


def test_the_secagg_sum_equals_the_plain_sum_within_the_quantisation_step(folder, tmp_path, only_summed):
    plain = settings(folder, tmp_path / "plain", epsilon=float("inf"))  # no noise: the same releases
    secure = settings(folder, tmp_path / "secure", epsilon=float("inf"), secagg=True)
    for config in (plain, secure):
        with pytest.raises(Summed):
            gram_release.run_gram_subspace(ClientAppGrid(config), config)
    clear, masked = only_summed
    step = gram_release.release_plan(0.0).step
    assert np.abs(masked - clear).max() <= PLATFORMS * step + 1e-6  # float32 on the plain wire: 1e-6 of entries ~1
    assert np.abs(clear).max() > 100 * PLATFORMS * step  # the bound is far below the entries it compares


def test_a_platform_under_secagg_refuses_to_release_in_the_clear(folder, tmp_path):
    config = settings(folder, tmp_path, epsilon=8.0, secagg=True)
    grid = ClientAppGrid(config)
    total, contributors, _declined = gram_release._plain_sum(grid, config, gram_release.catalog_size(config))
    assert total is None and contributors == 0
    assert len(grid.replies) == PLATFORMS and all(reply.has_error() for _, reply in grid.replies)


@pytest.mark.parametrize(
    "release",
    [np.zeros(7), np.zeros((3, 2)), np.array([0.0, np.inf, 0.0]), np.arange(6)],  # length, shape, finite, float
)
def test_the_outbox_sends_a_release_only_as_one_vector_of_n_n_plus_1_over_2_finite_numbers(release):
    request = Message(RecordDict(), dst_node_id=1, message_type=GRAM_RELEASE_MESSAGE_TYPE)
    with pytest.raises(LeakError):
        build_reply(request, {"platform": 0, "declined": 0}, private=True, release=release)
    reply = build_reply(request, {"platform": 0, "declined": 0}, private=True, release=np.zeros(6))  # n = 3
    assert [list(record) for record in reply.content.array_records.values()] == [[RELEASE_ARRAY]]


def test_a_reply_never_carries_a_release_beside_parameters(dataset):
    request = Message(RecordDict(), dst_node_id=1, message_type=GRAM_RELEASE_MESSAGE_TYPE)
    model = build_model(RunConfig().model, dataset.num_items, dataset.item_features)
    with pytest.raises(LeakError, match="never both"):
        build_reply(request, {"platform": 0}, private=True, model=model, release=np.zeros(6))
