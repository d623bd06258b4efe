"""Benchmark: cost of Smooth.counts (the Monte Carlo votes of g_{sigma,n}) against raw forward passes.

Workload: ``--images`` digit-sized inputs [1, 8, 8] (the scikit-learn digits of the default profile),
n = ``--n`` noisy copies each, through a small MLP (64 -> 256 -> 256 -> 10). The floor is the same number
of forward passes of the same model on a pre-built batch (inference mode, same threads), each chunk of
``--batch-size`` rows given to the model in slices of :data:`rs_repro.smoothing.CPU_FORWARD_ROWS` on a CPU
(as :meth:`~rs_repro.smoothing.Smooth.top_classes` does): what the votes would cost if noise, argmax and
counting were free. A row beside it gives each chunk to the model whole, the cost the slices avoid. A second floor adds the
Gaussian draw of the same number of values into a reused buffer: the least any smoothing with independent
noise can cost, since torch's CPU generator is single-threaded. Timings are best-of-repeats wall times,
interleaved so that load changes hit every row alike.

Run as ``.venv/bin/python bench/bench_vote.py [--n 10000 --images 64 --batch-size 10000 --repeats 10
--threads 2 --sigma 0.25 --device cpu]``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable

import torch
from torch import nn

from rs_repro.smoothing import CPU_FORWARD_ROWS, Smooth


def make_mlp(generator: torch.Generator, device: torch.device) -> nn.Module:
    """Flatten -> Linear(64,256) -> ReLU -> Linear(256,256) -> ReLU -> Linear(256,10), weights from ``generator``.

    The layers are built on the meta device, so the global RNG is neither used nor advanced; every
    parameter is then drawn from ``generator`` (He-scaled Gaussians, zero-mean small biases).
    """
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 256, device="meta"),
        nn.ReLU(),
        nn.Linear(256, 256, device="meta"),
        nn.ReLU(),
        nn.Linear(256, 10, device="meta"),
    ).to_empty(device=device)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                fan_in = layer.in_features
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.01)
    return model.eval()


def best_times(fns: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Best wall time of each function; the repeats are interleaved so that load changes hit all alike."""
    for fn in fns.values():  # warm-up (allocator, kernels, thread pool)
        fn()
    sync()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="noise draws per image")
    parser.add_argument("--images", type=int, default=64, help="number of [1, 8, 8] inputs")
    parser.add_argument("--batch-size", type=int, default=10_000, help="largest batch per forward pass")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--sigma", type=float, default=0.25, help="noise standard deviation")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, inputs and noise")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(args.seed)
    model = make_mlp(g, device)
    xs = torch.rand(args.images, 1, 8, 8, generator=g).to(device)
    smooth = Smooth(model, num_classes=10, sigma=args.sigma, seed=args.seed)
    total = args.images * args.n
    chunk = min(args.batch_size, total)

    # floor: the same chunks (count and sizes) of forward passes on a pre-built noisy batch
    sizes = [chunk] * (total // chunk) + ([total % chunk] if total % chunk else [])
    prebuilt = (xs[:1] + args.sigma * torch.randn(chunk, 1, 8, 8, generator=g).to(device)).contiguous()

    step = CPU_FORWARD_ROWS if device.type == "cpu" else chunk

    def floor() -> None:
        with torch.inference_mode():
            for rows in sizes:
                for part in prebuilt[:rows].split(step):
                    model(part)

    def whole_chunks() -> None:
        with torch.inference_mode():
            for rows in sizes:
                model(prebuilt[:rows])

    noise_buffer = torch.empty(chunk, 64, device=device)
    noise_gen = torch.Generator(device=device).manual_seed(args.seed)

    def noise_only() -> None:
        with torch.inference_mode():
            for rows in sizes:
                noise_buffer[:rows].normal_(0.0, args.sigma, generator=noise_gen)

    def counts() -> None:
        smooth.counts(xs, args.n, batch_size=args.batch_size)

    def noise_and_forward() -> None:
        with torch.inference_mode():
            for rows in sizes:
                noisy = noise_buffer[:rows].normal_(0.0, args.sigma, generator=noise_gen).add_(xs[0].view(1, -1))
                for part in noisy.view(rows, 1, 8, 8).split(step):
                    model(part)

    def vote() -> None:
        smooth.vote(xs, args.n, batch_size=args.batch_size)

    results = best_times(
        {
            "raw forward passes (floor)": floor,
            f"raw forward passes, {chunk:,} rows at once": whole_chunks,
            "noise draw + forward passes (floor with noise)": noise_and_forward,
            "Smooth.counts": counts,
            "Smooth.vote": vote,
            "noise draw alone (normal_)": noise_only,
        },
        args.repeats,
        sync,
    )
    base = results["raw forward passes (floor)"]
    with_noise = results["noise draw + forward passes (floor with noise)"]

    print(
        f"{args.images} images [1, 8, 8] x n = {args.n:,} = {total:,} samples, batch size {args.batch_size:,}, "
        f"{len(sizes)} chunks in slices of {step:,} rows, sigma = {args.sigma}, {args.threads} threads, device {device}, "
        f"best of {args.repeats}; torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print()
    print("| measurement | seconds | samples/s | ratio to floor | ratio to floor with noise |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.4f} | {total / seconds:,.0f} | {seconds / base:.3f} | {seconds / with_noise:.3f} |")
    print()
    counts_s = results["Smooth.counts"]
    print(f"overhead of Smooth.counts over the forward passes: {100 * (counts_s / base - 1):.1f}% (target <= 15%), "
          f"of which the Gaussian draw alone is {100 * results['noise draw alone (normal_)'] / base:.1f}%")
    print(f"overhead over the floor with noise: {100 * (counts_s / with_noise - 1):.1f}%")
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())} (others' jobs inflate all rows)")


if __name__ == "__main__":
    main()
