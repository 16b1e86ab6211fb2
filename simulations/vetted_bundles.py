"""The loopback's platform operators vet the app bundle, and a bundle none of them vetted is refused.

Each operator of a loopback deployment reviewed this source tree: :func:`vet_app` builds its
bundle exactly as ``flwr run`` will, puts the digest on every operator's vetted list and writes
every operator's ``flwr-clientapp`` launcher (:mod:`crossfed.client.vetted_runtime`), which the
deployment puts first on each SuperNode's ``PATH``. :func:`try_foreign_bundle` then plays a
coordinator who ships different code: the same tree with one line added to the ClientApp's
module, submitted as a run of its own.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import tomli_w

from crossfed.client.vetted_runtime import write_launcher
from crossfed.client.vetting import REFUSED, add_vetted, build_bundle, bundle_digest
from crossfed.server.deploy.deployment import APP_DIR, CONNECTION, Deployment, DeploymentError

#: How long every platform may take to refuse the foreign bundle (one ClientApp start each).
REFUSAL_TIMEOUT = 300.0


def _snapshot(source: Path, folder: Path) -> Path:
    """The files of ``source``'s bundle unpacked into ``folder``: what ``flwr run`` would build from ``source`` now."""
    zipfile.ZipFile(BytesIO(build_bundle(source))).extractall(folder)
    return folder


def vet_app(deployment: Deployment) -> str:
    """Every operator vets a snapshot of :data:`APP_DIR`, which the coordinator then submits (so an edit of
    the tree during a run changes nothing), and installs the launcher; the snapshot bundle's digest."""
    deployment.app_dir = _snapshot(APP_DIR, deployment.root / "vetted-app")
    digest = bundle_digest(build_bundle(deployment.app_dir))
    for node in deployment.nodes:
        add_vetted(node.vetted_list, digest, note=str(APP_DIR))
        write_launcher(node.launcher_dir, node.vetted_list)
    return digest


def _foreign_app(deployment: Deployment) -> Path:
    source = _snapshot(deployment.app_dir, deployment.root / "foreign-app")
    with (source / "client" / "client_app.py").open("a", encoding="utf-8") as module:
        module.write("# a line no platform operator reviewed\n")
    return source


def try_foreign_bundle(deployment: Deployment, run_config: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """Submit a bundle no operator vetted, wait until every platform has refused it, stop that run.

    ``run_dir`` keeps the foreign run's coordinator files away from the vetted run's. Returns
    the foreign digest, the platforms whose SuperNode log shows the refusal, and the run's
    status at that moment.
    """
    source = _foreign_app(deployment)
    digest = bundle_digest(build_bundle(source))
    config_path = deployment.root / "coordinator" / "run-config-foreign.toml"
    config_path.write_text(tomli_w.dumps({**run_config, "run-dir": str(run_dir)}))
    run_id = int(deployment.flwr("run", str(source), CONNECTION, "--run-config", str(config_path))["run-id"])
    marker = f"{REFUSED} sha256 {digest}"

    def refusing() -> list[int]:
        return [n.index for n in deployment.nodes if n.process is not None and marker in n.process.log_text()]

    try:
        deployment.wait_until(
            "every platform to refuse the foreign bundle",
            lambda: len(refusing()) == len(deployment.nodes),
            REFUSAL_TIMEOUT,
        )
    except DeploymentError:
        pass  # recorded below: the platforms that did not refuse in time are missing from refused_by
    finally:
        refused_by = refusing()
        status = deployment.run_status(run_id)
        if not status.startswith("finished"):
            deployment.stop_run(run_id)
        deployment.wait_serverapp_gone()
    return {"digest": digest, "run_id": run_id, "refused_by": refused_by, "status_when_refused": status}
