"""``crossfed certs init|ca|server|platform``: the key material of a deployment.

``init`` writes everything a loopback or a first deployment needs into one folder (CA,
SuperLink certificate, N platform key pairs); ``ca`` and ``server`` make the coordinator's
pieces one at a time; ``platform`` is run by an operator on the platform's own machine, who
sends only the ``.pub`` to the coordinator. The formats are those Flower reads
(:mod:`crossfed.server.deploy.certs`).

``init`` and ``ca`` refuse to replace an existing ``ca.key`` unless given ``--force``: a new
CA silently invalidates every certificate the old one signed, and the old key is gone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfed.shared.cli import Command
from crossfed.shared.errors import CrossfedError


class ExistingKeyError(CrossfedError, FileExistsError):
    """The folder already holds a CA key, which the command would overwrite."""


_SUBCOMMANDS = (
    ("init", "CA, server certificate and N platform key pairs"),
    ("ca", "a new CA"),
    ("server", "a server certificate from the CA in --out"),
    ("platform", "one platform's key pair (run by its operator)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="certs_command", required=True, metavar="{init,ca,server,platform}")
    for name, text in _SUBCOMMANDS:
        subcommand = subcommands.add_parser(name, help=text, description=text)
        subcommand.add_argument("--out", type=Path, required=True, help="folder to write into")
        if name in ("init", "server"):
            subcommand.add_argument(
                "--host",
                action="append",
                dest="hosts",
                help="host name or IP the platforms dial (repeatable; 127.0.0.1, localhost and ::1 are always added)",
            )
    subcommands.choices["init"].add_argument("--platforms", type=int, required=True)
    for name in ("init", "ca"):
        subcommands.choices[name].add_argument(
            "--force",
            action="store_true",
            help="replace an existing ca.key (every certificate it signed stops working)",
        )
    subcommands.choices["platform"].add_argument("--name", required=True, help="key file stem, e.g. platform-0")


def run(args: argparse.Namespace) -> int:
    from crossfed.server.deploy.certs import (
        CA_CERT,
        CA_KEY,
        DEFAULT_HOSTS,
        SERVER_CERT,
        SERVER_KEY,
        init,
        make_ca,
        make_platform_keys,
        make_server_cert,
    )

    # 127.0.0.1 is always named: the SuperLink's own ServerApp process dials it (a SuperLink bound to
    # 0.0.0.0 hands its SuperExec 127.0.0.1), and TLS checks that name against the certificate too.
    hosts = tuple(dict.fromkeys([*(getattr(args, "hosts", None) or ()), *DEFAULT_HOSTS]))
    if args.certs_command in ("init", "ca") and (args.out / CA_KEY).exists() and not args.force:
        raise ExistingKeyError(
            f"{args.out / CA_KEY} exists: a new CA would replace it and invalidate every certificate it "
            "signed; give --force to replace it, or another --out"
        )
    if args.certs_command == "init":
        keys = init(args.out, args.platforms, hosts)
        print(f"wrote {args.out}/{CA_CERT}, {CA_KEY}, {SERVER_CERT}, {SERVER_KEY} (SANs: {', '.join(hosts)})")
        for pair in keys:
            print(f"wrote {pair.private_key} and {pair.public_key}")
    elif args.certs_command == "ca":
        print("wrote", *make_ca(args.out))
    elif args.certs_command == "server":
        print("wrote", *make_server_cert(args.out, hosts), f"(SANs: {', '.join(hosts)})")
    else:
        pair = make_platform_keys(args.out, args.name)
        print(f"wrote {pair.private_key} (keep it on this machine) and {pair.public_key} (send it to the coordinator)")
    return 0


command = Command(
    "certs",
    "make a deployment's CA, SuperLink certificate and platform key pairs",
    "coordinator",
    add_arguments,
    run,
    description=__doc__,
)
