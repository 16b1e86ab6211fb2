"""``crossfed recommend``: top-K recommendations with explanations, served on the platform.

One user (``--user U``, repeatable), a list (``--user-list FILE``, one id a line) or everybody
(``--all --out recs.csv|recs.jsonl``). Uses the platform's latest state (``--state-dir``) and
the latest global parameters (``--global-model``: a run folder or its checkpoint / final model).
Exit status: 0 served, 1 bad input or nothing to serve (the message says why), 2 wrong command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crossfed.shared.cli import Command
from crossfed.shared.config import SERVE_MODELS
from crossfed.shared.errors import UsageError

if TYPE_CHECKING:
    from crossfed.client.serving.service import RecommendationService


def add_platform_arguments(parser: argparse.ArgumentParser) -> None:
    """The files that make up a platform's serving setup (shared with ``crossfed fold-in``)."""
    parser.add_argument("--interactions", required=True, help="the interactions file the platform trained on")
    parser.add_argument("--user-features", help="the platform's user features file, optional")
    parser.add_argument("--catalog", help="the coordinator's catalog file (default: config key 'catalog' of the run)")
    parser.add_argument(
        "--global-model", required=True, help="the run folder, or the coordinator's checkpoint or final model file"
    )
    parser.add_argument("--state-dir", required=True, help="the platform's state directory (its platform state)")
    parser.add_argument("--serve-model", choices=SERVE_MODELS, help="override config key 'serve-model'")
    parser.add_argument("--finetune-epochs", type=int, help="override config key 'finetune-epochs'")
    parser.add_argument("--foldin-steps", type=int, help="override config key 'foldin-steps'")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def open_service(args: argparse.Namespace) -> RecommendationService:
    """The platform's recommendation service from the files named by :func:`add_platform_arguments`."""
    from crossfed.client.serving.service import RecommendationService, ServingError, load_global_parameters
    from crossfed.shared.data.catalog import load_catalog
    from crossfed.shared.data.platform_files import load_operator_data

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    overrides = {
        key.replace("_", "-"): getattr(args, key)
        for key in ("serve_model", "finetune_epochs", "foldin_steps")
        if getattr(args, key) is not None
    }
    catalog_path = args.catalog
    parameters = load_global_parameters(args.global_model)
    if catalog_path is None:
        catalog_path = str(parameters.config.get("catalog", "")) or None
        if catalog_path is None:
            raise ServingError("name the coordinator's catalog with --catalog (the run's config has no 'catalog')")
    catalog = load_catalog(catalog_path, str(parameters.config.get("catalog-version", "")))
    platform = load_operator_data(args.interactions, catalog, users=args.user_features)
    return RecommendationService.open(platform, args.global_model, args.state_dir, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_platform_arguments(parser)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", help="a user id (repeatable)")
    who.add_argument("--user-list", help="file with one user id a line")
    who.add_argument("--all", action="store_true", help="every user of the platform (needs --out)")
    parser.add_argument("-k", "--top-k", type=int, help="how many items (default: config key 'top-k')")
    parser.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a feature of a user without history (cold start), e.g. occupation=student",
    )
    parser.add_argument("--out", help="write to this .csv or .jsonl file instead of printing")


def run(args: argparse.Namespace) -> int:
    from crossfed.client.serving.service import recommendation_rows

    if args.all and not args.out:
        raise UsageError("--all needs --out FILE (.csv or .jsonl)")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    features = dict(f.split("=", 1) for f in args.feature if "=" in f)
    if len(features) != len(args.feature):
        raise UsageError("--feature takes NAME=VALUE")
    service = open_service(args)
    if args.all:
        users = None
    elif args.user_list:
        users = [line.strip() for line in Path(args.user_list).read_text().splitlines() if line.strip()]
    else:
        users = args.user
    if args.out:
        rows = service.write_all(args.out, args.top_k, users)
        print(f"wrote {rows} recommendations to {args.out}")
        return 0
    for user in users or []:
        recommendations = service.recommend(user, args.top_k, features or None)
        for row in recommendation_rows(user, recommendations):
            print(json.dumps(row, ensure_ascii=False))
    return 0


command = Command(
    "recommend",
    "top-K recommendations with explanations for one user, a list or everybody",
    "platform operator",
    add_arguments,
    run,
    description=__doc__,
)
