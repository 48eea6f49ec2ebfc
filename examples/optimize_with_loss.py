"""VTAMIQLoss in a training loop: a small deblurring network trained with L1 alone, then with L1 + VTAMIQLoss.

Both runs start from the same weights and see the same crops in the same order; the only difference is the loss.
The VTAMIQ term is weighted so that both terms are equal on the first batch. The network learns on crops of one
photograph (``astronaut_ref.png``) blurred with a Gaussian of sigma 1.5 px, and is then applied to another, unseen
one (``coffee_ref.png``, blurred the same way). The script prints PSNR and the VTAMIQ score of the blurred input and
of both networks' outputs, and VSI too when the ``train`` extra is installed. With the bundled default model and the
defaults below it printed (2026-12-01, torch 2.14.1, CPU)::

                        PSNR dB   VTAMIQ      VSI
    blurred input         27.00   0.5176   0.9871
    L1                    29.33   0.3380   0.9970
    L1 + VTAMIQLoss       29.36   0.2996   0.9972

A small gain on one photograph; ``benchmarks/eval_model.py`` measures the same comparison on 15 held-out photographs
and three tasks (figures in ``vtamiq_metric/weights/MODEL_CARD.md``).

Usage::

    python examples/optimize_with_loss.py                 # bundled default model, 300 steps (a few minutes on CPU)
    python examples/optimize_with_loss.py --model path/to/model_dir --steps 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import nn

import vtamiq_metric
from vtamiq_metric import VTAMIQLoss

IMAGES = Path(__file__).resolve().parent / "images"


def load(path: Path, blur: float = 0.0) -> torch.Tensor:
    """(1, 3, H, W) float image in [0, 1], optionally Gaussian-blurred (then rounded to 8 bits)."""
    image = Image.open(path).convert("RGB")
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


class Deblur(nn.Module):
    """A 5-layer residual CNN: ``x + body(x)``, starting as the identity (last layer zero)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.body(x)).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a - b) ** 2)))


def train(clean: torch.Tensor, blurred: torch.Tensor, loss_fn: VTAMIQLoss | None,
          args: argparse.Namespace) -> nn.Module:
    """Train on random aligned crops; ``loss_fn`` None means L1 alone."""
    torch.manual_seed(args.seed)
    net = Deblur()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    weight = None
    _, _, height, width = clean.shape
    for _ in range(args.steps):
        tops = torch.randint(height - args.crop + 1, (args.batch,), generator=gen).tolist()
        lefts = torch.randint(width - args.crop + 1, (args.batch,), generator=gen).tolist()
        target, inputs = (torch.cat([x[..., top:top + args.crop, left:left + args.crop]
                                     for top, left in zip(tops, lefts, strict=True)]) for x in (clean, blurred))
        out = net(inputs)
        loss = F.l1_loss(out, target)
        if loss_fn is not None:
            perceptual = loss_fn(target, out)  # reference first; gradients reach `out`
            if weight is None:  # both terms start equal
                weight = loss.item() / max(perceptual.item(), 1e-12)
            loss = loss + weight * perceptual
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registered name, hf-hub:org/repo or local path")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--patches", type=int, default=64, help="VTAMIQ patches per crop in the loss")
    parser.add_argument("--blur", type=float, default=1.5, help="Gaussian blur sigma in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    model = vtamiq_metric.load_model(args.model) if args.model else None
    loss_fn = VTAMIQLoss(model, num_patches=args.patches, seed=args.seed)
    train_clean, train_blurred = load(IMAGES / "astronaut_ref.png"), load(IMAGES / "astronaut_ref.png", args.blur)
    test_clean, test_blurred = load(IMAGES / "coffee_ref.png"), load(IMAGES / "coffee_ref.png", args.blur)
    try:  # VSI lives in the `train` extra
        from vtamiq_metric.training.labels import vsi
    except ImportError:
        vsi = None

    rows = [("blurred input", test_blurred)]
    for name, fn in (("L1", None), ("L1 + VTAMIQLoss", loss_fn)):
        net = train(train_clean, train_blurred, fn, args)  # with gradients: not under no_grad
        with torch.no_grad():
            rows.append((name, net(test_blurred)))
    print(f"deblurring an unseen photograph after {args.steps} steps (higher PSNR/VSI, lower VTAMIQ = better)")
    print(f"{'':18s} {'PSNR dB':>8s} {'VTAMIQ':>8s}" + (f" {'VSI':>8s}" if vsi else ""))
    for name, image in rows:
        score = vtamiq_metric.score(test_clean, image, model=model, seed=args.seed).item()
        line = f"{name:18s} {psnr(image, test_clean):8.2f} {score:8.4f}"
        if vsi is not None:
            line += f" {float(vsi(test_clean, image)):8.4f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
