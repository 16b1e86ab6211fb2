"""What SecAgg+ costs: ``python benchmarks/secagg.py [--out FILE]``.

Runs the same short federation plain and with ``secagg = true`` for each platform count
and prints the mean round wall time (training, aggregation and validation; round 1 is left
out, as in the figures measured when it still carried Ray's start-up) and the bytes each
platform sends per training round, counted on the replies themselves by a client mod:
arrays, plus every ``bytes`` value SecAgg+ puts in its config records (public keys,
encrypted shares, masked vectors). The rows, with the date, commit and machine, are written
as JSON to ``--out`` (default under ``runs/``, which git ignores).

With ``--secagg-groups G`` a third run per platform count aggregates SecAgg+ in G disjoint groups
(``secagg-groups``, one SecAgg+ instance each) with the median of the group means, and
``min-platforms`` = platforms // G in every run. Each row also gives the CPU seconds of the run's
whole process tree (coordinator and Ray workers, start-up included) and its peak PSS.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from provenance import provenance

from crossfed.shared.config import RunConfig
from crossfed.shared.runtime.monitor import TreeMonitor
from crossfed.simulations.federated import run_federated


def byte_counting_mod(directory: str):
    """A client mod appending the size of every training reply to a file (it runs inside Ray workers)."""

    def count(message, context, call_next):
        reply = call_next(message, context)
        if message.metadata.message_type == "train":
            size = sum(len(array.data) for record in reply.content.array_records.values() for array in record.values())
            for record in reply.content.config_records.values():
                for value in record.values():
                    values = value if isinstance(value, list) else [value]
                    size += sum(len(v) for v in values if isinstance(v, bytes))
            platform = int(context.node_config["partition-id"])
            with open(Path(directory) / f"bytes-{os.getpid()}.jsonl", "a") as stream:
                stream.write(json.dumps({"platform": platform, "bytes": size}) + "\n")
        return reply

    return count


def measure(config: RunConfig, scratch: Path) -> dict[str, Any]:
    counts = scratch / "bytes"
    counts.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    with TreeMonitor(os.getpid()) as monitor:
        summary = run_federated(config, client_mods=[byte_counting_mod(str(counts))])
        cpu = monitor.cpu_seconds()
    elapsed = [entry["elapsed_seconds"] for entry in summary["history"]]
    round_seconds = [later - earlier for earlier, later in itertools.pairwise(elapsed)]
    sent = [json.loads(line)["bytes"] for path in counts.glob("*.jsonl") for line in path.read_text().splitlines()]
    rounds = summary["rounds_completed"]
    return {
        "platforms": config.data.num_platforms,
        "secagg": config.secure_aggregation.secagg,
        "secagg_groups": config.secure_aggregation.secagg_groups,
        "rounds": rounds,
        "cpu_seconds": round(cpu, 1),
        "peak_pss_mb": round(monitor.peak.pss_mb, 1) if monitor.peak else None,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "round_seconds": statistics.mean(round_seconds) if round_seconds else float("nan"),
        "bytes_per_platform_round": sum(sent) / (config.data.num_platforms * rounds),
        "sampled_hr": summary["metrics"]["sampled"]["hr@10"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/secagg.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--platforms", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-users", type=int, default=0, help="subsample users (0 = all) for a quick check")
    parser.add_argument("--secagg-groups", type=int, default=1, help="G > 1: also SecAgg+ in G groups with a median")
    parser.add_argument("--out", default="runs/benchmarks/secagg.json", help="JSON file of the results")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="crossfed-bench-secagg-") as scratch:
        for platforms in args.platforms:
            grouped = args.secagg_groups > 1
            variants = [(False, 1), (True, 1), *([(True, args.secagg_groups)] if grouped else [])]
            for secagg, groups in variants:
                label = f"SecAgg+ {groups} groups" if groups > 1 else ("SecAgg+" if secagg else "plain")
                run_dir = Path(scratch) / f"{platforms}p-{'secagg' if secagg else 'plain'}-{groups}"
                config = RunConfig.from_mapping(
                    {
                        "data-dir": args.data_dir,
                        "run-dir": str(run_dir / "run"),
                        "num-platforms": platforms,
                        "partition": "iid",
                        "num-server-rounds": args.rounds,
                        "secagg": secagg,
                        "min-platforms": platforms // args.secagg_groups if grouped else min(2, platforms),
                        "max-users": args.max_users,
                        "secagg-groups": groups,
                        "aggregation": "median" if groups > 1 else "mean",
                    }
                )
                results.append(measure(config, run_dir))
                row = results[-1]
                print(
                    f"{platforms:3d} platforms  {label:<18}  "
                    f"round {row['round_seconds']:6.2f} s  sent {row['bytes_per_platform_round'] / 1e6:6.2f} MB "
                    f"per platform per round  HR@10 {row['sampled_hr']:.3f}  run CPU {row['cpu_seconds']:.1f} s  "
                    f"peak PSS {row['peak_pss_mb']} MB  load {row['load_average'][0]} / {row['load_average'][1]}",
                    flush=True,
                )
    for platforms in args.platforms:
        plain, secure, *grouped_rows = (r for r in results if r["platforms"] == platforms)
        print(
            f"{platforms:3d} platforms: SecAgg+ / plain round time = "
            f"{secure['round_seconds'] / plain['round_seconds']:.2f}x, "
            f"bytes = {secure['bytes_per_platform_round'] / plain['bytes_per_platform_round']:.2f}x"
        )
        for row in grouped_rows:
            print(
                f"{platforms:3d} platforms: SecAgg+ in {row['secagg_groups']} groups / SecAgg+ round time = "
                f"{row['round_seconds'] / secure['round_seconds']:.2f}x, run CPU = "
                f"{row['cpu_seconds'] / secure['cpu_seconds']:.2f}x, bytes = "
                f"{row['bytes_per_platform_round'] / secure['bytes_per_platform_round']:.2f}x"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"provenance": provenance(), "rows": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
