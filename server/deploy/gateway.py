"""The platforms' only way into the SuperLink: an HTTPS front that forwards the Fleet API and nothing else.

Flower 1.42 serves its Fleet API (what SuperNodes call), its Control API (``flwr run``,
``flwr supernode register``, ``flwr ls``, ``flwr stop``) and its Runtime API on one HTTP port,
and the open-source distribution offers no authentication for the Control API (its OIDC
plugin ships only with Flower's enterprise edition). A platform that can reach that port with
nothing but ``ca.crt`` can therefore register nodes and submit runs. So the SuperLink listens on
127.0.0.1 only, where the coordinator's own ``flwr`` CLI reaches it, and the platforms are
given this gateway's address: it terminates TLS with the SuperLink's certificate, forwards
requests under :data:`FLEET_PREFIX` unchanged (SuperNode authentication signs a timestamp in
headers, which pass through), and answers every other path 403 without forwarding it.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

logger = logging.getLogger("crossfed.deploy.gateway")

#: The Fleet API's path prefix in Flower 1.42 (``flwr.superlink.routers.fleet.router``).
FLEET_PREFIX = "/v1/fleet/"
#: Headers that belong to one hop of the connection, never forwarded.
HOP_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)
#: The gateway's log line for a refused request; the loopback looks for it.
REFUSED = "refused"
#: Upper bound on one forwarded call; Fleet calls are short request/response exchanges.
UPSTREAM_TIMEOUT = 300.0


def is_fleet_path(path: str) -> bool:
    """True only for a Fleet API path; ``..`` segments are refused so no path can climb out of the prefix."""
    return path.startswith(FLEET_PREFIX) and ".." not in path.split("/")


def _forwarded_headers(request: Request) -> dict[str, str]:
    return {name: value for name, value in request.headers.items() if name.lower() not in HOP_HEADERS}


def create_app(superlink: str, ca_cert: Path | None, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """The gateway application forwarding Fleet calls to ``https://{superlink}``, verified against ``ca_cert``
    (``transport`` replaces the network, for tests)."""
    verify = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert is not None else True
    client = httpx.AsyncClient(
        base_url=f"https://{superlink}", verify=verify, timeout=UPSTREAM_TIMEOUT, transport=transport
    )

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not is_fleet_path(path):
            logger.warning("%s %s %s from %s", REFUSED, request.method, path, request.client)
            return PlainTextResponse(f"this address serves only the Fleet API ({FLEET_PREFIX})\n", status_code=403)
        upstream = await client.request(
            request.method,
            path,
            params=request.query_params,
            content=await request.body(),
            headers=_forwarded_headers(request),
        )
        headers = {name: value for name, value in upstream.headers.items() if name.lower() not in HOP_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def serve(listen: str, superlink: str, certs_dir: Path) -> None:
    """Serve the gateway on ``listen`` (``host:port``) until stopped, with the SuperLink's certificate."""
    import uvicorn

    from crossfed.server.deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY

    host, _, port = listen.rpartition(":")
    uvicorn.run(
        create_app(superlink, certs_dir / CA_CERT),
        host=host.strip("[]"),
        port=int(port),
        ssl_certfile=str(certs_dir / SERVER_CERT),
        ssl_keyfile=str(certs_dir / SERVER_KEY),
        log_level="info",
        access_log=False,
    )
