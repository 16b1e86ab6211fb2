import hashlib
import io
import os
import pickle
import shlex

import numpy as np
import pytest
import torch

import crossfed.shared.storage.checked
from crossfed.client.outbox import LeakError, _platform_level
from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import is_shared, load_shared_arrays, local_parameters, shared_arrays
from crossfed.shared.protocol.keys import PLAIN_METRICS, PRIVATE_METRICS
from crossfed.shared.storage.checked import CorruptStateError, UnsafeStateError, load_checked, save_checked
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.platform_state import PlatformState, PlatformUsersError
from crossfed.shared.trainer import PlatformTrainer

CONFIG = RunConfig().replace(embedding_dim=4, mlp_layers="8,4", batch_size=32)


def _trainer(dataset):
    return PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), CONFIG)


def test_user_tower_is_local_and_everything_else_shared(dataset):
    model = _trainer(dataset).model
    names = [name for name, _ in model.named_parameters()]
    local = [n for n in names if not is_shared(n)]
    assert local and all(n.startswith("user_tower.") for n in local)
    shared = shared_arrays(model)
    assert not any("user" in name for name in shared)
    assert {n.split(".")[1] for n in shared} == {"item_tower", "interaction", "prediction", "item_bias"}
    assert set(shared) | set(local_parameters(model)) == set(names)


def test_shared_arrays_do_not_depend_on_the_number_of_users(dataset):
    """The coordinator builds its model with one dummy user; names and shapes must agree."""
    platform_model = _trainer(dataset).model
    server_model = build_model(CONFIG.model, dataset.num_items, dataset.item_features)
    platform_shapes = {k: v.shape for k, v in shared_arrays(platform_model).items()}
    assert platform_shapes == {k: v.shape for k, v in shared_arrays(server_model).items()}
    load_shared_arrays(platform_model, shared_arrays(server_model))


def test_loading_mismatched_arrays_fails_loudly(dataset):
    model = _trainer(dataset).model
    arrays = shared_arrays(model)
    name = next(iter(arrays))
    with pytest.raises(ValueError, match="shape"):
        load_shared_arrays(model, {**arrays, name: np.zeros((1, 1), np.float32)})
    with pytest.raises(ValueError, match="missing"):
        load_shared_arrays(model, {k: v for k, v in arrays.items() if k != name})


def test_outbox_refuses_anything_but_allowed_scalars():
    metrics = {"num-examples": 3, "train-loss": 0.5}
    assert _platform_level(metrics, PLAIN_METRICS) == metrics
    with pytest.raises(LeakError, match="train-loss"):
        _platform_level(metrics, PRIVATE_METRICS)  # under DP the loss is data-dependent: it stays
    with pytest.raises(LeakError):
        _platform_level({"sampled-hr": [1.0, 0.0]}, PLAIN_METRICS)
    with pytest.raises(LeakError):
        _platform_level({"user-42-loss": 0.3}, PLAIN_METRICS)
    with pytest.raises(LeakError):
        _platform_level({"train-loss": float("nan")}, PLAIN_METRICS)


def test_platform_state_round_trip_restores_user_tower_and_optimizer(dataset, tmp_path):
    trainer = _trainer(dataset)
    trainer.train(epochs=1, salt=1)
    trainer.snapshot(last_round=1).save(tmp_path)
    fresh = _trainer(dataset)
    state = PlatformState.load(tmp_path)
    assert state is not None and state.last_round == 1
    fresh.restore(state)
    for (name, a), b in zip(local_parameters(trainer.model).items(), local_parameters(fresh.model).values()):
        assert torch.equal(a, b), name
    assert fresh.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


def test_corrupt_or_truncated_state_is_rejected_and_never_half_loaded(tmp_path):
    path = tmp_path / "state.pt"
    save_checked(path, {"a": torch.arange(100)})
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CorruptStateError, match="checksum"):
        load_checked(path)
    path.write_bytes(data[:-20] + bytes(20))
    with pytest.raises(CorruptStateError):
        load_checked(path)
    path.write_bytes(b"junk")
    with pytest.raises(CorruptStateError, match="header"):
        load_checked(path)


def test_a_restarted_platform_with_the_same_number_of_other_users_is_refused(dataset, tmp_path):
    trainer = _trainer(dataset)
    trainer.snapshot(last_round=1).save(tmp_path)
    users = [str(u) for u in trainer.data.user_ids]
    assert PlatformState.load_for_users(tmp_path, users).user_ids == users
    renamed = [*users[:5], "someone else", *users[6:]]
    with pytest.raises(
        PlatformUsersError,
        match=rf"{tmp_path / PlatformState.FILE_NAME}: .* \(40 users in the state, "
        rf"40 in the data\): row 5 is user '{users[5]}' in the state but 'someone else' in the data",
    ):
        PlatformState.load_for_users(tmp_path, renamed)
    with pytest.raises(PlatformUsersError, match=f"user '{users[-1]}' \\(row 39 of the state\\) is missing"):
        PlatformState.load_for_users(tmp_path, users[:-1])


def test_state_files_keep_numpy_arrays_tensors_and_plain_values_exactly(tmp_path):
    value = {
        "arrays": {"f": np.linspace(0, 1, 7, dtype=np.float32), "i": np.arange(3), "b": np.array([True])},
        "tensor": torch.arange(4.0),
        "plain": [1, 2.5, "x", None, (0.1, 0.2, 3)],
        "nan": float("nan"),
        "numpy scalar": np.float64(0.5),
        3: {"nested": np.zeros((2, 0), np.int16)},
    }
    save_checked(tmp_path / "state.pt", value)
    loaded = load_checked(tmp_path / "state.pt")
    for name, array in value["arrays"].items():
        assert loaded["arrays"][name].dtype == array.dtype and np.array_equal(loaded["arrays"][name], array)
    assert torch.equal(loaded["tensor"], value["tensor"])
    assert loaded["plain"] == value["plain"] and isinstance(loaded["plain"][4], tuple)
    assert np.isnan(loaded["nan"]) and loaded["numpy scalar"] == 0.5 and loaded[3]["nested"].shape == (2, 0)
    with pytest.raises(TypeError, match="dtype <U1"):
        save_checked(tmp_path / "other.pt", {"ids": np.array(["a", "b"])})


