"""A real Flower deployment on one machine: a SuperLink and N SuperNodes with TLS and SuperNode auth.

Unlike the simulation engine, every platform here is its own ``flower-supernode``
process with its own key, its own Flower home and its own state directory, talking
HTTPS through ``crossfed gateway`` (the Fleet API only) to a ``flower-superlink`` on
127.0.0.1 that admits only registered keys. The coordinator's side is driven through the
``flwr`` CLI against the SuperLink itself, exactly as the coordinator would (see
docs/deployment.md). :mod:`crossfed.simulations.loopback` uses this to run the app end to end.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import tomli_w

from crossfed.server.deploy import certs
from crossfed.server.deploy.limits import Limits
from crossfed.server.deploy.processes import ManagedProcess
from crossfed.shared.errors import CrossfedError
from crossfed.shared.runtime.proc import tree_pids

logger = logging.getLogger("crossfed.deploy")

#: The project folder ``flwr run`` builds the app bundle (FAB) from.
APP_DIR = Path(__file__).resolve().parents[2]
CONNECTION = "crossfed"
FLOWER_ENVIRONMENT = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # Without this the SuperLink runs ``uv sync`` on every run and tries to download torch.
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "PYTHONUNBUFFERED": "1",
}


class DeploymentError(CrossfedError, RuntimeError):
    """A Flower process did not come up, refused a command, or a run failed."""


def flower_executable(name: str) -> str | None:
    """The Flower CLI ``name`` beside this interpreter, else on PATH.

    CI calls ``.venv/bin/python`` without activating the venv, so PATH alone would miss it.
    """
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, check, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise DeploymentError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class SuperNodeSpec:
    """What one platform's operator configures: key, node config, state directory."""

    index: int
    private_key: Path
    public_key: Path
    state_dir: Path
    flwr_home: Path
    port: int
    node_id: int | None = None
    process: ManagedProcess | None = None
    starts: int = 0

    @property
    def operator_dir(self) -> Path:
        """The operator's own files beside the Flower home: the vetted list and the launcher folder."""
        return self.flwr_home.parent

    @property
    def vetted_list(self) -> Path:
        return self.operator_dir / "vetted-bundles.txt"

    @property
    def launcher_dir(self) -> Path:
        return self.operator_dir / "bin"


