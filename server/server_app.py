"""crossfed ServerApp: reads its run config and runs the federation its mechanism names."""

from collections.abc import Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from crossfed.server.mechanisms import federation_for
from crossfed.shared.config import RunConfig


def build_app(overrides: Mapping[str, Any] | None = None) -> ServerApp:
    """A ServerApp; ``overrides`` stand in for ``run_config``, which the Python simulation API leaves empty."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        config = RunConfig.from_mapping(context.run_config, overrides)
        federation_for(config)(grid, config)

    return server_app


app = build_app()
