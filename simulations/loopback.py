"""The whole deployment on 127.0.0.1: SuperLink + N SuperNodes, TLS, SuperNode auth, one run to the end.

:func:`run_loopback` (the command ``crossfed loopback``) makes the CA, server certificate and
platform keys (:mod:`crossfed.server.deploy.certs`), starts the SuperLink with
``--enable-supernode-auth`` on 127.0.0.1 and ``crossfed gateway`` (the platforms' address: Fleet
API only), registers each platform's key with ``flwr supernode register``, has every operator
vet the app bundle built from this tree and starts one ``flower-supernode`` per platform behind
the vetted ``flwr-clientapp`` launcher (node config: ``partition-id``, ``num-partitions``,
``data-dir``, ``state-dir``), submits the app with ``flwr run`` and waits for it.
``check_foreign_bundle`` then submits a bundle no operator vetted and ``check_control_api``
tries the Control API with a platform operator's credentials; both are recorded.
``kill_after_round = R`` stops one SuperNode once round R is checkpointed and starts it again
with the same key and state directory - the restart a platform operator would do.
The results contract's ``summary.json`` lands in the run folder (``out``) with a ``deployment``
block (per-round wall time, restarts). Every process it started is stopped before it returns,
whatever happens.

Why a loopback at all: the simulation engine runs every platform in one Ray cluster and
never exercises TLS, authentication, separate processes or restarts. This does, on one
machine, with the same commands the README's deployment guide gives operators.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfed.server.deploy.deployment import Deployment, DeploymentError
from crossfed.server.deploy.limits import Limits
from crossfed.shared.config import RunConfig
from crossfed.shared.config.trust import PRIVACY_KEYS
from crossfed.shared.data.movielens import resolve_data_dir
from crossfed.shared.evaluation.results import SUMMARY_FILE, platform_dir, read_summary, write_summary
from crossfed.shared.storage.checkpoint import Checkpoint
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.simulations.vetted_bundles import try_foreign_bundle, vet_app

logger = logging.getLogger("crossfed.deploy")

#: How often the run's status is asked of the SuperLink before ``summary.json`` appears: each
#: ``flwr ls`` starts a Python process, CPU the platforms would rather have.
STATUS_INTERVAL = 20.0


@dataclass(frozen=True)
class LoopbackSettings:
    out: Path
    platforms: int = 3
    rounds: int = 3
    secagg: bool = False
    privacy_unit: str = "none"
    #: The loopback exercises rounds (a platform stopped after one, the coordinator resumed): DP-SGD's.
    user_dp_mechanism: str = "dp-sgd"
    max_users: int = 150
    data_dir: str = ""
    #: Stop one SuperNode once this round is checkpointed, then start it again (0 = never).
    kill_after_round: int = 0
    #: Which platform to stop; ``None`` = the last one.
    kill_platform: int | None = None
    #: Seconds between the stopped SuperNode going offline and its restart: the ServerApp polls
    #: every 3 s and must see the node offline, so a message the old process took fails instead
    #: of waiting for a reply that will never come.
    restart_delay: float = 10.0
    #: Stop the ServerApp (``flwr stop``) once this round is checkpointed and submit the run again
    #: with ``resume = true``: the coordinator's restart (0 = never).
    resume_after_round: int = 0
    #: Also start a SuperNode with an unregistered key and record that the SuperLink refused it.
    check_unregistered: bool = False
    #: After the run, submit a bundle no operator vetted and record that every platform refused it.
    check_foreign_bundle: bool = False
    #: After the run, try the Control API as a platform operator would (``ca.crt``, the platforms'
    #: address) and record what the gateway answered.
    check_control_api: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 1800.0

    def run_config(self, data_dir: str) -> dict[str, Any]:
        """The run config ``flwr run`` submits; validated here so a typo fails before anything starts."""
        values = {
            "num-platforms": self.platforms,
            "num-server-rounds": self.rounds,
            "max-users": self.max_users,
            "secagg": self.secagg,
            "privacy-unit": self.privacy_unit,
            "user-dp-mechanism": self.user_dp_mechanism,
            "run-dir": str(self.out.resolve()),
            "data-dir": data_dir,
            **self.overrides,
        }
        RunConfig.from_mapping(values)
        return values


def operator_pins(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The privacy settings each platform's operator pins: a platform takes them from no coordinator,
    so the loopback, playing every operator, pins the ones its run config sets."""
    return {key: value for key, value in run_config.items() if key in PRIVACY_KEYS or key == "noise-mode"}


