"""The process a platform's SuperNode starts for each ClientApp task, checking the bundle first.

Flower's SuperExec starts ``flwr-clientapp`` by name from ``PATH``; the operator puts a folder
holding :func:`write_launcher`'s ``flwr-clientapp`` first on the SuperNode's ``PATH`` (``crossfed
vet launcher``). That launcher runs :func:`main`: Flower's own ``flwr-clientapp`` with one step
added - before the bundle is unpacked or any of its code imported, its bytes are checked against
the operator's vetted list (:mod:`crossfed.client.vetting`). A bundle not on the list fails the
task; Flower then sends the coordinator an error reply naming the refused digest.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from crossfed.client import vetting
from crossfed.client.vetting import VETTED_ENV, check_bundle

T = TypeVar("T")

#: The name Flower's SuperExec starts a ClientApp process by (``flwr.supercore.constant``).
CLIENTAPP_COMMAND = "flwr-clientapp"


def vetted_install(install: Callable[..., T], vetted_list: Path | None) -> Callable[..., T]:
    """``install`` (Flower's ``install_from_fab``) that first refuses a bundle not on ``vetted_list``."""

    def install_vetted(content: bytes, *args: object, **kwargs: object) -> T:
        check_bundle(content, vetted_list)
        return install(content, *args, **kwargs)

    return install_vetted


def main() -> None:
    """Flower's ``flwr-clientapp``, refusing a bundle that is not on ``$CROSSFED_VETTED_BUNDLES``'s list."""
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp
    from flwr.supernode.runtime import run_clientapp as runtime

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger(vetting.__name__).addHandler(handler)
    logging.getLogger(vetting.__name__).setLevel(logging.INFO)
    vetted_list = Path(os.environ[VETTED_ENV]) if os.environ.get(VETTED_ENV) else None
    # Flower's run_clientapp installs the bundle through this module-level name; every bundle passes here first.
    runtime.install_from_fab = vetted_install(runtime.install_from_fab, vetted_list)
    sys.argv[0] = CLIENTAPP_COMMAND  # Flower picks its exit messages by the program name
    flwr_clientapp()


def write_launcher(bin_dir: Path, vetted_list: Path) -> Path:
    """Write ``bin_dir/flwr-clientapp``: this interpreter running :func:`main` with ``vetted_list``.

    ``-I`` keeps the working directory and ``PYTHON*`` variables out of the import path, so
    nothing beside the SuperNode can stand in for the installed crossfed and Flower."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / CLIENTAPP_COMMAND
    launcher.write_text(
        "#!/bin/sh\n"
        "# Written by `crossfed vet launcher`: Flower's flwr-clientapp, refusing app bundles not on the vetted list.\n"
        f"{VETTED_ENV}={shlex.quote(str(vetted_list.resolve()))} "
        f'exec {shlex.quote(sys.executable)} -I -u -c "from crossfed.client.vetted_runtime import main; main()" "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher
