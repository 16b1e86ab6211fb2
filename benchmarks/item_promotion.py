"""Item promotion: can one hostile platform push an unpopular item into everyone's top-10?

In the spirit of FedRecAttack (Rong et al., 2022): a platform that takes part honestly
in every other respect replaces its training update with one that moves a target item
towards the most popular items - its item-id embedding row towards theirs, its item
bias up - amplified so the average does not dilute it (model replacement). When the
federation has agreed an update bound (``max-update-norm``), the attacker spends its
whole allowed norm on the target, so that the coordinator's norm check passes.

Measured: the target's exposure ER@10 - the fraction of honest platforms' users whose
top-10 over the full catalog (items they have not interacted with) contains the target -
and honest test HR@10, with no defence, with norm bounding, with coordinate-wise
median and with trimmed mean, for 1 malicious platform of 5 and of 20.

With ``--secagg`` every run aggregates with SecAgg+: the coordinator sees only the sum, so it
can neither check a norm nor take a median of the updates. The hostile
platform then replaces its update inside the ClientApp, before Flower's SecAgg+ mod quantises
and masks it (the stock mod, unchanged), and ignores the ``max-update-norm`` that every honest
platform enforces on itself (``crossfed.client.bound``): its own code is its operator's to change.
With ``--secagg-groups G`` (G > 1) median and trimmed mean run too, over the means of G disjoint
groups, each its own SecAgg+ instance (``secagg-groups``); every run then takes
``min-platforms`` = platforms // G, the largest group floor the platforms accept. Each row also
gives the cost of its run: mean round seconds (rounds 2 on; round 1 carries Ray's start-up), CPU
seconds of the whole process tree (coordinator and Ray workers) and its peak PSS.

    python benchmarks/item_promotion.py [--secagg [--secagg-groups G]] [--partition P] [--run-dir DIR] [--out STEM]

The federations' run folders go under ``--run-dir``; the figures go to ``STEM.json`` and
``STEM.md`` (default under ``runs/``, which git ignores), headed by the date, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Message, MessageType
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from provenance import markdown, provenance

from crossfed.client.local_metrics import LOCAL_METRICS_FILE, read_locally
from crossfed.shared.config import RunConfig
from crossfed.shared.data.datasets import load_dataset, load_platforms
from crossfed.shared.evaluation.results import platform_dir
from crossfed.shared.model.sharing import load_shared_arrays, update_norm
from crossfed.shared.protocol.keys import ARRAYS_RECORD, LEGACY_PARAMETERS_RECORD, SHARED_NAMES
from crossfed.shared.protocol.records import from_array_record, to_array_record
from crossfed.shared.runtime.monitor import TreeMonitor
from crossfed.shared.storage.checkpoint import FinalModel
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.shared.trainer import PlatformTrainer
from crossfed.simulations.federated import run_federated

ITEM_IDS = "shared.item_tower.ids.weight"
ITEM_BIAS = "shared.item_bias.weight"

#: Defence -> settings. ``norm-bound`` takes its bound from the honest run (see :func:`agreed_bound`).
DEFENCES: dict[str, dict[str, Any]] = {
    "none": {"aggregation": "mean"},
    "norm-bound": {"aggregation": "mean"},
    "median": {"aggregation": "median"},
    # 0.25, not 0.2: Flower cuts int(fraction * answering) per tail, and 0.2 of 4 cuts nothing.
    "trimmed-mean": {"aggregation": "trimmed-mean", "trim_fraction": 0.25},
}


#: Under SecAgg+ a norm bound holds only where a platform's own code enforces it.
SELF_ENFORCED = " (self-enforced; the attacker ignores it)"


def pick_target(config: RunConfig) -> int:
    """An unpopular item: among those with 1-3 interactions in the whole dataset, one fixed by seed."""
    dataset = load_dataset(config.data.dataset, config.data.data_dir)
    counts = np.bincount(dataset.items, minlength=dataset.num_items)
    candidates = np.flatnonzero((counts >= 1) & (counts <= 3))
    return int(np.random.default_rng(config.experiment.seed).choice(candidates))


def poisoned(
    global_arrays: dict[str, np.ndarray],
    trained: dict[str, np.ndarray],
    target: int,
    amplification: float,
    bound: float,
) -> dict[str, np.ndarray]:
    """The attacker's reply: its honest update plus an amplified push of ``target`` (or, under a bound, only the push).

    The push moves the target's id embedding to the mean of the 10 items with the
    largest bias (a popularity proxy anyone holding the global model can read) and adds
    to its bias, both scaled by ``amplification`` so that averaging over the platforms
    leaves the whole push in the aggregate.
    """
    popular = np.argsort(global_arrays[ITEM_BIAS][:, 0])[-10:]
    push = {name: np.zeros_like(value, dtype=np.float64) for name, value in global_arrays.items()}
    push[ITEM_IDS][target] = global_arrays[ITEM_IDS][popular].mean(axis=0) * 2 - global_arrays[ITEM_IDS][target]
    push[ITEM_BIAS][target] = 2.0
    if bound > 0:  # all of the allowed norm on the target: passes the coordinator's check
        norm = update_norm(push)
        scale = 0.999 * bound / norm
        return {
            name: (global_arrays[name] + push[name] * scale).astype(global_arrays[name].dtype) for name in global_arrays
        }
    return {
        name: (trained[name] + push[name] * amplification).astype(global_arrays[name].dtype) for name in global_arrays
    }


def promotion_mod(malicious: set[int], target: int, amplification: float, bound: float):
    """A client mod that turns the listed platforms hostile: their training replies are replaced."""

    def mod(message: Message, context, call_next) -> Message:
        reply = call_next(message, context)
        if (
            message.metadata.message_type != MessageType.TRAIN
            or int(context.node_config["partition-id"]) not in malicious
            or reply.has_error()
            or ARRAYS_RECORD not in reply.content
        ):
            return reply
        global_arrays = from_array_record(message.content[ARRAYS_RECORD])
        trained = from_array_record(reply.content[ARRAYS_RECORD])
        reply.content[ARRAYS_RECORD] = to_array_record(poisoned(global_arrays, trained, target, amplification, bound))
        return reply

    return mod


def _unmasked_update(message: Message, reply: Message) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], FitRes]:
    """Inside SecAgg+: the global arrays of a training request and the update (trained - global) of its reply."""
    instructions = compat.recorddict_to_fitins(message.content, keep_input=True)
    names = str(instructions.config[SHARED_NAMES]).split(",")
    global_arrays = dict(zip(names, parameters_to_ndarrays(instructions.parameters), strict=True))
    result = compat.recorddict_to_fitres(reply.content, keep_input=True)
    return global_arrays, dict(zip(names, parameters_to_ndarrays(result.parameters), strict=True)), result


def _is_secure_training(message: Message, reply: Message) -> bool:
    return (
        message.metadata.message_type == MessageType.TRAIN
        and LEGACY_PARAMETERS_RECORD in message.content.array_records
        and not reply.has_error()
    )


def secure_promotion_mod(malicious: set[int], target: int, amplification: float):
    """Inside SecAgg+ (an inner mod): the listed platforms replace their update before it is masked."""

    def mod(message: Message, context, call_next) -> Message:
        reply = call_next(message, context)
        if not _is_secure_training(message, reply) or int(context.node_config["partition-id"]) not in malicious:
            return reply
        global_arrays, update, result = _unmasked_update(message, reply)
        trained = {name: global_arrays[name] + update[name] for name in global_arrays}
        attack = poisoned(global_arrays, trained, target, amplification, bound=0.0)
        names = list(global_arrays)
        delta = [(attack[name] - global_arrays[name]).astype(global_arrays[name].dtype) for name in names]
        replaced = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(delta), result.num_examples, result.metrics)
        reply.content = compat.fitres_to_recorddict(replaced, keep_input=True)
        return reply

    return mod


def secure_norm_recorder(directory: str):
    """Inside SecAgg+ (an inner mod): each honest update's L2 norm, as :func:`norm_recorder` outside it."""

    def mod(message: Message, context, call_next) -> Message:
        reply = call_next(message, context)
        if _is_secure_training(message, reply):
            _, update, _ = _unmasked_update(message, reply)
            norm = float(np.sqrt(sum(float(np.sum(np.square(value, dtype=np.float64))) for value in update.values())))
            with open(Path(directory) / f"norms-{os.getpid()}.txt", "a") as stream:
                stream.write(f"{norm}\n")
        return reply

    return mod


