"""``crossfed synthetic-dataset OUT``: write a small generated dataset in the data contract.

A music service (listeners with a region and an age band, tracks with a genre, an artist and
a duration, play counts) that is not MovieLens: the manual's worked example for running
every mode on your own data (``crossfed run --dataset OUT``), rebuilt bit for bit from a seed.
"""

from __future__ import annotations

import argparse

from crossfed.shared.cli import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from crossfed.simulations.synthetic import FORMATS, SyntheticSpec

    default = SyntheticSpec()
    parser.add_argument("out", help="folder to write interactions, items and users into")
    parser.add_argument("--users", type=int, default=default.users)
    parser.add_argument("--items", type=int, default=default.items)
    parser.add_argument("--min-interactions", type=int, default=default.min_interactions)
    parser.add_argument("--max-interactions", type=int, default=default.max_interactions)
    parser.add_argument("--no-timestamps", action="store_true", help="leave out the timestamp column")
    parser.add_argument("--format", choices=FORMATS, default=default.file_format)
    parser.add_argument("--seed", type=int, default=default.seed)


def run(args: argparse.Namespace) -> int:
    from crossfed.shared.errors import UsageError
    from crossfed.simulations.synthetic import SyntheticSpec, write_music_dataset

    try:
        spec = SyntheticSpec(
            users=args.users,
            items=args.items,
            min_interactions=args.min_interactions,
            max_interactions=args.max_interactions,
            timestamps=not args.no_timestamps,
            file_format=args.format,
            seed=args.seed,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    for name, path in write_music_dataset(args.out, spec).items():
        print(f"{name}: {path}")
    return 0


command = Command(
    "synthetic-dataset",
    "write a small generated (non-MovieLens) dataset in the data contract",
    "researcher",
    add_arguments,
    run,
    description=__doc__,
)
