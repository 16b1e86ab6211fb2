"""``crossfed loopback --platforms 3 --out DIR``: the whole deployment on 127.0.0.1, one run to the end.

SuperLink and one SuperNode per platform as separate processes, with TLS and SuperNode
authentication (:mod:`crossfed.simulations.loopback`); ``--kill-after-round R`` restarts one
SuperNode after round R, ``--resume-after-round R`` the ServerApp. Prints each round's wall
time; ``summary.json`` in ``--out`` carries a ``deployment`` block. Exit status: 0 the run
completed, 1 the deployment or the run failed, 2 a wrong command line or config key.
"""

from __future__ import annotations

import argparse
import logging
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossfed.shared.cli import Command
from crossfed.shared.config import PRIVACY_UNITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platforms", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the run folder (summary.json, checkpoint, "
        "platforms/*/ state, deployment/ certs, keys and logs); must be empty",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--secagg", action="store_true", help="aggregate with SecAgg+ (secagg = true)")
    parser.add_argument("--privacy-unit", default="none", choices=PRIVACY_UNITS)
    parser.add_argument("--max-users", type=int, default=150, help="0 = every user")
    parser.add_argument("--data-dir", default="", help="MovieLens-100K folder (default: $CROSSFED_DATA_DIR or cache)")
    parser.add_argument("--kill-after-round", type=int, default=0, help="restart one SuperNode after this round")
    parser.add_argument("--kill-platform", type=int, default=None, help="which one (default: the last)")
    parser.add_argument("--restart-delay", type=float, default=10.0)
    parser.add_argument(
        "--resume-after-round",
        type=int,
        default=0,
        help="stop the ServerApp after this round and resume the run from its checkpoint",
    )
    parser.add_argument(
        "--check-unregistered",
        action="store_true",
        help="also show that a SuperNode with an unregistered key is refused",
    )
    parser.add_argument(
        "--check-foreign-bundle",
        action="store_true",
        help="after the run, show that every platform refuses an app bundle its operator did not vet",
    )
    parser.add_argument(
        "--check-control-api",
        action="store_true",
        help="after the run, show that a platform operator cannot register nodes or submit runs",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other run-config key, e.g. --set embedding-dim=8 --set 'mlp-layers=\"16,8\"'",
    )
    parser.add_argument("--timeout", type=float, default=1800.0)


def config_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` pairs, values in TOML syntax (strings quoted or bare)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw
    return values


def run(args: argparse.Namespace) -> int:
    from crossfed.simulations.loopback import LoopbackSettings, run_loopback

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = LoopbackSettings(
        out=args.out,
        platforms=args.platforms,
        rounds=args.rounds,
        secagg=args.secagg,
        privacy_unit=args.privacy_unit,
        max_users=args.max_users,
        data_dir=args.data_dir,
        kill_after_round=args.kill_after_round,
        kill_platform=args.kill_platform,
        restart_delay=args.restart_delay,
        resume_after_round=args.resume_after_round,
        check_unregistered=args.check_unregistered,
        check_foreign_bundle=args.check_foreign_bundle,
        check_control_api=args.check_control_api,
        overrides=config_overrides(args.set),
        timeout=args.timeout,
    )
    summary = run_loopback(settings)
    facts = summary["deployment"]
    print(
        f"run {facts['run_id']}: {summary['rounds_completed']} round(s) completed, "
        f"secagg = {str(settings.secagg).lower()}, summary in {args.out / 'summary.json'}"
    )
    print("round  wall seconds")
    for entry, seconds in zip(summary["history"], facts["round_seconds"]):
        print(f"{entry['round']:>5}  {seconds:>12.1f}")
    for restart in facts["restarts"]:
        print(
            f"platform {restart['platform']} restarted after round {restart['after_round']}: "
            f"state at stop {restart['state_at_stop']}, at the end {facts['platform_state'][str(restart['platform'])]}"
        )
    for resume in facts["serverapp_restarts"]:
        print(
            f"ServerApp stopped after round {resume['after_round']} (run {resume['stopped_run']}); "
            f"run {resume['resumed_run']} resumed after round {resume['resumed_from_round']}"
        )
    if "unregistered_node" in facts:
        print(f"unregistered SuperNode refused: {facts['unregistered_node']['refused']}")
    if "foreign_bundle" in facts:
        foreign = facts["foreign_bundle"]
        print(f"unvetted bundle {foreign['digest'][:12]} refused by platforms {foreign['refused_by']}")
    if "control_api_from_platform" in facts:
        attempts = facts["control_api_from_platform"]
        accepted = [name for name, answer in attempts.items() if isinstance(answer, dict) and answer["accepted"]]
        print(f"Control API as a platform operator: accepted {accepted or 'nothing'}")
    if summary.get("metrics"):
        print(f"test HR@10 (sampled) {summary['metrics']['sampled']['hr@10']:.4f}")
    return 0


command = Command(
    "loopback",
    "deploy on 127.0.0.1 (SuperLink, SuperNodes, TLS, auth) and run the app to the end",
    "researcher",
    add_arguments,
    run,
    description=__doc__,
)
