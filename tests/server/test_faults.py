"""Faults injected on purpose: a SuperNode dying mid-round, the ServerApp dying, disk full, corrupt files."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Error, Message, MessageType, MetricRecord, RecordDict

import crossfed.shared.storage.checked
from crossfed.server.federation import FederationError, initial_arrays, run_federation
from crossfed.server.strategy import make_strategy, restore_strategy_state, strategy_state
from crossfed.shared.config import RunConfig
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.privacy.ledger import PrivacyLedger
from crossfed.shared.protocol.keys import PREPARE_MESSAGE_TYPE
from crossfed.shared.protocol.records import from_array_record, to_array_record
from crossfed.shared.storage.checked import CorruptStateError, StateWriteError
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.simulations.federated import run_federated

PLATFORMS = 3


def fault_mod(platform: int, server_round: int, kind: str, record_dir: str):
    """Platform ``platform`` fails (``die``) or sends NaN (``nan``) in round ``server_round``.

    Every platform also saves the global parameters it is sent for validation after that
    round - the aggregate of the round - so runs can be compared.
    """

    def mod(message: Message, context, call_next) -> Message:
        me = int(context.node_config["partition-id"])
        this_round = int(message.content["config"]["server-round"])
        is_train = message.metadata.message_type == MessageType.TRAIN
        if is_train and kind == "die" and (me, this_round) == (platform, server_round):
            raise RuntimeError(f"injected SuperNode failure: platform {me}, round {this_round}")
        if (
            not is_train
            and me == 0
            and this_round == server_round
            and message.content["config"]["stage"] == "validation"
        ):
            np.savez(Path(record_dir) / "aggregate.npz", **from_array_record(message.content["arrays"]))
        reply = call_next(message, context)
        if is_train and kind == "nan" and (me, this_round) == (platform, server_round):
            poisoned = {
                name: np.full_like(value, np.nan) for name, value in from_array_record(reply.content["arrays"]).items()
            }
            reply.content["arrays"] = to_array_record(poisoned)
        return reply

    return mod


def train_rounds(run_dir: str, platform: int) -> list[int]:
    lines = (platform_dir(run_dir, platform) / "metrics.jsonl").read_text().splitlines()
    return [entry["round"] for entry in map(json.loads, lines) if entry["stage"] == "train"]


def faulty_run(tmp_path_factory, movielens_dir, kind: str):
    run_dir, records = tmp_path_factory.mktemp(f"{kind}-run"), tmp_path_factory.mktemp(f"{kind}-records")
    config = RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(run_dir),
        num_platforms=PLATFORMS,
        max_users=150,
        num_server_rounds=3,
        partition="iid",
        seed=7,
        min_platforms=2,
        embedding_dim=8,
        mlp_layers="16",
    )
    summary = run_federated(config, client_mods=[fault_mod(1, 2, kind, str(records))])
    return config, summary, dict(np.load(records / "aggregate.npz"))


@pytest.fixture(scope="module")
def dead_node_run(tmp_path_factory, movielens_dir):
    return faulty_run(tmp_path_factory, movielens_dir, "die")


@pytest.fixture(scope="module")
def nan_node_run(tmp_path_factory, movielens_dir):
    return faulty_run(tmp_path_factory, movielens_dir, "nan")


@pytest.mark.slow
@pytest.mark.ray
def test_a_supernode_dying_mid_round_leaves_the_round_to_the_others_and_rejoins(dead_node_run):
    config, summary, _ = dead_node_run
    assert [entry["round"] for entry in summary["history"]] == [1, 2, 3] and summary["rounds_completed"] == 3
    assert train_rounds(config.experiment.run_dir, 1) == [1, 3]  # died in round 2, trained again in round 3
    assert train_rounds(config.experiment.run_dir, 0) == train_rounds(config.experiment.run_dir, 2) == [1, 2, 3]
    state = PlatformState.load(platform_dir(config.experiment.run_dir, 1))
    assert state is not None and state.last_round == 3  # its state survived the crash and moved on
    assert len(summary["per_platform"]) == PLATFORMS  # and it is evaluated like everyone else


@pytest.mark.slow
@pytest.mark.ray
def test_a_platform_sending_nan_is_rejected_and_the_aggregate_is_the_honest_ones(dead_node_run, nan_node_run):
    """Stated tolerance: the defended round-2 aggregate equals the honest-only one (the dead run's) to 1e-5."""
    _, _, honest_only = dead_node_run
    config, summary, defended = nan_node_run
    assert [entry["round"] for entry in summary["history"]] == [1, 2, 3]
    assert set(defended) == set(honest_only)
    for name, value in defended.items():
        assert np.all(np.isfinite(value))
        np.testing.assert_allclose(value, honest_only[name], atol=1e-5, err_msg=name)
    final = FinalModel.load(config.experiment.run_dir).arrays
    assert all(np.all(np.isfinite(value)) for value in final.values())


class DyingGrid:
    """A grid on which every platform gets ready, then all but the first fail their training request."""

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3]

    def send_and_receive(self, messages, *args, **kwargs) -> list[Message]:
        replies = []
        for index, message in enumerate(messages):
            if message.metadata.message_type == PREPARE_MESSAGE_TYPE:
                replies.append(Message(RecordDict({"metrics": MetricRecord({"platform": index})}), reply_to=message))
            elif index == 0:
                content = RecordDict(
                    {"arrays": message.content["arrays"], "metrics": MetricRecord({"platform": 0, "num-examples": 10})}
                )
                replies.append(Message(content=content, reply_to=message))
            else:
                replies.append(Message(Error(code=0, reason="injected: node died"), reply_to=message))
        return replies


