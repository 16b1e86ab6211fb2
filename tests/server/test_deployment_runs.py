"""Run control in a deployment: what the coordinator's tooling does when Flower's answer races it."""

import os
import socket
import sys
from pathlib import Path

import pytest

from crossfed.server.deploy.deployment import Deployment, DeploymentError, _listening, free_port
from crossfed.server.deploy.processes import ManagedProcess

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


def test_a_process_that_dies_while_starting_reports_its_log_not_a_timeout(tmp_path):
    crashed = ManagedProcess(
        "superlink",
        [sys.executable, "-c", "print('address already in use'); raise SystemExit(3)"],
        tmp_path / "superlink.log",
        os.environ,
        tmp_path,
    )
    crashed.wait(30)
    with pytest.raises(DeploymentError, match=r"(?s)exited with code 3.*address already in use"):
        _listening(crashed, "flower-superlink", free_port())


def test_a_running_process_listens_once_its_port_accepts(tmp_path):
    waiting = ManagedProcess(
        "gateway", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "g.log", os.environ, tmp_path
    )
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            port = server.getsockname()[1]
            assert not _listening(waiting, "crossfed gateway", port)
            server.listen()
            assert _listening(waiting, "crossfed gateway", port)
    finally:
        waiting.stop(grace=1.0)