class RunsAShellCommandWhenUnpickled:
    """What a hostile coordinator would put in a file it sends: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_a_crafted_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    """A coordinator running a modified crossfed writes a valid header and checksum around a malicious pickle."""
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"record": FinalModel.FILE_NAME, "fields": {"arrays": RunsAShellCommandWhenUnpickled(marker)}}, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)  # the payload is live: a pickle loader runs it
    assert marker.exists()
    marker.unlink()

    monkeypatch.setattr(crossfed.shared.storage.checked, "_stored", lambda value: value)  # store the object as is
    save_checked(
        tmp_path / FinalModel.FILE_NAME,
        {"record": FinalModel.FILE_NAME, "fields": {"arrays": RunsAShellCommandWhenUnpickled(marker), "config": {}}},
    )
    monkeypatch.undo()
    from crossfed.client.serving.service import load_global_parameters

    with pytest.raises(UnsafeStateError, match=f"{tmp_path / FinalModel.FILE_NAME}: holds objects other than"):
        load_global_parameters(tmp_path)  # what a platform does with the coordinator's run folder
    with pytest.raises(CorruptStateError):
        FinalModel.load(tmp_path)
    assert not marker.exists()


def test_a_state_file_in_the_pickle_format_is_refused_with_a_clear_message(tmp_path):
    payload = pickle.dumps({"user_tower": {}, "last_round": 1})
    path = tmp_path / PlatformState.FILE_NAME
    path.write_bytes(b"CROSSFED1\n" + hashlib.sha256(payload).digest() + payload)
    with pytest.raises(CorruptStateError, match="written by an earlier crossfed as a pickle"):
        PlatformState.load(tmp_path)


def test_a_file_of_another_kind_is_refused(tmp_path):
    FinalModel(arrays={"w": np.ones(2)}, config={}).save(tmp_path)
    (tmp_path / FinalModel.FILE_NAME).rename(tmp_path / PlatformState.FILE_NAME)
    expected = f"holds a {FinalModel.FILE_NAME!r} record, expected {PlatformState.FILE_NAME}"
    with pytest.raises(CorruptStateError, match=expected):
        PlatformState.load(tmp_path)


def test_a_finished_run_folder_serves_its_selected_model_and_a_resumed_one_its_checkpoint(tmp_path):
    from crossfed.client.serving.service import load_global_parameters

    Checkpoint(arrays={"w": np.full(2, 9.0)}, last_round=9, config={}).save(tmp_path)
    FinalModel(arrays={"w": np.full(2, 6.0)}, config={}, selected_round=6).save(tmp_path)
    finished = load_global_parameters(tmp_path)
    assert (finished.selected_round, finished.last_round) == (6, None)
    np.testing.assert_array_equal(finished.arrays["w"], np.full(2, 6.0))

    later = (tmp_path / FinalModel.FILE_NAME).stat().st_mtime_ns + 10**9
    os.utime(tmp_path / Checkpoint.FILE_NAME, ns=(later, later))  # the run resumed into the same folder
    resumed = load_global_parameters(tmp_path)
    assert (resumed.selected_round, resumed.last_round) == (None, 9)


def test_failed_write_keeps_the_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    save_checked(path, {"version": 1})

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("crossfed.shared.storage.checked.os.replace", disk_full)
    with pytest.raises(OSError):
        save_checked(path, {"version": 2})
    assert load_checked(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_local_training_learns_on_synthetic_data(dataset):
    trainer = _trainer(dataset)
    first = trainer.train(epochs=1, salt=1).loss
    later = trainer.train(epochs=20, salt=2).loss
    assert later < first


def test_stacked_private_copy_serves_without_touching_the_global_model(dataset):
    config = CONFIG.replace(finetune_epochs=2, finetune_embedding_dim=6, finetune_mlp_layers="8", eval_negatives=10)
    trainer = PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), config)
    before = shared_arrays(trainer.model)
    served, current = trainer.test()
    after = shared_arrays(trainer.model)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert len(served.users) == len(current.users) > 0
    assert served.summary() != current.summary() or served.ndcgs["full"].tolist() != current.ndcgs["full"].tolist()


def test_an_operator_pins_privacy_settings_in_node_config_over_the_coordinators_run_config():
    from flwr.app import Context, RecordDict

    from crossfed.client.task import platform_config

    submitted = {"privacy-unit": "none", "epsilon": 8.0, "secagg": False}
    node = {
        "partition-id": 1,
        "num-partitions": 3,
        "privacy-unit": "user",
        "epsilon": 4.0,
        "secagg": True,
        "state-dir": "/srv/state",
    }
    context = Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config=submitted)
    config = platform_config(context)
    assert (
        config.privacy.privacy_unit,
        config.privacy.epsilon,
        config.secure_aggregation.secagg,
        config.data.num_platforms,
    ) == ("user", 4.0, True, 3)


def test_scoring_the_whole_catalog_equals_scoring_it_pair_by_pair(dataset):
    model = build_model(
        RunConfig().model, dataset.num_items, dataset.item_features, dataset.num_users, dataset.user_features, seed=3
    ).eval()
    users = torch.arange(5)
    pairs = model(users, torch.arange(dataset.num_items).expand(len(users), -1))
    torch.testing.assert_close(model.score(users, None), pairs)