def test_fewer_platforms_than_min_platforms_stops_the_run_clearly(movielens_dir, tmp_path, message_identity):
    config = RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(tmp_path),
        num_platforms=3,
        min_platforms=2,
        embedding_dim=4,
        mlp_layers="8",
    )
    with pytest.raises(FederationError, match=r"only 1 platform.*fewer than min-platforms = 2"):
        run_federation(DyingGrid(), config)
    assert not (tmp_path / Checkpoint.FILE_NAME).exists()


class UnreadyGrid(DyingGrid):
    """A grid on which only the first platform can load its data."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def send_and_receive(self, messages, *args, **kwargs) -> list[Message]:
        self.requests += [m.metadata.message_type for m in messages]
        return [
            Message(RecordDict({"metrics": MetricRecord({"platform": 0})}), reply_to=message)
            if index == 0
            else Message(Error(code=0, reason="injected: bad interactions file"), reply_to=message)
            for index, message in enumerate(messages)
        ]


def test_platforms_that_cannot_get_ready_stop_the_run_before_round_one(movielens_dir, tmp_path, message_identity):
    config = RunConfig().replace(
        data_dir=str(movielens_dir),
        run_dir=str(tmp_path),
        num_platforms=3,
        min_platforms=2,
        embedding_dim=4,
        mlp_layers="8",
    )
    grid = UnreadyGrid()
    with pytest.raises(FederationError, match=r"only 1 platform\(s\) got ready \(nodes \[2, 3\] failed, \[\] did not"):
        run_federation(grid, config)
    assert grid.requests == [PREPARE_MESSAGE_TYPE] * 3  # no training request was sent
    assert not (tmp_path / Checkpoint.FILE_NAME).exists()


def private_settings(movielens_dir, run_dir) -> dict:
    return {
        "data_dir": str(movielens_dir),
        "run_dir": str(run_dir),
        "num_platforms": PLATFORMS,
        "max_users": 240,
        "num_server_rounds": 3,
        "partition": "iid",
        "seed": 4,
        "privacy_unit": "user",
        "user_dp_mechanism": "dp-sgd",
        "noise_multiplier": 1.0,
        "epsilon": 100.0,
        "delta": 1e-4,
        "item_id_embedding": False,
        "embedding_dim": 8,
        "mlp_layers": "16",
        "user_batch": 40,
    }


def final_epsilons(run_dir) -> dict[int, float]:
    return {
        p: PrivacyLedger.from_state(PlatformState.load(platform_dir(run_dir, p)).ledger).epsilon()
        for p in range(PLATFORMS)
    }


@pytest.mark.slow
@pytest.mark.ray
def test_a_serverapp_dying_on_a_full_disk_resumes_without_losing_or_double_charging(
    movielens_dir, tmp_path, monkeypatch
):
    """The ServerApp dies after the platforms trained round 2 but before its checkpoint (disk full).

    The restart resumes from round 1's checkpoint and asks for round 2 again; the platforms
    answer with the reply they already sent, so every round, the history's ε and each
    platform's ledger end exactly as in an uninterrupted run.
    """
    uninterrupted = run_federated(RunConfig().replace(**private_settings(movielens_dir, tmp_path / "whole")))

    run_dir = tmp_path / "interrupted"
    config = RunConfig().replace(**private_settings(movielens_dir, run_dir))
    real_replace, writes = os.replace, []

    def disk_full_on_second_checkpoint(source, destination):
        if str(destination).endswith(Checkpoint.FILE_NAME):
            writes.append(destination)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, destination)

    monkeypatch.setattr(crossfed.shared.storage.checked.os, "replace", disk_full_on_second_checkpoint)
    # The ServerApp died: Flower re-raises it wrapped by its simulation engine, so no narrower type.
    with pytest.raises(Exception):  # noqa: B017
        run_federated(config)
    monkeypatch.setattr(crossfed.shared.storage.checked.os, "replace", real_replace)
    assert not (run_dir / "summary.json").exists()
    assert Checkpoint.load(run_dir).last_round == 1  # the failed write left round 1's checkpoint intact
    assert not list(run_dir.glob(".*.tmp"))
    assert all(train_rounds(str(run_dir), p) == [1, 2] for p in range(PLATFORMS))  # round 2 was trained

    resumed = run_federated(config.replace(resume=True))
    assert [entry["round"] for entry in resumed["history"]] == [1, 2, 3] and resumed["rounds_completed"] == 3
    assert [entry["epsilon"] for entry in resumed["history"]] == [
        entry["epsilon"] for entry in uninterrupted["history"]
    ]
    assert final_epsilons(run_dir) == final_epsilons(tmp_path / "whole")
    assert all(train_rounds(str(run_dir), p) == [1, 2, 3] for p in range(PLATFORMS))  # round 2 not trained twice


def test_a_failed_state_write_raises_clearly_and_keeps_the_previous_state(tmp_path, monkeypatch):
    Checkpoint(arrays={"w": np.ones(3, np.float32)}, last_round=1, config={"seed": 0}).save(tmp_path)
    PlatformState(user_tower={"u": np.zeros(2)}, user_ids=["a", "b"], last_round=1).save(tmp_path)

    def disk_full(source, destination):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(crossfed.shared.storage.checked.os, "replace", disk_full)
    for record in (
        Checkpoint(arrays={"w": np.zeros(3, np.float32)}, last_round=2, config={"seed": 0}),
        PlatformState(user_tower={"u": np.ones(2)}, user_ids=["a", "b"], last_round=2),
    ):
        with pytest.raises(StateWriteError, match=rf"cannot write {tmp_path}/.*No space left on device.*intact"):
            record.save(tmp_path)
    monkeypatch.undo()
    assert Checkpoint.load(tmp_path).last_round == 1 and PlatformState.load(tmp_path).last_round == 1
    np.testing.assert_array_equal(Checkpoint.load(tmp_path).arrays["w"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Checkpoint.FILE_NAME, PlatformState.FILE_NAME])


def test_a_state_directory_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the run folder should be")
    with pytest.raises(StateWriteError, match=f"cannot write {blocker}/{Checkpoint.FILE_NAME}"):
        Checkpoint(arrays={}, last_round=1, config={}).save(blocker)


@pytest.mark.parametrize("optimizer", ["fedavgm", "fedadam"])
def test_the_server_optimizer_state_survives_a_checkpoint(tmp_path, optimizer):
    """Flower keeps FedAvgM's weights as an ArrayRecord, FedAdam's as arrays: both come back as Flower reads them."""
    config = RunConfig().replace(server_optimizer=optimizer, server_learning_rate=0.5, server_momentum=0.9)
    weights = {"w": np.arange(4, dtype=np.float32), "b": np.ones((2, 2), np.float64)}
    strategy = make_strategy(config, PLATFORMS)
    if optimizer == "fedavgm":
        strategy.current_arrays, strategy.momentum_vector = to_array_record(weights), [np.full(4, 0.25), np.eye(2)]
    else:
        strategy.current_arrays, strategy.m_t, strategy.v_t = weights, {"w": np.full(4, 0.5)}, {"w": np.full(4, 2.0)}
    Checkpoint(arrays=weights, last_round=1, config={}, strategy_state=strategy_state(strategy)).save(tmp_path)
    resumed = make_strategy(config, PLATFORMS)
    restore_strategy_state(resumed, Checkpoint.load(tmp_path).strategy_state)
    if optimizer == "fedavgm":
        restored = resumed.current_arrays.to_numpy_ndarrays()
        assert [a.tolist() for a in restored] == [a.tolist() for a in weights.values()]
        assert [a.tolist() for a in resumed.momentum_vector] == [[0.25] * 4, np.eye(2).tolist()]
    else:
        assert {k: v.tolist() for k, v in resumed.current_arrays.items()} == {k: v.tolist() for k, v in weights.items()}
        assert (resumed.m_t["w"].tolist(), resumed.v_t["w"].tolist()) == ([0.5] * 4, [2.0] * 4)


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "empty", "foreign file"])
@pytest.mark.parametrize("record", [Checkpoint, PlatformState])
def test_a_damaged_state_file_is_rejected_by_its_checksum(tmp_path, damage, record):
    if record is Checkpoint:
        record(arrays={"w": np.arange(50, dtype=np.float32)}, last_round=3, config={"seed": 0}).save(tmp_path)
    else:
        record(user_tower={"u": np.arange(50.0)}, user_ids=["a"], last_round=3).save(tmp_path)
    path = tmp_path / record.FILE_NAME
    data = path.read_bytes()
    damaged = {
        "truncate": data[: len(data) // 2],
        "flip a byte": data[:-20] + bytes([data[-20] ^ 1]) + data[-19:],
        "empty": b"",
        "foreign file": b"PK\x03\x04" + data[4:],
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CorruptStateError, match=str(path)):
        record.load(tmp_path)


def test_resuming_from_a_corrupt_checkpoint_stops_before_any_round(movielens_dir, tmp_path):
    config = RunConfig().replace(
        data_dir=str(movielens_dir), run_dir=str(tmp_path), resume=True, embedding_dim=4, mlp_layers="8"
    )
    Checkpoint(arrays=initial_arrays(config), last_round=2, config=config.to_flat()).save(tmp_path)
    path = tmp_path / Checkpoint.FILE_NAME
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptStateError, match="checksum mismatch"):
        run_federation(None, config)  # no grid needed: it must fail before talking to any platform
