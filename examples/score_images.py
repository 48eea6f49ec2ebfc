"""Score image pairs with VTAMIQ and print one distortion score per pair (0 = identical, higher = worse).

Usage::

    python examples/score_images.py                          # the example images, bundled default model
    python examples/score_images.py REF DIST [REF DIST ...] --model hf-hub:org/repo
    python examples/score_images.py --model path/to/model_dir --repeats 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import vtamiq_metric

IMAGES = Path(__file__).resolve().parent / "images"
DEFAULT_PAIRS = [(f"{name}_ref.png", f"{name}_{kind}.png") for name in ("coffee", "astronaut")
                 for kind in ("blur2", "noise005", "jpeg10")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="REF DIST pairs (default: the example images)")
    parser.add_argument("--model", default=None, help="registered name, hf-hub:org/repo or local path")
    parser.add_argument("--patches", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.images) % 2:
        parser.error("give images in REF DIST pairs")
    pairs = (list(zip(args.images[::2], args.images[1::2], strict=True))
             or [(IMAGES / r, IMAGES / d) for r, d in DEFAULT_PAIRS])
    model = vtamiq_metric.load_model(args.model) if args.model else None
    print("distortion score (0 = identical, higher = worse)")
    for ref, dist in pairs:
        mean, std = vtamiq_metric.score(str(ref), str(dist), model=model, num_patches=args.patches,
                                        num_repeats=args.repeats, seed=args.seed, return_std=True)
        spread = f" ± {std.item():.4f}" if args.repeats > 1 else ""
        print(f"{Path(dist).name:28s} {mean.item():.4f}{spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