@dataclass
class Deployment:
    """``platforms`` SuperNodes and one SuperLink on 127.0.0.1, all files under ``root``.

    ``state_dir_of(i)`` is platform ``i``'s state directory (the ``state-dir`` node config
    key); ``data_dir`` is given to every platform as its ``data-dir``.
    """

    root: Path
    platforms: int
    data_dir: str
    state_dir_of: Any  # Callable[[int], Path]
    timeout: float = 120.0
    #: Run-config keys every platform's operator pins in node config (privacy settings they chose).
    node_pins: Mapping[str, Any] = field(default_factory=dict)
    superlink_port: int = field(default_factory=free_port)
    #: The platforms' address: ``crossfed gateway`` forwarding the Fleet API only.
    gateway_port: int = field(default_factory=free_port)
    nodes: list[SuperNodeSpec] = field(default_factory=list)
    superlink: ManagedProcess | None = None
    gateway: ManagedProcess | None = None
    #: Called once every platform is registered and before any SuperNode starts: what each operator
    #: sets up on their own machine (the loopback's vetted list and ``flwr-clientapp`` launcher).
    prepare_operators: Callable[[Deployment], None] | None = None
    #: The folder ``flwr run`` builds the app bundle from (a loopback's operators vet a snapshot of it).
    app_dir: Path = APP_DIR
    #: The gateway's bounds on what a platform pushes (``Limits.for_model`` of the run's shared arrays);
    #: ``None`` leaves ``crossfed gateway``'s defaults.
    limits: Limits | None = None
    #: Processes started besides the platforms' SuperNodes (the unregistered probe).
    others: list[ManagedProcess] = field(default_factory=list)

    # -- layout ---------------------------------------------------------------
    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def flwr_home(self) -> Path:
        """The coordinator's Flower home (``FLWR_HOME``): its ``config.toml`` names the SuperLink connection."""
        return self.root / "coordinator" / "flwr-home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def address(self) -> str:
        """The SuperLink itself (Fleet, Control and Runtime API on one port): the coordinator's CLI only."""
        return f"127.0.0.1:{self.superlink_port}"

    @property
    def fleet_address(self) -> str:
        """What the platforms dial: the gateway, which forwards the Fleet API and refuses the Control API."""
        return f"127.0.0.1:{self.gateway_port}"

    def environment(self, flwr_home: Path, first_on_path: Path | None = None) -> dict[str, str]:
        """Inherited environment plus Flower's switches; this interpreter's bin first, since Flower
        spawns ``flower-superexec``, ``flwr-serverapp`` and ``flwr-clientapp`` by name - after
        ``first_on_path`` (a platform's vetted ``flwr-clientapp`` launcher) when given."""
        folders = [str(first_on_path)] if first_on_path is not None else []
        path = os.pathsep.join([*folders, str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, **FLOWER_ENVIRONMENT, "FLWR_HOME": str(flwr_home), "PATH": path}

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Certificates and keys, SuperLink, registration of every platform key, SuperNodes."""
        keys = certs.init(self.certs_dir, self.platforms)
        self._write_connection()
        self.superlink = ManagedProcess(
            "superlink",
            self._superlink_command(),
            self.logs / "superlink.log",
            self.environment(self.flwr_home),
            self.root,
        )
        _wait_for("the SuperLink to listen", self._superlink_listening, self.timeout)
        self.gateway = ManagedProcess(
            "gateway", self._gateway_command(), self.logs / "gateway.log", self.environment(self.flwr_home), self.root
        )
        _wait_for("the gateway to listen", self._gateway_listening, self.timeout)
        for index, pair in enumerate(keys):
            node = SuperNodeSpec(
                index,
                pair.private_key,
                pair.public_key,
                self.state_dir_of(index),
                self.root / "nodes" / f"platform-{index}" / "flwr-home",
                free_port(),
            )
            node.node_id = self.register(pair.public_key)
            self.nodes.append(node)
        if self.prepare_operators is not None:
            self.prepare_operators(self)
        for node in self.nodes:
            self.start_supernode(node.index)
        self.wait_online([node.node_id for node in self.nodes])

    def close(self) -> None:
        """Stop every SuperNode, then the SuperLink (and the ServerApp it runs); no process is left behind."""
        for process in [*(n.process for n in self.nodes if n.process), *self.others]:
            process.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.superlink is not None:
            self.superlink.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def leftovers(self) -> list[int]:
        processes = [n.process for n in self.nodes if n.process] + self.others
        processes += [p for p in (self.gateway, self.superlink) if p is not None]
        return [pid for process in processes for pid in process.leftovers()]

    # -- SuperLink ------------------------------------------------------------
    def _superlink_command(self) -> list[str]:
        executable = flower_executable("flower-superlink")
        if executable is None:
            raise DeploymentError("flower-superlink is not installed (pip install 'flwr')")
        return [
            executable,
            "--ssl-ca-certfile",
            str(self.certs_dir / certs.CA_CERT),
            "--ssl-certfile",
            str(self.certs_dir / certs.SERVER_CERT),
            "--ssl-keyfile",
            str(self.certs_dir / certs.SERVER_KEY),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.superlink_port),
            "--database",
            str(self.root / "coordinator" / "superlink.db"),
        ]

    def _gateway_command(self) -> list[str]:
        executable = flower_executable("crossfed")
        if executable is None:
            raise DeploymentError("the crossfed command is not installed beside this interpreter")
        command = [
            executable,
            "gateway",
            "--listen",
            self.fleet_address,
            "--superlink",
            self.address,
            "--certs",
            str(self.certs_dir),
        ]
        if self.limits is not None:
            command += ["--max-request-bytes", str(self.limits.max_request_bytes)]
            command += ["--max-reply-bytes", str(self.limits.max_reply_bytes)]
        return command

    def _gateway_listening(self) -> bool:
        assert self.gateway is not None
        return _listening(self.gateway, "crossfed gateway", self.gateway_port)

    def _superlink_listening(self) -> bool:
        assert self.superlink is not None
        return _listening(self.superlink, "flower-superlink", self.superlink_port)

    def _write_connection(self, flwr_home: Path | None = None, address: str | None = None) -> None:
        """A ``config.toml`` with one connection verified against the federation's CA: by default the
        coordinator's, to the SuperLink itself."""
        home = flwr_home or self.flwr_home
        home.mkdir(parents=True, exist_ok=True)
        config = {
            "superlink": {
                "default": CONNECTION,
                CONNECTION: {
                    "address": address or self.address,
                    "root-certificates": str(self.certs_dir / certs.CA_CERT),
                },
            }
        }
        (home / "config.toml").write_text(tomli_w.dumps(config))

    def flwr(self, *args: str, timeout: float | None = None, flwr_home: Path | None = None) -> dict[str, Any]:
        """Run a ``flwr`` CLI command with ``--format json`` (as the coordinator unless ``flwr_home`` is
        another party's); its parsed answer."""
        executable = flower_executable("flwr")
        if executable is None:
            raise DeploymentError("the flwr CLI is not installed")
        command = [executable, *args, "--format", "json"]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout or self.timeout,
            env=self.environment(flwr_home or self.flwr_home),
            cwd=self.root,
        )
        try:
            answer = json.loads(result.stdout[result.stdout.index("{") :])
        except ValueError:
            answer = {}
        if result.returncode != 0 or not answer.get("success", False):
            raise DeploymentError(
                f"{' '.join(command[:3])} failed ({result.returncode}): {(result.stdout + result.stderr)[-2000:]}"
            )
        return answer

    def register(self, public_key: Path) -> int:
        """Register a platform's public key (the SuperLink then admits that key only); its node id."""

        def attempt() -> int | None:
            try:
                return int(self.flwr("supernode", "register", str(public_key), CONNECTION)["node-id"])
            except DeploymentError as error:
                logger.info("registration not accepted yet: %s", str(error)[-300:])
                return None

        return _wait_for(f"the SuperLink to register {public_key.name}", attempt, self.timeout, interval=2.0)

    def node_status(self) -> dict[int, str]:
        return {int(n["node-id"]): str(n["status"]) for n in self.flwr("supernode", "ls", CONNECTION)["nodes"]}

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        """Poll ``check`` every second until it is true; :class:`DeploymentError` after ``timeout`` seconds."""
        return _wait_for(what, check, timeout, interval=1.0)

    def wait_online(self, node_ids: list[int | None], online: bool = True) -> None:
        wanted = "online" if online else "offline"
        _wait_for(
            f"SuperNodes {node_ids} to be {wanted}",
            lambda: all(self.node_status().get(int(n or 0)) == wanted for n in node_ids),
            self.timeout,
            interval=2.0,
        )

    # -- SuperNodes -----------------------------------------------------------
    def supernode_command(
        self, node: SuperNodeSpec, private_key: Path | None = None, max_retries: int | None = None
    ) -> list[str]:
        executable = flower_executable("flower-supernode")
        if executable is None:
            raise DeploymentError("flower-supernode is not installed (pip install 'flwr')")
        node_config = {
            "partition-id": node.index,
            "num-partitions": self.platforms,
            "data-dir": self.data_dir,
            "state-dir": str(node.state_dir),
            **self.node_pins,
        }
        command = [
            executable,
            "--superlink",
            self.fleet_address,
            "--root-certificates",
            str(self.certs_dir / certs.CA_CERT),
            "--auth-supernode-private-key",
            str(private_key or node.private_key),
            "--node-config",
            node_config_string(node_config),
            "--port",
            str(node.port),
        ]
        if max_retries is not None:
            command += ["--max-retries", str(max_retries)]
        return command

    def start_supernode(self, index: int) -> ManagedProcess:
        """Start (or restart) platform ``index`` with the same key, node config and state directory."""
        node = self.nodes[index]
        node.flwr_home.mkdir(parents=True, exist_ok=True)
        node.starts += 1
        suffix = "" if node.starts == 1 else f".start{node.starts}"
        node.process = ManagedProcess(
            f"supernode-{index}",
            self.supernode_command(node),
            self.logs / f"supernode-{index}{suffix}.log",
            self.environment(node.flwr_home, node.launcher_dir if node.launcher_dir.is_dir() else None),
            self.root,
        )
        return node.process

    def stop_supernode(self, index: int) -> int | None:
        """SIGTERM: the SuperNode deactivates itself, so its pending messages fail instead of waiting."""
        node = self.nodes[index]
        if node.process is None:
            return None
        code = node.process.stop()
        node.process = None
        return code

    def start_unregistered(self) -> ManagedProcess:
        """Start a SuperNode whose key was never registered (the SuperLink should refuse it; it exits)."""
        stranger = certs.make_platform_keys(self.root / "unregistered", "stranger")
        spec = SuperNodeSpec(
            0,
            stranger.private_key,
            stranger.public_key,
            self.root / "unregistered" / "state",
            self.root / "unregistered" / "flwr-home",
            free_port(),
        )
        spec.flwr_home.mkdir(parents=True, exist_ok=True)
        process = ManagedProcess(
            "unregistered-supernode",
            self.supernode_command(spec, max_retries=1),
            self.logs / "unregistered-supernode.log",
            self.environment(spec.flwr_home),
            self.root,
        )
        self.others.append(process)
        return process

    def try_control_api_as_platform(self) -> dict[str, Any]:
        """What a platform operator holding ``ca.crt`` (and their own SuperNode key) gets from the address
        they were given: each attempt's error, and how many requests the gateway refused meanwhile."""
        operator = self.root / "operator-probe"
        self._write_connection(operator / "flwr-home", self.fleet_address)
        stranger = certs.make_platform_keys(operator, "stranger")
        refused_before = self._gateway_refusals()
        attempts = {
            "register": ("supernode", "register", str(stranger.public_key), CONNECTION),
            "list_runs": ("ls", CONNECTION),
            "submit_run": ("run", str(self.app_dir), CONNECTION),
        }
        answers: dict[str, Any] = {}
        for name, args in attempts.items():
            try:
                answers[name] = {"accepted": True, "answer": self.flwr(*args, flwr_home=operator / "flwr-home")}
            except DeploymentError as error:
                answers[name] = {"accepted": False, "error": str(error)[-500:]}
        answers["gateway_refusals"] = self._gateway_refusals() - refused_before
        return answers

    def _gateway_refusals(self) -> int:
        from crossfed.server.deploy.gateway import REFUSED

        if self.gateway is None:
            return 0
        return sum(1 for line in self.gateway.log_text().splitlines() if f" {REFUSED} " in f" {line} ")

    def try_unregistered(self, timeout: float = 90.0) -> tuple[int | None, str]:
        """Start a SuperNode whose key was never registered and wait; its exit code and log."""
        process = self.start_unregistered()
        code = process.wait(timeout)
        process.stop()
        return code, process.log_text()

    # -- runs -----------------------------------------------------------------
    def submit(self, run_config: Mapping[str, Any]) -> int:
        """``flwr run`` the app with ``run_config`` (written as TOML); returns at once with the run id."""
        path = self.root / "coordinator" / f"run-config-{int(time.time() * 1000)}.toml"
        path.write_text(tomli_w.dumps(dict(run_config)))
        answer = self.flwr(
            "run", str(self.app_dir), CONNECTION, "--run-config", str(path), timeout=max(self.timeout, 300)
        )
        return int(answer["run-id"])

    def run_status(self, run_id: int) -> str:
        runs = self.flwr("ls", CONNECTION, "--run-id", str(run_id))["runs"]
        return str(runs[0]["status"]) if runs else "unknown"

    def stop_run(self, run_id: int) -> None:
        """Stop ``run_id``; a run that finished on its own meanwhile is already where stopping would leave it."""
        try:
            self.flwr("stop", str(run_id), CONNECTION)
        except DeploymentError:
            if not self.run_status(run_id).startswith("finished"):
                raise

    def serverapp_pids(self) -> list[int]:
        """The SuperLink's ``flwr-serverapp`` processes alive now."""
        if self.superlink is None:
            return []
        return [pid for pid in tree_pids(self.superlink.pid) if b"flwr-serverapp" in _cmdline(pid)]

    def wait_serverapp_gone(self) -> None:
        """After ``flwr stop``: the old ServerApp must not write its checkpoint beside a resumed one."""
        _wait_for("the stopped ServerApp to exit", lambda: not self.serverapp_pids(), self.timeout, interval=1.0)

    def run_log(self, run_id: int) -> str:
        """The ServerApp's log as the SuperLink kept it (``flwr log --show``)."""
        executable = flower_executable("flwr")
        try:
            result = subprocess.run(
                [str(executable), "log", str(run_id), CONNECTION, "--show"],
                capture_output=True,
                text=True,
                check=False,
                timeout=self.timeout,
                env=self.environment(self.flwr_home),
                cwd=self.root,
            )
        except (OSError, subprocess.TimeoutExpired) as error:  # never hide the error that got us here
            return f"flwr log {run_id} failed: {error}\n"
        return result.stdout + result.stderr

    def remember_processes(self) -> None:
        """Note every process alive in each tree (Flower detaches its app processes)."""
        others = [p for p in (self.gateway, self.superlink) if p is not None]
        for process in [n.process for n in self.nodes if n.process] + others:
            process.remember()


def node_config_string(values: Mapping[str, Any]) -> str:
    """``--node-config`` syntax: space-separated TOML ``key=value`` pairs (strings quoted)."""
    return " ".join(f"{key}={json.dumps(value)}" for key, value in values.items())


def _listening(process: ManagedProcess, name: str, port: int) -> bool:
    """Whether ``process`` accepts connections on ``port``; its exit is an error that carries its log,
    so a start-up failure reads as the process's own message rather than a timeout."""
    if not process.running():
        raise DeploymentError(f"{name} exited with code {process.process.returncode}:\n{process.log_text()[-3000:]}")
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0
