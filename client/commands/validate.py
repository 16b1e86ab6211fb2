"""``crossfed validate``: check a platform's files against the data contract and the catalog.

Prints what an operator needs before training: rows, users, items, items unknown to the
coordinator's catalog, duplicates dropped, missing values per column. Exit status 0 when the
files can be used, 1 when they cannot (the message names file, row and column), 2 for a
wrong command line. It writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from crossfed.shared.cli import Command
from crossfed.shared.errors import UsageError

if TYPE_CHECKING:
    from crossfed.shared.data.catalog import Catalog
    from crossfed.shared.data.contract import Tables

EXIT_OK, EXIT_BAD_INPUT = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interactions", required=True, help="interactions file (.csv or .parquet)")
    parser.add_argument("--user-features", help="user features file (.csv or .parquet), optional")
    parser.add_argument("--catalog", help="the coordinator's catalog file (catalog.json)")
    parser.add_argument("--catalog-version", default="", help="refuse a catalog of another version")
    parser.add_argument(
        "--items", help="the platform's own item table (checked against the catalog when both are given)"
    )
    parser.add_argument("--strict", action="store_true", help="fail (exit 1) when items are not in the catalog")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def report_lines(tables: Tables, catalog: Catalog | None) -> list[str]:
    report = tables.report
    lines = []
    if catalog is not None:
        lines.append(f"catalog: version {catalog.version}, {len(catalog)} items, sha256 {catalog.sha256}")
    lines += [
        (
            f"rows: {report.rows_read} read, {report.duplicates_dropped} exact duplicates dropped, "
            f"{report.unknown_item_rows} with unknown items dropped, {report.rows_kept} kept"
        ),
        f"users: {report.users} with interactions",
        f"items: {report.items_interacted} interacted with, of {report.items} in the catalog",
        f"unknown items: {report.unknown_items}"
        + (
            f" (in {report.unknown_item_rows} rows; e.g. {', '.join(map(repr, report.unknown_item_examples))})"
            if report.unknown_items
            else ""
        ),
        "missing values per column:",
    ]
    for table, columns in report.missing_values.items():
        for column, count in columns.items():
            lines.append(f"  {table}.{column}: {count}")
    if not any(report.missing_values.values()):
        lines.append("  (no feature columns)")
    return lines


def run(args: argparse.Namespace) -> int:
    from crossfed.shared.data.catalog import load_catalog
    from crossfed.shared.data.platform_files import check_tables

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.catalog is None and args.items is None:
        raise UsageError("give --catalog (the coordinator's) or --items (your own item table)")
    catalog = load_catalog(args.catalog, args.catalog_version) if args.catalog else None
    tables = check_tables(args.interactions, users=args.user_features, catalog=catalog, items=args.items)
    for line in report_lines(tables, catalog):
        print(line)
    if args.strict and tables.report.unknown_items:
        print(
            f"error: {args.interactions}, column 'item_id': {tables.report.unknown_items} items are not in the "
            "catalog (--strict)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print("ok: the files can be used")
    return EXIT_OK


command = Command(
    "validate",
    "check a platform's files against the data contract and the coordinator's catalog",
    "platform operator",
    add_arguments,
    run,
    description=__doc__,
)
