"""Reference crops for the bundled default model, from permissively licensed photographs shipped in PyPI wheels.

The bundled model (``vtamiq_tiny_patch16.kadis_synthetic``) is trained only on images whose licence allows
redistributing a model trained on them. They come from the sample data inside two PyPI wheels; the licence of each is
the one stated in the package's own files (``skimage.data`` docstrings, ``sklearn/datasets/images/README.txt``), and is
recorded in ``<out>/sources.json``. Neither package is a dependency of vtamiq-metric, and neither is imported: the
files are located with ``importlib.util.find_spec`` and versions read with ``importlib.metadata``, so a throwaway
``--no-deps`` install is enough::

    pip install --no-deps --target /tmp/imgsrc scikit-image==0.26.0 scikit-learn==1.9.1
    PYTHONPATH=/tmp/imgsrc python examples/bundled_model/prepare_data.py --out data/bundled

Output::

    <out>/ref_imgs/<source>_<kk>.png           training references (crops of the training sources)
    <out>/heldout/ref_imgs/<source>_<kk>.png   evaluation references (crops of the held-out sources only)
    <out>/sources.json                          package, version, file, sha256, licence, held-out flag, crops

Crops are deterministic (``numpy.random.default_rng([seed, crc32(source name)])``): for each crop, a random downscale
of the whole photograph (factor in [``min_scale``, 1], Lanczos), a random square side from ``sizes`` and position, a
random horizontal flip. Grayscale photographs are replicated to RGB. The held-out sources (``HELD_OUT``: coffee,
chelsea, astronaut; colour photographs of everyday content, two of which are also ``examples/images/``) never reach
the training folder, so the evaluation in ``benchmarks/eval_bundled.py`` measures generalisation to unseen photos.

Sources considered and left out: scikit-image's ``motorcycle_left``/``motorcycle_right`` (Middlebury 2014 stereo
set; no licence stated in the package), ``moon`` and ``page`` (no licence stated), ``horse``, ``logo``,
``chessboard_*``, ``phantom``, ``color`` (drawings or synthetic, not photographs), matplotlib's
``grace_hopper.jpg`` (the matplotlib wheel states no licence for it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Source:
    """One source photograph: where it lives in a package, and its licence as the package states it."""

    name: str
    package: str  # import name
    distribution: str  # PyPI name, for the version
    path: str  # relative to the package directory
    licence: str  # short form
    licence_text: str  # as the package states it
    attribution: str = ""


SOURCES: tuple[Source, ...] = (
    # colour photographs
    Source("astronaut", "skimage", "scikit-image", "data/astronaut.png", "public domain",
           "No known copyright restrictions, released into the public domain.", "NASA"),
    Source("chelsea", "skimage", "scikit-image", "data/chelsea.png", "CC0-1.0",
           "No copyright restrictions.  CC0 by the photographer (Stefan van der Walt)."),
    Source("coffee", "skimage", "scikit-image", "data/coffee.png", "CC0-1.0",
           "No copyright restrictions.  CC0 by the photographer (Rachel Michetti)."),
    Source("hubble_deep_field", "skimage", "scikit-image", "data/hubble_deep_field.jpg", "public domain",
           "The image was captured by NASA and may be freely used in the public domain.", "NASA"),
    Source("retina", "skimage", "scikit-image", "data/retina.jpg", "CC0-1.0",
           "This file is made available under the Creative Commons CC0 1.0 Universal Public Domain Dedication."),
    Source("rocket", "skimage", "scikit-image", "data/rocket.jpg", "public domain",
           "The image was captured by SpaceX and released in the public domain.", "SpaceX"),
    Source("ihc", "skimage", "scikit-image", "data/ihc.png", "no known copyright restrictions",
           "No known copyright restrictions.", "Center for Microscopy And Molecular Imaging (CMMI)"),
    Source("china", "sklearn", "scikit-learn", "datasets/images/china.jpg", "CC-BY-2.0",
           "Released under a creative commons license. https://creativecommons.org/licenses/by/2.0/",
           "danielbuechele (flickr.com/photos/danielbuechele/6061409035)"),
    Source("flower", "sklearn", "scikit-learn", "datasets/images/flower.jpg", "CC-BY-2.0",
           "Released under a creative commons license. https://creativecommons.org/licenses/by/2.0/",
           "vultilion (flickr.com/photos/vultilion/6056698931)"),
    # grayscale photographs (replicated to RGB)
    Source("camera", "skimage", "scikit-image", "data/camera.png", "CC0-1.0",
           "No copyright restrictions. CC0 by the photographer (Lav Varshney)."),
    Source("brick", "skimage", "scikit-image", "data/brick.png", "CC0-1.0",
           "CC0Textures ... licensed under the Creative Commons CC0 License."),
    Source("grass", "skimage", "scikit-image", "data/grass.png", "CC0-1.0",
           "... licensed under the Creative Commons CC0 License."),
    Source("gravel", "skimage", "scikit-image", "data/gravel.png", "CC0-1.0",
           "CC0Textures ... licensed under the Creative Commons CC0 License."),
    Source("coins", "skimage", "scikit-image", "data/coins.png", "no known copyright restrictions",
           "No known copyright restrictions.", "Brooklyn Museum Collection"),
    Source("text", "skimage", "scikit-image", "data/text.png", "public domain",
           "No known copyright restrictions, released into the public domain."),
    Source("cell", "skimage", "scikit-image", "data/cell.png", "CC0-1.0",
           "This image is CC0, dedicated to the public domain. You may copy, modify, or distribute it without asking "
           "permission."),
)

#: Sources kept out of training, for evaluation.
HELD_OUT = ("astronaut", "chelsea", "coffee")

_LICENCE_FILES = {"skimage": "skimage.data.<name>() docstring (skimage/data/_fetchers.py)",
                  "sklearn": "sklearn/datasets/images/README.txt"}
_LOADERS = {"ihc": "immunohistochemistry"}  # skimage.data function names that differ from the file name


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"expected the package {package!r} to be installed (pip install --no-deps --target DIR "
                                f"...; PYTHONPATH=DIR), got nothing on sys.path")
    return Path(next(iter(spec.submodule_search_locations)))


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8; grayscale replicated, alpha dropped."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def make_crops(image: np.ndarray, name: str, count: int, sizes: tuple[int, ...], min_scale: float,
               seed: int) -> list[tuple[np.ndarray, dict]]:
    """``count`` deterministic random crops of ``image`` (see the module docstring)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    height, width = image.shape[:2]
    pil = Image.fromarray(image)
    crops = []
    for _ in range(count):
        side = int(rng.choice(sizes))
        lowest = max(min_scale, side / min(height, width))
        scale = float(rng.uniform(lowest, 1.0)) if lowest < 1.0 else 1.0
        new_w, new_h = max(side, round(width * scale)), max(side, round(height * scale))
        scaled = np.asarray(pil.resize((new_w, new_h), Image.LANCZOS)) if scale < 1.0 else image
        top = int(rng.integers(0, new_h - side + 1))
        left = int(rng.integers(0, new_w - side + 1))
        flip = bool(rng.integers(0, 2))
        crop = scaled[top:top + side, left:left + side]
        if flip:
            crop = crop[:, ::-1]
        crops.append((np.ascontiguousarray(crop), {"scale": round(scale, 4), "top": top, "left": left,
                                                   "side": side, "flip": flip}))
    return crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crops", type=int, default=40, help="crops per training source (default 40)")
    parser.add_argument("--heldout-crops", type=int, default=4, help="crops per held-out source (default 4)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224, 256],
                        help="square crop sides in pixels, drawn uniformly (default 160 192 224 256)")
    parser.add_argument("--heldout-size", type=int, default=256, help="side of the held-out crops (default 256)")
    parser.add_argument("--min-scale", type=float, default=0.4, help="smallest downscale factor (default 0.4)")
    args = parser.parse_args(argv)

    train_dir = args.out / "ref_imgs"
    held_dir = args.out / "heldout" / "ref_imgs"
    for folder in (train_dir, held_dir):
        folder.mkdir(parents=True, exist_ok=True)
        stale = sorted(folder.glob("*.png"))
        if stale:
            print(f"error: {folder} already holds {len(stale)} PNG files; use a fresh --out", file=sys.stderr)
            return 2
    records = []
    for source in SOURCES:
        path = package_dir(source.package) / source.path
        if not path.is_file():
            raise FileNotFoundError(f"expected {source.path} in the {source.distribution} package, got no file at "
                                    f"{path}")
        image = load_rgb(path)
        held = source.name in HELD_OUT
        count, sizes, folder = ((args.heldout_crops, (args.heldout_size,), held_dir) if held
                                else (args.crops, tuple(args.sizes), train_dir))
        crops = make_crops(image, source.name, count, sizes, args.min_scale, args.seed)
        files = []
        for index, (crop, info) in enumerate(crops):
            name = f"{source.name}_{index:02d}.png"
            Image.fromarray(crop).save(folder / name)
            files.append({"file": name, **info})
        records.append({
            "name": source.name, "package": source.distribution,
            "version": importlib.metadata.version(source.distribution),
            "file": f"{source.package}/{source.path}",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": [int(image.shape[1]), int(image.shape[0])],
            "licence": source.licence, "licence_text": source.licence_text,
            "licence_stated_in": _LICENCE_FILES[source.package].replace("<name>",
                                                                        _LOADERS.get(source.name, source.name)),
            "attribution": source.attribution,
            "held_out": held, "crops": files,
        })
        print(f"{source.name:18s} {'held-out' if held else 'train':8s} {len(files):3d} crops  {source.licence}")
    manifest = {"seed": args.seed, "sizes": list(args.sizes), "heldout_size": args.heldout_size,
                "min_scale": args.min_scale, "held_out": list(HELD_OUT), "sources": records}
    (args.out / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {sum(len(r['crops']) for r in records if not r['held_out'])} training and "
          f"{sum(len(r['crops']) for r in records if r['held_out'])} held-out references under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
