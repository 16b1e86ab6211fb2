"""What an audit costs against the same training run: wall and CPU seconds of both process trees.

``python benchmarks/audit_cost.py --out DIR -- RUN FLAGS``

Runs ``crossfed run RUN FLAGS`` and then ``crossfed audit RUN FLAGS --canaries M ...`` (the
audit's own flags from ``--audit-flags``), one after the other, each as a child process whose
whole tree (driver, Ray's GCS and raylet, the workers) is measured from ``/proc`` by
:class:`TreeMonitor`. CPU seconds survive a shared machine better than wall seconds; both are
printed, with the load average before and after each, and written to ``DIR/audit_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from provenance import provenance

from crossfed.shared.runtime.monitor import TreeMonitor

CROSSFED = str(Path(sys.executable).with_name("crossfed"))


def measured(command: list[str], log: Path) -> dict[str, Any]:
    """Wall and CPU seconds of ``command``'s process tree, with the load average around it."""
    before = os.getloadavg()
    started = time.perf_counter()
    with log.open("w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        with TreeMonitor(child.pid) as monitor:
            while child.poll() is None:
                cpu = monitor.cpu_seconds()
                time.sleep(0.5)
            cpu = max(cpu, monitor.cpu_seconds())
    if child.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({child.returncode}); see {log}")
    return {
        "command": shlex.join(command),
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": cpu,
        "load_before": list(before),
        "load_after": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--audit-flags", default="--canaries 1000 --canary-items 8", help="the audit's own flags")
    parser.add_argument("flags", nargs=argparse.REMAINDER, help="-- then the run flags both share")
    args = parser.parse_args()
    flags = [f for f in args.flags if f != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    run = measured([CROSSFED, "run", *flags, "--out", str(args.out / "run")], args.out / "run.log")
    audit = measured(
        [CROSSFED, "audit", *flags, *shlex.split(args.audit_flags), "--out", str(args.out / "audit")],
        args.out / "audit.log",
    )
    result = {
        "provenance": provenance(),
        "run": run,
        "audit": audit,
        "cpu_ratio": audit["cpu_seconds"] / run["cpu_seconds"],
        "wall_ratio": audit["wall_seconds"] / run["wall_seconds"],
    }
    (args.out / "audit_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("run", "audit"):
        figures = result[name]
        print(
            f"{name:6s} wall {figures['wall_seconds']:8.1f} s  CPU {figures['cpu_seconds']:8.1f} s  "
            f"load {figures['load_before'][0]:.1f} -> {figures['load_after'][0]:.1f}"
        )
    print(f"audit / run: CPU {result['cpu_ratio']:.2f} x, wall {result['wall_ratio']:.2f} x")


if __name__ == "__main__":
    main()
