"""Serving latency: top-10 with explanations for one user over MovieLens' 1,682-item catalog.

``python benchmarks/latency.py [--requests 2000] [--threads 1]``

MovieLens-100K is exported to the contract's CSV files, one platform is trained alone (one
epoch: latency does not depend on how well it is trained), and the service answers one
request at a time for random users, as a web backend would. Prints p50 / p95 / p99 per
request in wall-clock time and in CPU time of the serving thread (on a shared machine the wall-clock
tail is mostly waiting for a core), and the cost of folding one user in. Target: under 10 ms.
It writes nothing: the figures are printed, headed by the date, commit and machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from provenance import markdown, provenance

from crossfed.client.serving.service import RecommendationService
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.platform_files import load_operator_data
from crossfed.simulations.operator_demo import demo_config, export_movielens, train_platform


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return (
        f"p50 {np.percentile(ms, 50):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms, "
        f"p99 {np.percentile(ms, 99):.2f} ms, mean {statistics.fmean(ms):.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/latency.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("CROSSFED_DATA_DIR"))
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: one request per core)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="crossfed-latency-") as root:
        work = Path(root)
        exported = export_movielens(args.data_dir, work / "data")
        catalog = load_catalog(exported.catalog)
        platform = load_operator_data(exported.interactions, catalog, users=exported.users)
        train_platform(platform, demo_config(catalog), work / "run", work / "state", epochs=1)
        started = time.perf_counter()
        service = RecommendationService.open(platform, work / "run", work / "state")
        opened = time.perf_counter() - started
        rng = np.random.default_rng(args.seed)
        users = rng.choice(platform.user_ids, size=args.requests)
        for user in users[:50]:  # warm-up
            service.recommend(user, 10)
        latencies, cpu = [], []
        for user in users:
            t0, c0 = time.perf_counter(), time.thread_time()
            recommendations = service.recommend(user, 10)
            latencies.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            assert len(recommendations) == 10
        folds = []
        for user in users[:200]:
            history = platform.item_codes(service.history(user))
            t0 = time.perf_counter()
            service.fold_in({f"new-{user}": history}, save=False)
            folds.append(time.perf_counter() - t0)
    print(markdown(provenance()))
    print(
        f"catalog {len(catalog)} items, {len(platform.user_ids)} users, torch threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"service start-up (item vectors, histories): {opened * 1000:.0f} ms")
    print(f"top-10 with explanations, one user per request, {args.requests} requests: {percentiles(latencies)}")
    print(
        f"  the same requests in CPU time of the serving thread (what waiting for a core does not inflate): "
        f"{percentiles(cpu)}"
    )
    print(f"fold-in of one user ({service.config.serving.foldin_steps} steps), 200 users: {percentiles(folds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
