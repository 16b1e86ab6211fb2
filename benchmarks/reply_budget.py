"""How close honest replies come to the gateway's reply bound (finding 11).

``python benchmarks/reply_budget.py --loopback DIR``

``DIR`` is the ``--out`` of a finished ``crossfed loopback``: its ``summary.json`` names the
bounds the loopback gave ``crossfed gateway`` (``4 × shared bytes + 1 MiB`` of the run's model)
and the gateway's log has one line per reply a platform finished (the bytes it pushed between
two instructions it received). Prints the main job's shared bytes and bound, the loopback's
bounds, the honest replies' bytes (smallest, largest, per platform) and the largest reply as a
fraction of the bound, and how many requests the gateway refused for their size (an honest run
has none). It writes nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from provenance import markdown, provenance

from crossfed.server.deploy.gateway import OVERSIZE
from crossfed.server.deploy.limits import Limits
from crossfed.server.federation import initial_arrays
from crossfed.shared.config import RunConfig

REPLY_LINE = re.compile(r"(?P<sender>\S+) pushed (?P<bytes>\d+) bytes into run (?P<run>\d+) for its previous reply")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loopback", type=Path, required=True, help="the --out folder of a finished crossfed loopback")
    args = parser.parse_args(argv)

    print(markdown(provenance()))
    shared = sum(int(value.nbytes) for value in initial_arrays(RunConfig.from_mapping({})).values())
    main_job = Limits.for_model(shared)
    print(f"main job (defaults): shared arrays {shared} bytes; reply bound {main_job.max_reply_bytes} bytes")

    summary = json.loads((args.loopback / "summary.json").read_text())
    limits = summary["deployment"]["gateway_limits"]
    print(f"loopback: {limits['max_request_bytes']} bytes a request, {limits['max_reply_bytes']} bytes a reply")

    log = (args.loopback / "deployment" / "logs" / "gateway.log").read_text()
    replies: dict[str, list[int]] = defaultdict(list)
    for match in REPLY_LINE.finditer(log):
        replies[match["sender"]].append(int(match["bytes"]))
    sizes = [size for per_sender in replies.values() for size in per_sender]
    refused = sum(1 for line in log.splitlines() if f" {OVERSIZE} " in f" {line} ")
    if not sizes:
        print("no finished reply in the gateway log")
        return 1
    print(
        f"honest replies: {len(sizes)} from {len(replies)} platforms; smallest {min(sizes)} bytes, "
        f"median {statistics.median(sizes):.0f}, largest {max(sizes)}"
    )
    for index, (sender, per_sender) in enumerate(sorted(replies.items())):
        print(f"  platform key {index} ({sender}): {per_sender}")
    print(f"largest reply / reply bound: {max(sizes) / limits['max_reply_bytes']:.3f}")
    print(f"requests refused for their size: {refused}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
