"""A simulation joins a Ray cluster that is already running (the multi-node path in the README).

Starts a local Ray head with ``ray start --head --block`` on a free port in its own temp
dir, runs a 2-platform, 1-round federated simulation with ``RAY_ADDRESS`` pointing at it,
and stops that head by signalling the process this test started (never ``ray stop``,
which would stop every Ray instance on the machine, other people's included).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from crossfed.shared.runtime.proc import tree_pids

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(address: str, head: subprocess.Popen, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with code {head.returncode}")
        if subprocess.run([str(RAY), "status", f"--address={address}"], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise TimeoutError(f"Ray head at {address} did not come up within {timeout:.0f}s")


def _is_ray_process(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ray" in command


@pytest.mark.skipif(not RAY.exists() and shutil.which("ray") is None, reason="the ray CLI is not installed")
def test_simulation_runs_against_a_running_ray_head(movielens_dir: Path, tmp_path: Path, crossfed_command: str) -> None:
    ray = str(RAY if RAY.exists() else shutil.which("ray"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Ray's socket paths must stay short (< 108 bytes), so not under pytest's long tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {
        **os.environ,
        "RAY_DISABLE_USAGE_STATS": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_until_up(address, head)
        out = tmp_path / "run"
        result = subprocess.run(
            [
                crossfed_command,
                "run",
                "--mode",
                "federated",
                "--platforms",
                "2",
                "--rounds",
                "1",
                "--max-users",
                "40",
                "--partition",
                "iid",
                "--embedding-dim",
                "8",
                "--mlp-layers",
                "16,8",
                "--data-dir",
                str(movielens_dir),
                "--out",
                str(out),
                "--quiet",
            ],
            env={**env, "RAY_ADDRESS": address},
            capture_output=True,
            text=True,
            timeout=240,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["rounds_completed"] == 1
        assert [entry["platform"] for entry in summary["per_platform"]] == [0, 1]
        assert 0.0 <= summary["metrics"]["sampled"]["hr@10"] <= 1.0
        # The run only disconnected: the cluster it joined is still there.
        assert head.poll() is None
        assert subprocess.run([ray, "status", f"--address={address}"], capture_output=True).returncode == 0
    finally:
        started = tree_pids(head.pid)
        head.send_signal(signal.SIGTERM)  # ``ray start --block`` stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
        for pid in started[1:]:
            if _is_ray_process(pid):  # anything the head left behind, by the pid we saw it start
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
