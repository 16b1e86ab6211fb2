"""``crossfed fold-in``: fold new interactions (and new users) in now, without a federation round.

``--new-interactions FILE`` (the contract's interaction columns; users may be new) and
optionally ``--new-user-features FILE`` (features of the newcomers). A few steps on each
user's own vector with every shared parameter frozen; the result is saved in the platform's
state directory (``FoldIns``) and used by ``crossfed recommend`` from then on. Items the
catalog does not hold are counted and skipped. Exit status: 0 done, 1 bad input, 2 wrong command line.
"""

from __future__ import annotations

import argparse

from crossfed.client.commands.recommend import add_platform_arguments, open_service
from crossfed.shared.cli import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_platform_arguments(parser)
    parser.add_argument("--new-interactions", required=True, help="new interactions (.csv or .parquet)")
    parser.add_argument("--new-user-features", help="features of new users (.csv or .parquet), optional")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from crossfed.shared.data.contract import read_table, validate, validate_features

    service = open_service(args)
    catalog = service.platform.catalog
    assert catalog is not None
    new = validate(
        read_table(args.new_interactions),
        catalog.items,
        sources={"interactions": args.new_interactions, "items": catalog.source},
        unknown_items="drop",
    )
    features = {}
    if args.new_user_features:
        table, _, _ = validate_features(read_table(args.new_user_features), "users", "user_id", args.new_user_features)
        features = {
            str(row["user_id"]): {k: str(v) for k, v in row.items() if k != "user_id" and not pd.isna(v)}
            for row in table.to_dict(orient="records")
        }
    codes = catalog.codes(new.interactions["item_id"])
    by_user = {u: codes[rows] for u, rows in new.interactions.groupby("user_id").indices.items()}
    sizes = service.fold_in(by_user, features)
    newcomers = sum(service.platform.user_code(u) < 0 for u in sizes)
    print(
        f"folded in {len(sizes)} users ({newcomers} new, {len(sizes) - newcomers} known) from "
        f"{new.report.rows_kept} interactions; {new.report.unknown_item_rows} rows with items not in catalog "
        f"{catalog.version} skipped"
    )
    return 0


command = Command(
    "fold-in",
    "fold new interactions and new users into the platform's model now, without a round",
    "platform operator",
    add_arguments,
    run,
    description=__doc__,
)
