"""``crossfed audit``: one federated run with canaries, and the privacy it measurably delivers.

Takes every run flag of ``crossfed run`` (``--dataset``, ``--platforms``, ``--privacy-unit``,
``--epsilon``, ``--secagg``, ...), plus ``--canaries M`` (extra users, each trained on with
probability 1/2), ``--canary-kind`` (``own-items``: each canary rates new items nobody else
rates; ``random``: existing catalog items) and ``--out DIR``. Writes ``DIR/audit.json`` - the canaries, the ledger's
largest epsilon, the ceiling M canaries allow, and per adversary (``coordinator``, ``model``)
the epsilon lower bound at 95 % confidence, AUROC and TPR at 1 % FPR - beside the run's
``summary.json``, with ``canaries.json`` holding every canary and its scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfed.shared.cli import Command
from crossfed.shared.config import RunConfig
from crossfed.shared.errors import UsageError
from crossfed.simulations.audit.kinds import CANARY_KINDS, OWN_ITEMS
from crossfed.simulations.commands.run import add_config_flags

_OWN_FLAGS = {"canaries", "canary_items", "canary_kind", "out", "quiet", "run", "command", "options"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--canaries", type=int, default=200, metavar="M", help="number of canaries (default 200)")
    parser.add_argument(
        "--canary-items",
        dest="canary_items",
        type=int,
        default=8,
        metavar="K",
        help="items per canary, the two latest held out like every user's (default 8)",
    )
    parser.add_argument(
        "--canary-kind",
        dest="canary_kind",
        choices=CANARY_KINDS,
        default=OWN_ITEMS,
        help="own-items: each canary's training items are new items only it rates (default, detectable); "
        "random: catalog items drawn at random",
    )
    parser.add_argument("--out", required=True, help="audit folder: the run, its canaries and audit.json")
    parser.add_argument("--quiet", action="store_true", help="only the audit table")
    add_config_flags(parser)


def run(args: argparse.Namespace) -> int:
    from crossfed.simulations.audit.runner import run_audit
    from crossfed.simulations.runner import configure_logging

    configure_logging(args.quiet)
    overrides = {key: value for key, value in vars(args).items() if value is not None and key not in _OWN_FLAGS}
    config = RunConfig.from_mapping(overrides)
    if config.data.operator_data:
        raise UsageError("an audit adds canaries to a dataset: give --dataset, not --operator-data")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"audit folder {out} is not empty: give another --out")
    result = run_audit(config, args.canaries, args.canary_items, out, args.canary_kind)
    claimed = result["epsilon_claimed"]
    print(
        f"audit of {result['canaries']} {result['canary_kind']} canaries: claimed epsilon "
        f"{'none (non-private)' if claimed is None else f'{claimed:.3f}'}, ceiling {result['ceiling']:.2f}"
    )
    for name, figures in result["adversaries"].items():
        print(
            f"  {name:12s} epsilon >= {figures['epsilon_lower_bound']:.3f}  AUROC {figures['auroc']:.3f}  "
            f"TPR@1%FPR {figures['tpr_at_1pct_fpr']:.3f}"
        )
    print(f"results in {out / 'audit.json'}")
    return 0


command = Command(
    "audit",
    "measure privacy: a federated run with canaries and the epsilon lower bound it shows",
    "researcher",
    add_arguments,
    run,
    description=__doc__,
)