def gateway_limits(run_config: Mapping[str, Any]) -> Limits:
    """The gateway's bounds for this run: from the bytes of the shared arrays the coordinator starts it with,
    or, for a ``gram-subspace`` run, of the one Gram release over the run's catalog."""
    from crossfed.server.federation import initial_arrays  # torch: only when a deployment starts
    from crossfed.server.gram_release import catalog_size

    config = RunConfig.from_mapping(run_config)
    if config.privacy.mechanism == "gram-subspace":
        return Limits.for_release(catalog_size(config))
    arrays = initial_arrays(config)
    return Limits.for_model(sum(int(value.nbytes) for value in arrays.values()))


_CHECKED: dict[Path, tuple[float, int]] = {}


def last_round(run_dir: Path) -> int:
    """The last round the coordinator checkpointed (0 before the first); reloaded only when the file changes."""
    path = run_dir / Checkpoint.FILE_NAME
    if not path.exists():
        return 0
    mtime = path.stat().st_mtime
    if path not in _CHECKED or _CHECKED[path][0] != mtime:
        checkpoint = Checkpoint.load(run_dir)
        _CHECKED[path] = (mtime, checkpoint.last_round if checkpoint else 0)
    return _CHECKED[path][1]


def platform_progress(state_dir: Path) -> dict[str, Any]:
    """What a platform's state file says: last round trained and, under DP, the ledger's epsilon."""
    state = PlatformState.load(state_dir)
    if state is None:
        return {"last_round": 0, "epsilon": None, "rounds_trained": 0}
    if state.ledger is None:
        return {"last_round": state.last_round, "epsilon": None, "rounds_trained": None}
    from crossfed.shared.privacy.ledger import PrivacyLedger  # opacus: only when a ledger exists

    ledger = PrivacyLedger.from_state(state.ledger)
    return {"last_round": state.last_round, "epsilon": ledger.epsilon(), "rounds_trained": ledger.rounds_trained}


def round_seconds(history: Sequence[Mapping[str, Any]]) -> list[float]:
    """Wall time of each round (training + validation) from the cumulative ``elapsed_seconds``."""
    elapsed = [float(entry["elapsed_seconds"]) for entry in history]
    return [round(now - before, 3) for before, now in zip([0.0, *elapsed], elapsed)]


def run_loopback(settings: LoopbackSettings) -> dict[str, Any]:
    """Deploy, run the app to the end, stop everything; returns the written ``summary.json``."""
    out = settings.out.resolve()
    if out.exists() and any(out.iterdir()):
        raise DeploymentError(f"{out} is not empty: a loopback writes a fresh run folder")
    data_dir = str(resolve_data_dir(settings.data_dir or None).resolve())
    config = settings.run_config(data_dir)
    limits = gateway_limits(config)
    deployment = Deployment(
        out / "deployment",
        settings.platforms,
        data_dir,
        state_dir_of=lambda index: platform_dir(out, index),
        node_pins=operator_pins(config),
        prepare_operators=lambda deployed: vetted.append(vet_app(deployed)),
        limits=limits,
    )
    vetted: list[str] = []
    facts: dict[str, Any] = {
        "runtime": "flower-superlink + flower-supernode on 127.0.0.1",
        "tls": True,
        "supernode_auth": True,
        "fleet_gateway": True,
        "gateway_limits": {"max_request_bytes": limits.max_request_bytes, "max_reply_bytes": limits.max_reply_bytes},
        "secagg": settings.secagg,
        "restarts": [],
        "serverapp_restarts": [],
    }
    started = time.perf_counter()
    with deployment:
        # SuperLink and SuperNodes up; not the run's own start-up (``startup_seconds`` of the summary).
        facts["launch_seconds"] = round(time.perf_counter() - started, 3)
        facts["vetted_bundle"] = vetted[0]
        # The probe runs beside the run (it exits on its own once refused): no wall time added.
        probe = deployment.start_unregistered() if settings.check_unregistered else None
        run_ids = [deployment.submit(config)]
        logger.info("run %d submitted", run_ids[0])
        try:
            status = _follow(deployment, run_ids, config, out, settings, facts)
        finally:
            (deployment.logs / "serverapp.log").write_text("\n".join(deployment.run_log(i) for i in run_ids))
        run_id = facts["run_id"] = run_ids[-1]
        if settings.check_control_api:
            facts["control_api_from_platform"] = deployment.try_control_api_as_platform()
        if settings.check_foreign_bundle and status == "finished:completed":
            facts["foreign_bundle"] = try_foreign_bundle(deployment, config, deployment.root / "foreign-run")
        if probe is not None:
            code = probe.wait(60.0)
            probe.stop()
            facts["unregistered_node"] = {
                "exit_code": code,
                "refused": code not in (None, 0) and "Failed to activate SuperNode" in probe.log_text(),
            }
    facts["leftover_processes"] = deployment.leftovers()
    facts["status"] = status
    if status != "finished:completed":
        raise DeploymentError(f"run {run_id} ended {status}; ServerApp log: {deployment.logs / 'serverapp.log'}")
    return _finish_summary(out, facts)


