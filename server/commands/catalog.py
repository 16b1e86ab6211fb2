"""``crossfed catalog publish|show``: the coordinator publishes (or shows) the item catalog of a run.

``publish`` validates an item table (or MovieLens' ``u.item``) with the data contract and writes
a versioned, checksummed catalog file, refusing a new version that drops or reorders the items
of ``--previous``. ``show`` verifies a catalog file and prints its version, size and checksum.
Exit status: 0 done, 1 bad input, 2 wrong command line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from crossfed.shared.cli import Command
from crossfed.shared.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="catalog_command", required=True, metavar="{publish,show}")
    pub = subcommands.add_parser(
        "publish", help="write a new catalog version", description="write a new catalog version, extending --previous"
    )
    source = pub.add_mutually_exclusive_group(required=True)
    source.add_argument("--items", help="item table (.csv or .parquet): item_id + feature columns")
    source.add_argument("--movielens", metavar="DIR", help="a MovieLens-100K folder (its u.item)")
    pub.add_argument("--version", required=True, help="the new version's name, e.g. 2026-11-27")
    pub.add_argument("--out", required=True, help="catalog file to write")
    pub.add_argument("--previous", help="the catalog platforms run on now; the new one must extend it")
    pub.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="COLUMN=KIND",
        help="feature kind of a column (categorical, multi, numeric, text); others are inferred",
    )
    show = subcommands.add_parser(
        "show",
        help="verify a catalog file and print its version and checksum",
        description="verify a catalog file and print its version and checksum",
    )
    show.add_argument("catalog")


def run(args: argparse.Namespace) -> int:
    from crossfed.shared.data.catalog import load_catalog, publish
    from crossfed.shared.data.contract import read_table
    from crossfed.shared.data.movielens import load_movielens_100k

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if args.catalog_command == "show":
        catalog = load_catalog(args.catalog)
    else:
        kinds = dict(k.split("=", 1) for k in args.kind if "=" in k)
        if len(kinds) != len(args.kind):
            raise UsageError("--kind takes COLUMN=KIND")
        previous = load_catalog(args.previous) if args.previous else None
        if args.movielens:
            tables = load_movielens_100k(args.movielens)
            items, source, kinds = tables.items, f"{args.movielens}/u.item", tables.feature_kinds["items"] | kinds
        else:
            items, source = read_table(args.items), args.items
        catalog = publish(items, args.version, args.out, feature_kinds=kinds, previous=previous, source=source)
    print(
        f"catalog {catalog.version}: {len(catalog)} items, sha256 {catalog.sha256}"
        + (f" -> {args.out}" if args.catalog_command == "publish" else "")
    )
    return 0


command = Command(
    "catalog",
    "publish a versioned item catalog, or verify and show one",
    "coordinator",
    add_arguments,
    run,
    description=__doc__,
)
