"""CPU time and peak memory of a running process tree, until its root exits.

``python benchmarks/tree_cpu.py PID [--every 60]``

Why: ``/usr/bin/time`` around ``crossfed run --mode federated`` counts the driver only - Ray's
workers, which do the training, are not children it waits for. This samples the whole tree
under ``PID`` (driver, Ray's GCS and raylet, every worker) from ``/proc`` every 2 s with
:class:`crossfed.shared.runtime.monitor.TreeMonitor`, which keeps each process's CPU time at
the last value seen, and prints the running total every ``--every`` seconds and the final
total when ``PID`` exits. A process's last 2 s before it exits may be missed.
"""

from __future__ import annotations

import argparse
import time

from crossfed.shared.runtime.monitor import TreeMonitor
from crossfed.shared.runtime.proc import state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pid", type=int, help="the root of the tree, e.g. the python process of crossfed run")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between progress lines")
    args = parser.parse_args()
    with TreeMonitor(args.pid, interval=2.0) as monitor:
        last = time.monotonic()
        while state(args.pid) not in (None, "Z"):
            time.sleep(2.0)
            if time.monotonic() - last >= args.every:
                last = time.monotonic()
                stamp = time.strftime("%H:%M:%S", time.gmtime())
                print(f"{stamp} cpu {monitor.cpu_seconds():.1f} peak {monitor.peak}", flush=True)
        print(f"final cpu {monitor.cpu_seconds():.1f} peak {monitor.peak}", flush=True)


if __name__ == "__main__":
    main()