def norm_recorder(directory: str):
    """A client mod noting each honest training update's L2 norm (to agree a bound from honest behaviour)."""

    def mod(message: Message, context, call_next) -> Message:
        reply = call_next(message, context)
        trained = message.metadata.message_type == MessageType.TRAIN and not reply.has_error()
        if trained and ARRAYS_RECORD in reply.content:
            norm = update_norm(
                from_array_record(reply.content[ARRAYS_RECORD]), from_array_record(message.content[ARRAYS_RECORD])
            )
            with open(Path(directory) / f"norms-{os.getpid()}.txt", "a") as stream:
                stream.write(f"{norm}\n")
        return reply

    return mod


@torch.no_grad()
def exposure(config: RunConfig, target: int, honest: list[int], k: int = 10) -> dict[str, float]:
    """ER@k of ``target`` over honest platforms' users, with the final global model and each user tower."""
    final = FinalModel.load(config.experiment.run_dir)
    if final is None:
        raise FileNotFoundError(
            f"{config.experiment.run_dir}: no {FinalModel.FILE_NAME}; the attacked run did not finish"
        )
    global_arrays = final.arrays
    platforms = load_platforms(config)
    exposed = users = 0
    for platform in honest:
        trainer = PlatformTrainer(platforms[platform], config)
        state = PlatformState.load_for_users(
            platform_dir(config.experiment.run_dir, platform), platforms[platform].user_ids
        )
        if state is not None:
            trainer.restore(state)
        load_shared_arrays(trainer.model, global_arrays)
        trainer.model.eval()
        history = trainer.split.history("test")
        everyone = np.arange(trainer.data.num_users)
        scores = trainer.model.score(torch.as_tensor(everyone), None).numpy()
        seen = np.zeros_like(scores, dtype=bool)
        seen[history.users, history.items] = True
        eligible = ~seen[:, target]
        scores[seen] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        exposed += int(np.sum((top == target).any(axis=1) & eligible))
        users += int(np.sum(eligible))
    return {"er@10": exposed / users if users else float("nan"), "users": users}


