"""Gradient descent with VTAMIQLoss: pull a degraded image towards its reference and print the loss falling.

The network stays frozen; only the image's pixels are optimised (through a sigmoid, so they stay in [0, 1]).

Usage::

    python examples/optimize_with_loss.py --model path/to/model_dir --steps 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import vtamiq_metric
from vtamiq_metric import VTAMIQLoss

IMAGES = Path(__file__).resolve().parent / "images"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a - b) ** 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=str(IMAGES / "coffee_ref.png"))
    parser.add_argument("--dist", default=str(IMAGES / "coffee_noise005.png"))
    parser.add_argument("--model", default=None, help="registered name, hf-hub:org/repo or local path")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--size", type=int, default=128, help="centre crop side, to keep the demo fast on a CPU")
    args = parser.parse_args(argv)

    from vtamiq_metric._validation import to_batch

    ref, dist = to_batch(args.ref), to_batch(args.dist)
    top, left = (ref.shape[2] - args.size) // 2, (ref.shape[3] - args.size) // 2
    ref = ref[..., top:top + args.size, left:left + args.size]
    dist = dist[..., top:top + args.size, left:left + args.size]
    model = vtamiq_metric.load_model(args.model) if args.model else None
    loss_fn = VTAMIQLoss(model, num_patches=args.patches)
    logits = torch.logit(dist.clamp(1e-4, 1 - 1e-4)).requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=args.lr)
    for step in range(args.steps + 1):
        image = torch.sigmoid(logits)
        loss = loss_fn(ref, image)
        if step % max(1, args.steps // 10) == 0:
            print(f"step {step:4d}  VTAMIQ loss {loss.item():.5f}  PSNR to reference {psnr(image.detach(), ref):.2f} dB")
        if step < args.steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
