"""``python -m crossfed.client.commands.recommend``: top-K recommendations with explanations, served on the platform.

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
from collections.abc import Sequence
from pathlib import Path

from crossfed.client.commands.errors import OPERATOR_ERRORS, error_line
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.platform_files import load_operator_data
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.client.serving.service import (
    RecommendationService,
    ServingError,
    load_global_parameters,
    recommendation_rows,
)


def add_platform_arguments(p: argparse.ArgumentParser) -> None:
    """The files that make up a platform's serving setup (shared with ``crossfed.client.commands.foldin``)."""
    p.add_argument("--interactions", required=True, help="the interactions file the platform trained on")
    p.add_argument("--user-features", help="the platform's user features file, optional")
    p.add_argument("--catalog", help="the coordinator's catalog file (default: config key 'catalog' of the run)")
    p.add_argument("--global-model", required=True,
                   help=f"run folder, {Checkpoint.FILE_NAME} or {FinalModel.FILE_NAME}")
    p.add_argument("--state-dir", required=True, help=f"the platform's state directory ({PlatformState.FILE_NAME})")
    p.add_argument("--serve-model", choices=("global", "fine-tuned"), help="override config key 'serve-model'")
    p.add_argument("--finetune-epochs", type=int, help="override config key 'finetune-epochs'")
    p.add_argument("--foldin-steps", type=int, help="override config key 'foldin-steps'")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def open_service(args: argparse.Namespace) -> RecommendationService:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    overrides = {key.replace("_", "-"): getattr(args, key)
                 for key in ("serve_model", "finetune_epochs", "foldin_steps") if getattr(args, key) is not None}
    catalog_path = args.catalog
    parameters = load_global_parameters(args.global_model)
    if catalog_path is None:
        catalog_path = str(parameters.config.get("catalog", "")) or None
        if catalog_path is None:
            raise ServingError("name the coordinator's catalog with --catalog (the run's config has no 'catalog')")
    catalog = load_catalog(catalog_path, str(parameters.config.get("catalog-version", "")))
    platform = load_operator_data(args.interactions, catalog, users=args.user_features)
    return RecommendationService.open(platform, args.global_model, args.state_dir, overrides)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m crossfed.client.commands.recommend", description=__doc__.split("\n\n")[0])
    add_platform_arguments(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", help="a user id (repeatable)")
    who.add_argument("--user-list", help="file with one user id a line")
    who.add_argument("--all", action="store_true", help="every user of the platform (needs --out)")
    p.add_argument("-k", "--top-k", type=int, help="how many items (default: config key 'top-k')")
    p.add_argument("--feature", action="append", default=[], metavar="NAME=VALUE",
                   help="a feature of a user without history (cold start), e.g. occupation=student")
    p.add_argument("--out", help="write to this .csv or .jsonl file instead of printing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.all and not args.out:
        p.error("--all needs --out FILE (.csv or .jsonl)")
    if args.top_k is not None and args.top_k < 1:
        p.error("--top-k must be at least 1")
    features = dict(f.split("=", 1) for f in args.feature if "=" in f)
    if len(features) != len(args.feature):
        p.error("--feature takes NAME=VALUE")
    try:
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
    except OPERATOR_ERRORS as error:
        print(error_line(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
