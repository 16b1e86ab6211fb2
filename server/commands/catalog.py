"""``python -m crossfed.server.commands.catalog``: the coordinator publishes (or shows) the item catalog of a run.

``publish`` validates an item table (or MovieLens' ``u.item``) with the data contract and writes
a versioned, checksummed catalog file, refusing a new version that drops or reorders the items
of ``--previous`` (see README, "For platform operators"). ``show`` verifies a catalog file and
prints its version, size and checksum. Exit status: 0 done, 1 bad input, 2 wrong command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from crossfed.shared.data.catalog import CatalogError, load_catalog, publish
from crossfed.shared.data.contract import DataValidationError, read_table
from crossfed.shared.data.movielens import DatasetUnavailableError, load_movielens_100k


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m crossfed.server.commands.catalog", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish", help="write a new catalog version")
    source = pub.add_mutually_exclusive_group(required=True)
    source.add_argument("--items", help="item table (.csv or .parquet): item_id + feature columns")
    source.add_argument("--movielens", metavar="DIR", help="a MovieLens-100K folder (its u.item)")
    pub.add_argument("--version", required=True, help="the new version's name, e.g. 2026-11-27")
    pub.add_argument("--out", required=True, help="catalog file to write")
    pub.add_argument("--previous", help="the catalog platforms run on now; the new one must extend it")
    pub.add_argument("--kind", action="append", default=[], metavar="COLUMN=KIND",
                     help="feature kind of a column (categorical, multi, numeric, text); others are inferred")
    show = commands.add_parser("show", help="verify a catalog file and print its version and checksum")
    show.add_argument("catalog")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    try:
        if args.command == "show":
            catalog = load_catalog(args.catalog)
        else:
            kinds = dict(k.split("=", 1) for k in args.kind if "=" in k)
            if len(kinds) != len(args.kind):
                parser().error("--kind takes COLUMN=KIND")
            previous = load_catalog(args.previous) if args.previous else None
            if args.movielens:
                tables = load_movielens_100k(args.movielens)
                items, source, kinds = tables.items, f"{args.movielens}/u.item", tables.feature_kinds["items"] | kinds
            else:
                items, source = read_table(args.items), args.items
            catalog = publish(items, args.version, args.out, feature_kinds=kinds, previous=previous, source=source)
    except (DataValidationError, CatalogError, DatasetUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"catalog {catalog.version}: {len(catalog)} items, sha256 {catalog.sha256}"
          + (f" -> {args.out}" if args.command == "publish" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
