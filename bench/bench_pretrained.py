"""Benchmark: forward throughput of the imagenet profile's classifier, EfficientNet-Lite0, fp32 against bf16.

Workload: the 20 ``imagenet-samples`` images [3, 224, 224], repeated to ``--batch-size`` rows, through
``rs_repro.models.pretrained("efficientnet-lite0")`` (normalisation as its first layer) under inference mode.
Rows: fp32 in the default (contiguous) layout, the peer every ratio is taken to; fp32 with channels_last; bf16
weights and inputs with channels_last (on a GPU, the layout its tensor cores want). Each row also gives the
top-1 agreement of its argmax with fp32's on the 20 images, since a faster precision that changes the
micro-decisions would change every vote of the book. Best of ``--repeats`` wall times, interleaved. The
imagenet profile's forward passes (the headers of ``book/params/imagenet/*.yml``) divided by the fp32 rate
give its compute time on the device.

Run as ``.venv/bin/python bench/bench_pretrained.py [--device cuda --batch-size 400 --repeats 5 --threads 2]``.
"""

from __future__ import annotations

import argparse
import platform

import torch
from bench_vote import best_times

from rs_repro import data, models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (cuda when available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=0, help="rows per forward pass (0: 400 on cuda, 20 on cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.batch_size < 0 or args.repeats < 1 or args.threads < 1:
        parser.error(f"--batch-size={args.batch_size}, --repeats={args.repeats}, --threads={args.threads}: "
                     "expected a batch size >= 0 (0: the device's default), repeats >= 1 and threads >= 1")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch_size or (400 if device.type == "cuda" else 20)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    images = data.load_dataset("imagenet-samples", "test")
    x = images.x.repeat((batch + len(images.x) - 1) // len(images.x), 1, 1, 1)[:batch]
    last = torch.channels_last

    def build(dtype: torch.dtype, layout: torch.memory_format):
        model = models.pretrained("efficientnet-lite0").to(device, dtype, memory_format=layout).eval()
        return model, lambda t: t.to(device, dtype).contiguous(memory_format=layout)

    variants = {"fp32 (peer)": build(torch.float32, torch.contiguous_format),
                "fp32, channels_last": build(torch.float32, last), "bf16, channels_last": build(torch.bfloat16, last)}

    def forward(model: torch.nn.Module, inputs: torch.Tensor):
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return model(inputs)
        return run

    times = best_times({name: forward(model, convert(x)) for name, (model, convert) in variants.items()},
                       args.repeats, sync)
    top1 = {name: forward(model, convert(images.x))().argmax(1).cpu() for name, (model, convert) in variants.items()}
    print(f"EfficientNet-Lite0, batch {batch} x [3, 224, 224], device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"{args.threads} CPU threads, best of {args.repeats}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print()
    print("| variant | seconds per batch | images/s | speed-up over fp32 | top-1 agreement with fp32 (20 images) |")
    print("|---|---:|---:|---:|---:|")
    for name in variants:
        agree = (top1[name] == top1["fp32 (peer)"]).float().mean().item()
        print(f"| {name} | {times[name]:.4f} | {batch / times[name]:,.0f} | "
              f"{times['fp32 (peer)'] / times[name]:.2f} | {agree:.2f} |")
    print()
    print(f"top-1 accuracy of fp32 on the 20 images: {(top1['fp32 (peer)'] == images.y).float().mean().item():.2f}")


if __name__ == "__main__":
    main()
