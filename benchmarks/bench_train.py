"""Training throughput: optimiser steps of VTAMIQ (random weights) with 256 patches per image, in pairs per second.

Measures forward + MAE/rank loss + backward + AdamW step on pre-sampled patches (what the trainer runs per batch once
the DataLoader workers have decoded and sampled), for a preset and batch size, in fp32 and (on CUDA) bf16 autocast.
Prints JSON. One KADID-10k epoch is 10,125 pairs: the script also prints the implied epoch time.

    python benchmarks/bench_train.py --device cpu --batch-size 2 --steps 3
    python benchmarks/bench_train.py --device cuda --batch-size 20 --steps 30
    python benchmarks/bench_train.py --preset paper2021 --device cpu --batch-size 2 --dry-run   # options only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone

import torch

from vtamiq_metric import VTAMIQ
from vtamiq_metric._precision import autocast
from vtamiq_metric.training.losses import regression_rank_loss

KADID_PAIRS = 10_125


def measure(model: VTAMIQ, batch: int, patches: int, steps: int, warmup: int, device: torch.device,
            bf16: bool) -> float:
    gen = torch.Generator().manual_seed(0)
    size = model.config.patch_size
    ref = torch.randn(batch, patches, 3, size, size, generator=gen).to(device)
    dist = (ref + 0.3 * torch.randn(ref.shape, generator=gen).to(device))
    pos = (torch.rand(batch, patches, 2, generator=gen) * 0.999).to(device)
    target = torch.rand(batch, generator=gen).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    timings = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device, "bf16" if bf16 else "fp32"):
            pred = model(ref, dist, pos).float()
        loss = regression_rank_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            timings.append(time.perf_counter() - start)
    timings.sort()
    return batch / timings[len(timings) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper2021")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the options, print them as JSON and exit without building the model")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.patches, args.steps) < 1 or args.warmup < 0:
        parser.error(f"expected --batch-size, --patches and --steps >= 1 and --warmup >= 0, got {args.batch_size}, "
                     f"{args.patches}, {args.steps} and {args.warmup}")
    if args.dry_run:
        print(json.dumps(vars(args), indent=2))
        return 0
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = VTAMIQ(args.preset).to(device)
    results = {"fp32": measure(model, args.batch_size, args.patches, args.steps, args.warmup, device, False)}
    if device.type == "cuda":
        results["bf16"] = measure(model, args.batch_size, args.patches, args.steps, args.warmup, device, True)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "command": " ".join(sys.argv),
        "preset": args.preset, "batch_size": args.batch_size, "patches": args.patches,
        "pairs_per_second": results,
        "kadid10k_epoch_minutes": {k: KADID_PAIRS / v / 60 for k, v in results.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