def _follow(
    deployment: Deployment,
    run_ids: list[int],
    config: Mapping[str, Any],
    out: Path,
    settings: LoopbackSettings,
    facts: dict[str, Any],
) -> str:
    """Wait for the run to finish, restarting a SuperNode after ``kill-after-round`` and the
    ServerApp after ``resume-after-round`` if asked (a resumed run is appended to ``run_ids``)."""
    deadline = time.monotonic() + settings.timeout
    victim = settings.platforms - 1 if settings.kill_platform is None else settings.kill_platform
    restarts, resumes = facts["restarts"], facts["serverapp_restarts"]
    next_status = 0.0
    while time.monotonic() < deadline:
        deployment.remember_processes()
        if deployment.superlink is not None and not deployment.superlink.running():
            raise DeploymentError(f"the SuperLink stopped: {deployment.superlink.log_path}")
        if settings.kill_after_round and not restarts and last_round(out) >= settings.kill_after_round:
            restarts.append(_restart(deployment, victim, out, settings.restart_delay))
        if settings.resume_after_round and not resumes and last_round(out) >= settings.resume_after_round:
            resumes.append(_resume(deployment, run_ids, config, out))
        run_id = run_ids[-1]
        if time.monotonic() >= next_status or (out / SUMMARY_FILE).exists():
            status = deployment.run_status(run_id)
            if status.startswith("finished"):
                return status
            next_status = time.monotonic() + STATUS_INTERVAL
        time.sleep(1.0)
    deployment.stop_run(run_id)
    raise DeploymentError(f"run {run_id} did not finish within {settings.timeout:.0f}s")


def _restart(deployment: Deployment, index: int, out: Path, delay: float) -> dict[str, Any]:
    """Stop platform ``index``'s SuperNode, wait until the SuperLink has it offline, start it again."""
    node = deployment.nodes[index]
    at_round = last_round(out)
    logger.info("stopping platform %d's SuperNode after round %d", index, at_round)
    exit_code = deployment.stop_supernode(index)
    before = platform_progress(node.state_dir)
    deployment.wait_online([node.node_id], online=False)
    time.sleep(delay)
    deployment.start_supernode(index)
    deployment.wait_online([node.node_id])
    logger.info("platform %d's SuperNode is back (state at stop: %s)", index, before)
    return {
        "platform": index,
        "node_id": node.node_id,
        "after_round": at_round,
        "exit_code": exit_code,
        "state_at_stop": before,
        "coordinator_round_at_restart": last_round(out),
    }


def _resume(deployment: Deployment, run_ids: list[int], config: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """``flwr stop`` the run, wait until its ServerApp process is gone, submit it again with ``resume = true``."""
    stopped, at_round = run_ids[-1], last_round(out)
    logger.info("stopping run %d (the ServerApp) after round %d", stopped, at_round)
    deployment.stop_run(stopped)
    deployment.wait_serverapp_gone()
    checkpointed = last_round(out)
    run_ids.append(deployment.submit({**config, "resume": True}))
    logger.info("run %d resumes run %d from its checkpoint after round %d", run_ids[-1], stopped, checkpointed)
    return {
        "stopped_run": stopped,
        "after_round": at_round,
        "resumed_from_round": checkpointed,
        "resumed_run": run_ids[-1],
    }


def _finish_summary(out: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """Add the deployment facts; under DP fill the metrics in from the platforms' own files,
    which this loopback may read because it owns every platform's disk."""
    summary = read_summary(out)
    config = RunConfig.from_mapping(summary["config"])
    if summary["metrics"] is None:
        from crossfed.simulations.federated import with_platform_reported_metrics

        summary = with_platform_reported_metrics(summary, config)
    facts["round_seconds"] = round_seconds(summary["history"])
    facts["platform_state"] = {
        str(i): platform_progress(platform_dir(out, i)) for i in range(config.data.num_platforms)
    }
    summary["deployment"] = facts
    write_summary(out, summary)
    return summary
