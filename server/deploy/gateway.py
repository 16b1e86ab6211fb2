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

It is also where a platform's reply is first seen, before the SuperLink and the ServerApp
deserialise it (Flower's own limit is 2 GiB): it never buffers more than one request's cap of a
body (read as a stream, 413 once past it) and bounds the bytes each sender pushes for one reply
(:mod:`crossfed.server.deploy.reply_budget`), answering 413 without forwarding what is past either.
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

from crossfed.server.deploy.limits import Limits
from crossfed.server.deploy.reply_budget import (
    PULL_MESSAGES,
    AuthenticationFailed,
    ReplyBudgets,
    claimed_node,
    delivered_runs,
    parse_push,
    sender_of,
)

logger = logging.getLogger("crossfed.deploy.gateway")

#: The Fleet API's path prefix in Flower 1.42 (``flwr.superlink.routers.fleet.router``).
FLEET_PREFIX = "/v1/fleet/"
#: Headers that belong to one hop of the connection, never forwarded.
HOP_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)
#: The gateway's log line for a refused request; the loopback looks for it.
REFUSED = "refused"
#: The gateway's log line for a request refused for its size.
OVERSIZE = "oversize"
#: Upper bound on one forwarded call; Fleet calls are short request/response exchanges.
UPSTREAM_TIMEOUT = 300.0


def is_fleet_path(path: str) -> bool:
    """True only for a Fleet API path; ``..`` segments are refused so no path can climb out of the prefix."""
    return path.startswith(FLEET_PREFIX) and ".." not in path.split("/")


def _forwarded_headers(request: Request) -> dict[str, str]:
    return {name: value for name, value in request.headers.items() if name.lower() not in HOP_HEADERS}


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request's body, read as a stream; ``None`` as soon as it is past ``limit`` bytes (or declares so)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _too_large(what: str, limit: int) -> Response:
    return PlainTextResponse(f"{what} exceeds this gateway's limit of {limit} bytes\n", status_code=413)


def create_app(
    superlink: str,
    ca_cert: Path | None,
    transport: httpx.AsyncBaseTransport | None = None,
    limits: Limits | None = None,
) -> Starlette:
    """The gateway application forwarding Fleet calls to ``https://{superlink}``, verified against ``ca_cert``,
    within ``limits`` (``transport`` replaces the network, for tests)."""
    limits = limits or Limits()
    budgets = ReplyBudgets(limits.max_reply_bytes)
    verify = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert is not None else True
    client = httpx.AsyncClient(
        base_url=f"https://{superlink}", verify=verify, timeout=UPSTREAM_TIMEOUT, transport=transport
    )

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not is_fleet_path(path):
            logger.warning("%s %s %s from %s", REFUSED, request.method, path, request.client)
            return PlainTextResponse(f"this address serves only the Fleet API ({FLEET_PREFIX})\n", status_code=403)
        body = await read_capped(request, limits.max_request_bytes)
        if body is None:
            cap = limits.max_request_bytes
            logger.warning("%s %s: body past %d bytes, from %s", OVERSIZE, path, cap, request.client)
            return _too_large("the request body", limits.max_request_bytes)
        push = parse_push(path, body)
        try:
            counted = push is not None or path == PULL_MESSAGES
            sender = sender_of(request.headers, claimed_node(path, body, push)) if counted else None
        except AuthenticationFailed as error:
            logger.warning("%s %s: %s, from %s", REFUSED, path, error, request.client)
            return PlainTextResponse("invalid SuperNode authentication\n", status_code=401)
        charge = (sender, push.run_ids, len(body)) if push is not None and sender is not None else None
        if charge is not None and not budgets.charge(*charge):
            so_far = max(budgets.spent(sender, run) for run in push.run_ids)
            logger.warning(
                "%s %s: %s would push more than %d bytes into run(s) %s for one reply (%d so far, %d more)",
                OVERSIZE,
                path,
                sender,
                limits.max_reply_bytes,
                list(push.run_ids),
                so_far,
                len(body),
            )
            return _too_large("this reply", limits.max_reply_bytes)
        try:
            upstream = await client.request(
                request.method, path, params=request.query_params, content=body, headers=_forwarded_headers(request)
            )
        except BaseException:
            if charge is not None:
                budgets.refund(*charge)
            raise
        if charge is not None and upstream.status_code >= 400:
            budgets.refund(*charge)
        if path == PULL_MESSAGES and sender is not None and upstream.status_code == 200:
            budgets.restart(sender, delivered_runs(upstream.content))
        headers = {name: value for name, value in upstream.headers.items() if name.lower() not in HOP_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def serve(listen: str, superlink: str, certs_dir: Path, limits: Limits | None = None) -> None:
    """Serve the gateway on ``listen`` (``host:port``) until stopped, with the SuperLink's certificate."""
    import uvicorn

    from crossfed.server.deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY

    host, _, port = listen.rpartition(":")
    uvicorn.run(
        create_app(superlink, certs_dir / CA_CERT, limits=limits),
        host=host.strip("[]"),
        port=int(port),
        ssl_certfile=str(certs_dir / SERVER_CERT),
        ssl_keyfile=str(certs_dir / SERVER_KEY),
        log_level="info",
        access_log=False,
    )
