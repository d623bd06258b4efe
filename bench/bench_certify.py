"""Benchmark: CERTIFY throughput on the default model against the forward-pass floor.

Workload: ``--images`` test images of the digits dataset, the default profile's standard model (trained on
first use and cached, as the book does), Cohen et al.'s CERTIFY with n0 = 100 and n = 10,000 at batch size
10,000. Measured: images per second of ``Smooth.certify`` one image at a time (as the Fig. 4 chapter runs
it, each image with its own generator) and of ``Smooth.certify_batch`` on all images at once, against the
floor of the same number (n0 + n per image) of raw forward passes at the same batch size on a pre-built
batch. Best of ``--repeats``, interleaved.

Run as ``.venv/bin/python bench/bench_certify.py [--images 20 --n 10000 --n0 100 --repeats 5 --threads 2]``.
"""

from __future__ import annotations

import argparse
import os

import torch
from bench_vote import best_times

from rs_repro import data, seeds
from rs_repro.models import trained_model
from rs_repro.smoothing import Smooth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="digits test images certified")
    parser.add_argument("--n", type=int, default=10_000, help="CERTIFY estimation samples")
    parser.add_argument("--n0", type=int, default=100, help="CERTIFY selection samples")
    parser.add_argument("--batch-size", type=int, default=10_000, help="largest batch per forward pass")
    parser.add_argument("--sigma", type=float, default=0.35, help="noise level (the default book's lower one)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images, model and noise")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, info = trained_model("digits", "standard", seed=args.seed, progress=False)
    test = data.load_dataset("digits", "test", n=args.images, seed=args.seed)
    smooth = Smooth(model, 10, args.sigma, seed=args.seed)
    per_image = args.n0 + args.n
    prebuilt = test.x[:1].expand(args.batch_size, -1, -1, -1).contiguous()
    prebuilt += args.sigma * torch.randn(prebuilt.shape, generator=torch.Generator().manual_seed(args.seed))

    def floor() -> None:
        with torch.inference_mode():
            for _ in range(args.images):
                for total in (args.n0, args.n):
                    for start in range(0, total, args.batch_size):
                        model(prebuilt[:min(args.batch_size, total - start)])

    def certify_each() -> None:
        for i in range(args.images):
            smooth.certify(test.x[i], args.n0, args.n, 0.001, args.batch_size,
                           generator=seeds.generator(args.seed, "certify", i))

    def certify_all() -> None:
        smooth.certify_batch(test.x, args.n0, args.n, 0.001, args.batch_size)

    results = best_times({"raw forward passes (floor)": floor, "Smooth.certify, image by image": certify_each,
                          "Smooth.certify_batch, all images": certify_all}, args.repeats, lambda: None)
    base = results["raw forward passes (floor)"]
    print(f"CERTIFY n0={args.n0}, n={args.n:,} ({per_image:,} forward passes per image), {args.images} digits "
          f"images, sigma={args.sigma}, batch size {args.batch_size:,}, {args.threads} threads, best of "
          f"{args.repeats}; model {info['key']} (clean accuracy {info['clean_accuracy']:.3f})")
    print()
    print("| measurement | seconds | images/s | ratio to floor |")
    print("|---|---:|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {args.images / seconds:.1f} | {seconds / base:.3f} |")
    print()
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
