"""The ``crossfed`` command: one entry point whose subcommands register themselves.

Each subcommand is a module that declares a :class:`Command` (name, one-line help,
``add_arguments(parser)``, ``run(args) -> int``) and is listed under the entry-point group
``crossfed.commands`` in ``pyproject.toml``. The dispatcher finds them through
:mod:`importlib.metadata`, so it imports no upper layer (``server``, ``client``,
``simulations``) itself, and a new command is one module plus one line of packaging.

Command modules import only the standard library and light ``crossfed`` modules at import
time; torch, Flower and Ray are imported inside ``run``. Building the parser therefore stays
fast, and ``crossfed --help`` lists every command.

An expected failure (:class:`~crossfed.shared.errors.CrossfedError`) is shown as
``error: <message>`` on stderr and the command exits with the code the error carries. So is
a file the user named that cannot be opened or written (an :class:`OSError` that names its
file): the user fixes it from the message alone. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from crossfed.shared.errors import CrossfedError, UsageError

ENTRY_POINT_GROUP = "crossfed.commands"

#: Who runs a command; ``crossfed --help`` groups the commands in this order.
AUDIENCES = ("researcher", "coordinator", "platform operator")


@dataclass(frozen=True)
class Command:
    """One ``crossfed`` subcommand: a thin layer that parses, calls the library and prints."""

    name: str
    help: str
    audience: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: The longer text of ``crossfed NAME --help``; the one-line help when empty.
    description: str = ""

    def __post_init__(self) -> None:
        if self.audience not in AUDIENCES:
            raise ValueError(f"command {self.name!r}: audience {self.audience!r} is not one of {AUDIENCES}")


def load_commands() -> list[Command]:
    """Every registered command, ordered by audience, then as listed in the packaging metadata."""
    commands = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        command = entry.load()
        if not isinstance(command, Command) or command.name != entry.name:
            raise TypeError(f"entry point {entry.name} = {entry.value} is not the Command named {entry.name!r}")
        commands.append(command)
    return sorted(commands, key=lambda command: AUDIENCES.index(command.audience))


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    by_audience = {audience: [c.name for c in commands if c.audience == audience] for audience in AUDIENCES}
    parser = argparse.ArgumentParser(
        prog="crossfed",
        description="Federated, privacy-preserving cross-platform recommendation.",
        epilog="\n".join(f"{audience}: {', '.join(names)}" for audience, names in by_audience.items() if names)
        + "\n\n'crossfed COMMAND --help' describes a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        subparser = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run, options=sorted(subparser._option_string_actions))
    return parser


def unknown_options(unrecognised: Sequence[str], options: Sequence[str]) -> UsageError:
    """A misspelled flag is refused naming the nearest real one (``--epsilonn`` -> ``--epsilon``).

    argparse alone says only "unrecognized arguments"; for a privacy key such as ``--epsilon`` the
    user must learn that the value they meant was never applied, and what to type instead.
    """
    flag = next((item for item in unrecognised if item.startswith("-")), unrecognised[0]).split("=")[0]
    nearest = difflib.get_close_matches(flag, options, n=1)
    hint = f"; did you mean {nearest[0]}?" if nearest else ""
    return UsageError(f"unknown option {flag!r}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the chosen command, and turn an expected failure into its message and exit code."""
    args, unrecognised = build_parser(load_commands()).parse_known_args(argv)
    try:
        if unrecognised:
            raise unknown_options(unrecognised, args.options)
        return args.run(args)
    except CrossfedError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 1
