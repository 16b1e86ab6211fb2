"""``crossfed gateway``: the address platforms are given, forwarding only the SuperLink's Fleet API.

Flower 1.42 serves the Fleet API and the Control API (``flwr run``, ``flwr supernode register``)
on one port with no authentication for the latter in its open-source edition, so the
coordinator binds the SuperLink to 127.0.0.1 and runs this gateway on the public address
(:mod:`crossfed.server.deploy.gateway`). It uses the SuperLink's own certificate from
``--certs`` (``ca.crt``, ``server.pem``, ``server.key``, as ``crossfed certs`` writes them).
``--max-request-bytes`` and ``--max-reply-bytes`` bound what a platform can make the SuperLink
take in before the ServerApp's screening sees it (:mod:`crossfed.server.deploy.reply_budget`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from crossfed.server.deploy.limits import DEFAULT_MAX_REPLY_BYTES, DEFAULT_MAX_REQUEST_BYTES
from crossfed.shared.cli import Command
from crossfed.shared.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, help="HOST:PORT the platforms dial, e.g. 0.0.0.0:9092")
    parser.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink (started with --host 127.0.0.1)")
    parser.add_argument("--certs", type=Path, required=True, help="folder with ca.crt, server.pem, server.key")
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"largest body of one Fleet request; past it the answer is 413 (default {DEFAULT_MAX_REQUEST_BYTES})",
    )
    parser.add_argument(
        "--max-reply-bytes",
        type=int,
        default=DEFAULT_MAX_REPLY_BYTES,
        help="most bytes one platform may push for one reply (push-messages and push-object between two "
        f"instructions it receives); past it the answer is 413 (default {DEFAULT_MAX_REPLY_BYTES}; "
        "4 x the model's shared bytes + 1 MiB never refuses an honest reply)",
    )


def _address(flag: str, value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"{flag} {value!r}: expected HOST:PORT")
    return value


def run(args: argparse.Namespace) -> int:
    from crossfed.server.deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY
    from crossfed.server.deploy.gateway import serve
    from crossfed.server.deploy.limits import Limits

    listen, superlink = _address("--listen", args.listen), _address("--superlink", args.superlink)
    missing = [name for name in (CA_CERT, SERVER_CERT, SERVER_KEY) if not (args.certs / name).is_file()]
    if missing:
        raise UsageError(f"--certs {args.certs}: missing {', '.join(missing)} (make them with `crossfed certs`)")
    if args.max_request_bytes < 1 or args.max_reply_bytes < 1:
        raise UsageError("--max-request-bytes and --max-reply-bytes must be positive")
    limits = Limits(args.max_request_bytes, args.max_reply_bytes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded Fleet call otherwise
    print(
        f"forwarding the Fleet API from {listen} to {superlink}; every other path is refused; "
        f"at most {limits.max_request_bytes} bytes a request, {limits.max_reply_bytes} bytes a reply",
        flush=True,
    )
    serve(listen, superlink, args.certs, limits)
    return 0


command = Command(
    "gateway",
    "serve the platforms' address: the SuperLink's Fleet API only, never its Control API",
    "coordinator",
    add_arguments,
    run,
    description=__doc__,
)
