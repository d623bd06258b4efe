"""Benchmark: throughput of the smoothed query oracle against the forward-pass floor.

Workload: 100 digits test images, the default standard model, ``--calls`` oracle calls each asking one query
per image (100 rows per call, as an attack's batched step does), at n = 1 and n = 10 micro-decisions per
query. The floor is the same number of base-model forward passes (100 * n per call) on a pre-built batch
of the same size. Target: at n = 10, at least half the floor's queries per second. Best of ``--repeats``.

Run as ``.venv/bin/python bench/bench_oracle.py [--images 100 --calls 50 --repeats 5 --threads 2]``.
"""

from __future__ import annotations

import argparse

import torch
from bench_vote import best_times

from rs_repro import data
from rs_repro.models import trained_model
from rs_repro.smoothing import Smooth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="images (rows per oracle call)")
    parser.add_argument("--calls", type=int, default=50, help="oracle calls per measurement")
    parser.add_argument("--sigma", type=float, default=0.35, help="smoothing noise")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, _ = trained_model("digits", "standard", seed=0, progress=False)
    test = data.load_dataset("digits", "test", n=args.images, seed=0)
    images = torch.arange(args.images)
    rows = test.x + 0.05 * torch.randn(test.x.shape, generator=torch.Generator().manual_seed(1))
    measurements, queries = {}, args.images * args.calls
    for n in (1, 10):
        oracle = Smooth(model, 10, args.sigma, seed=0).oracle(n, max_queries=10**9)
        prebuilt = rows.repeat_interleave(n, 0).contiguous()

        def floor(prebuilt: torch.Tensor = prebuilt) -> None:
            with torch.inference_mode():
                for _ in range(args.calls):
                    model(prebuilt)

        def ask(oracle=oracle) -> None:
            oracle.start(test.x, test.y)
            for _ in range(args.calls):
                oracle.is_adversarial(rows, images)

        measurements[f"forward passes, n={n} (floor)"] = floor
        measurements[f"Oracle.is_adversarial, n={n}"] = ask
    results = best_times(measurements, args.repeats, lambda: None)
    print(f"{args.images} images per call, {args.calls} calls, sigma={args.sigma}, {args.threads} threads, "
          f"best of {args.repeats}")
    print()
    print("| measurement | seconds | queries/s | ratio of queries/s to floor |")
    print("|---|---:|---:|---:|")
    for n in (1, 10):
        base = results[f"forward passes, n={n} (floor)"]
        for name in (f"forward passes, n={n} (floor)", f"Oracle.is_adversarial, n={n}"):
            print(f"| {name} | {results[name]:.4f} | {queries / results[name]:,.0f} | {base / results[name]:.3f} |")
    ratio = results["forward passes, n=10 (floor)"] / results["Oracle.is_adversarial, n=10"]
    print()
    print(f"oracle at n=10: {ratio:.2f} of the floor's queries per second (target >= 0.5)")


if __name__ == "__main__":
    main()
