"""Run control in a deployment: what the coordinator's tooling does when Flower's answer races it."""

from pathlib import Path

import pytest

from crossfed.server.deploy.deployment import Deployment, DeploymentError

ALREADY_FINISHED = "[code: 18] Run is already finished."


def _deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str) -> Deployment:
    deployment = Deployment(root=tmp_path, platforms=1, data_dir="", state_dir_of=lambda i: tmp_path / str(i))

    def flwr(*args):
        if args[0] == "stop":
            raise DeploymentError(f"flwr stop {args[1]} failed (0): {ALREADY_FINISHED}")
        if args[0] == "ls":
            return {"runs": [{"status": status}]}
        raise AssertionError(args)

    monkeypatch.setattr(deployment, "flwr", flwr)
    return deployment


def test_stopping_a_run_that_finished_meanwhile_is_not_an_error(tmp_path, monkeypatch):
    _deployment(tmp_path, monkeypatch, "finished:failed").stop_run(7)


def test_a_refused_stop_of_a_running_run_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(DeploymentError, match="flwr stop 7"):
        _deployment(tmp_path, monkeypatch, "running").stop_run(7)
