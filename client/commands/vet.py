"""``crossfed vet add|launcher``: the app bundles this platform runs, and the launcher that enforces it.

``add`` puts a bundle's SHA-256 on the operator's vetted list: give the ``.fab`` you reviewed,
or the source folder you reviewed (it is built exactly as ``flwr run`` builds it, so the digest
matches the bundle the coordinator submits from the same tree). ``launcher`` writes the
``flwr-clientapp`` that refuses every other bundle; start ``flower-supernode`` with that folder
first on ``PATH`` (:mod:`crossfed.client.vetted_runtime`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfed.shared.cli import Command
from crossfed.shared.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="vet_command", required=True, metavar="{add,launcher}")
    add = subcommands.add_parser("add", help="add a reviewed bundle (.fab or app folder) to the vetted list")
    add.add_argument("source", type=Path, help="the reviewed .fab file or app folder")
    launcher = subcommands.add_parser("launcher", help="write the flwr-clientapp that runs only vetted bundles")
    launcher.add_argument("--bin", type=Path, required=True, help="folder to write flwr-clientapp into")
    for subcommand in (add, launcher):
        subcommand.add_argument("--list", type=Path, required=True, dest="vetted_list", help="the vetted list file")


def run(args: argparse.Namespace) -> int:
    from crossfed.client.vetted_runtime import write_launcher
    from crossfed.client.vetting import add_vetted, build_bundle, bundle_digest, read_vetted

    if args.vet_command == "add":
        if not args.source.exists():
            raise UsageError(f"{args.source}: no such .fab file or app folder")
        digest = bundle_digest(build_bundle(args.source))
        added = add_vetted(args.vetted_list, digest, note=str(args.source.resolve()))
        print(f"{digest} {'added to' if added else 'already in'} {args.vetted_list}")
        return 0
    if args.vetted_list.is_file():
        read_vetted(args.vetted_list)  # a malformed list fails here, not in the middle of a round
    launcher = write_launcher(args.bin, args.vetted_list)
    print(f"wrote {launcher}; start flower-supernode with PATH={args.bin.resolve()}:$PATH")
    return 0


command = Command(
    "vet",
    "the app bundles this platform runs: add a reviewed one, write the launcher that refuses the rest",
    "platform operator",
    add_arguments,
    run,
    description=__doc__,
)