def honest_hr(summary: dict[str, Any], honest: list[int]) -> float:
    """Sampled test HR@10 pooled over the honest platforms' users (the attacker's own users left out)."""
    rows = [p for p in summary["per_platform"] if p["platform"] in honest]
    return sum(p["metrics"]["sampled"]["hr@10"] * p["users"] for p in rows) / sum(p["users"] for p in rows)


def missing_updates(config: RunConfig) -> int:
    """Training rounds some platform did not contribute (failures), from the platforms' own logs."""
    trained = 0
    for platform in range(config.data.num_platforms):
        path = platform_dir(config.experiment.run_dir, platform) / LOCAL_METRICS_FILE
        trained += sum(1 for entry in read_locally(path, platform) if entry["stage"] == "train")
    return config.data.num_platforms * config.federation.num_server_rounds - trained


def agreed_bound(directory: Path, quantile: float) -> float:
    norms = [float(line) for path in directory.glob("norms-*.txt") for line in path.read_text().split()]
    return float(np.quantile(norms, quantile))


def run_case(
    base: RunConfig, out: Path, name: str, mods: list, inner_mods: list | None = None, **changes: Any
) -> tuple[RunConfig, dict[str, Any]]:
    """One federation; its summary gains ``cost``: round seconds, CPU seconds and peak PSS of the process tree."""
    config = base.replace(run_dir=str(out / name), **changes)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with TreeMonitor(os.getpid()) as monitor:
        summary = run_federated(config, client_mods=mods, inner_client_mods=inner_mods or [])
        cpu = monitor.cpu_seconds()
    elapsed = [entry["elapsed_seconds"] for entry in summary["history"]]
    rounds = np.diff(elapsed) if len(elapsed) > 1 else np.asarray(elapsed)
    summary["cost"] = {
        "round_seconds": round(float(np.mean(rounds)), 2),
        "cpu_seconds": round(cpu, 1),
        "peak_pss_mb": round(monitor.peak.pss_mb, 1) if monitor.peak else None,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    logging.getLogger(__name__).info("%s done in %.0f s: %s", name, time.perf_counter() - started, summary["cost"])
    return config, summary


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.run_dir)
    rows: list[dict[str, Any]] = []
    grouped = args.secagg and args.secagg_groups > 1
    for platforms in args.platforms:
        base = RunConfig().replace(
            data_dir=args.data_dir,
            seed=args.seed,
            num_platforms=platforms,
            max_users=args.max_users,
            partition=args.partition,
            num_server_rounds=args.rounds,
            embedding_dim=16,
            mlp_layers="32,16",
            min_platforms=platforms // args.secagg_groups if grouped else max(2, platforms // 2),
            secagg=args.secagg,
        )
        target, malicious = pick_target(base), {platforms - 1}
        honest = [p for p in range(platforms) if p not in malicious]
        prefix = f"{platforms}p{'-secagg' if args.secagg else ''}"
        norms = out / f"norms-{prefix}"
        norms.mkdir(parents=True, exist_ok=True)
        if args.secagg:
            config, summary = run_case(base, out, f"{prefix}-honest", [], [secure_norm_recorder(str(norms))])
        else:
            config, summary = run_case(base, out, f"{prefix}-honest", [norm_recorder(str(norms))])
        bound = agreed_bound(norms, args.bound_quantile)
        rows.append(
            {
                "platforms": platforms,
                "malicious": 0,
                "defence": "none (no attacker)",
                "groups": 1,
                "bound": None,
                "hr@10": honest_hr(summary, honest),
                **exposure(config, target, honest),
                "missing_updates": missing_updates(config),
                "target": target,
                "cost": summary["cost"],
            }
        )
        for defence, settings in DEFENCES.items():
            robust = settings["aggregation"] != "mean"
            if args.secagg and robust and not grouped:
                continue  # refused with one SecAgg+ instance: the coordinator has only the sum
            if grouped and defence == "norm-bound":
                continue  # under SecAgg+ the attacker ignores it (measured without groups)
            groups = args.secagg_groups if grouped and robust else 1
            case_bound = bound if defence == "norm-bound" else 0.0
            name = f"{prefix}-{defence}{f'-{groups}groups' if groups > 1 else ''}"
            if args.secagg:  # the attacker ignores the bound the honest platforms enforce on themselves
                inner = [secure_promotion_mod(malicious, target, amplification=float(platforms))]
                config, summary = run_case(
                    base, out, name, [], inner, max_update_norm=case_bound, secagg_groups=groups, **settings
                )
            else:
                mod = promotion_mod(malicious, target, amplification=float(platforms), bound=case_bound)
                config, summary = run_case(base, out, name, [mod], max_update_norm=case_bound, **settings)
            rows.append(
                {
                    "platforms": platforms,
                    "malicious": 1,
                    "defence": f"{defence}{SELF_ENFORCED if args.secagg and case_bound else ''}",
                    "groups": groups,
                    "bound": round(case_bound, 4) if case_bound else None,
                    "hr@10": honest_hr(summary, honest),
                    **exposure(config, target, honest),
                    "missing_updates": missing_updates(config),
                    "target": target,
                    "cost": summary["cost"],
                    **({"secagg_groups": [e.get("secagg_groups") for e in summary["history"]]} if groups > 1 else {}),
                }
            )
    return {
        "secagg": args.secagg,
        "secagg_groups": args.secagg_groups,
        "partition": args.partition,
        "rounds": args.rounds,
        "max_users": args.max_users,
        "seed": args.seed,
        "bound_quantile": args.bound_quantile,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/item_promotion.py", description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", type=int, nargs="+", default=[5, 20])
    parser.add_argument(
        "--secagg", action="store_true", help="every run with SecAgg+ (median and trimmed mean need --secagg-groups)"
    )
    parser.add_argument(
        "--secagg-groups",
        type=int,
        default=1,
        help="with --secagg: median and trimmed mean over this many SecAgg+ groups (1: skip them)",
    )
    parser.add_argument("--partition", default="iid", help="how users are split over the platforms")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-users", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bound-quantile",
        type=float,
        default=0.5,
        help="max-update-norm = this quantile of the honest run's update norms",
    )
    parser.add_argument("--data-dir", default=os.environ.get("CROSSFED_DATA_DIR", ""))
    parser.add_argument("--run-dir", default="runs/item-promotion", help="folder of the federations' run folders")
    parser.add_argument("--out", default="runs/item-promotion/item_promotion", help="stem of the .json/.md results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("flwr", "crossfed.server.screening"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    started = time.perf_counter()
    result = benchmark(args)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    block = provenance()
    lines = [
        (
            f"# Item promotion (1 hostile platform){', SecAgg+' if args.secagg else ''}, {args.rounds} rounds, "
            f"{args.partition} partition, max-users {args.max_users}, seed {args.seed}"
        ),
        "",
        markdown(block),
        "",
        "| platforms | malicious | defence | SecAgg+ groups | max-update-norm | target ER@10 (honest users) "
        "| honest users' test HR@10 | round s | CPU s | peak PSS MB | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['platforms']} | {r['malicious']} | {r['defence']} | {r['groups'] if args.secagg else '-'} "
        f"| {r['bound'] or '-'} | {r['er@10']:.4f} ({r['users']} users) | {r['hr@10']:.4f} "
        f"| {r['cost']['round_seconds']} | {r['cost']['cpu_seconds']} | {r['cost']['peak_pss_mb']} "
        f"| {' / '.join(str(value) for value in r['cost']['load_average'])} |"
        for r in result["rows"]
    ]
    lines += [
        "",
        (
            f"Updates missing (platform failures) per run: {[r['missing_updates'] for r in result['rows']]}; "
            f"wall time {result['wall_seconds']} s."
        ),
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"provenance": block, **result}, indent=1) + "\n")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
