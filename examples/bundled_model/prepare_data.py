"""Reference crops for the bundled default model, from permissively licensed photographs.

The bundled model (``vtamiq_tiny_patch16.kadis_photos_robust``) is trained only on images whose licence allows
redistributing a model trained on them. Two kinds of sources:

- **package photographs**: sample data inside the scikit-image and scikit-learn wheels; the licence of each is the one
  stated in the package's own files (``skimage.data`` docstrings, ``sklearn/datasets/images/README.txt``). Neither
  package is a dependency of vtamiq-metric and neither is imported: the files are located with
  ``importlib.util.find_spec`` and versions read with ``importlib.metadata``, so a throwaway ``--no-deps`` install is
  enough;
- **a photograph folder** (``--photos``) laid out as ``cq100/`` (CQ100 photographs from Wikimedia Commons and NASA,
  licence and author per image in ``cq100/metadata.csv``), ``lomiri/`` (Debian's lomiri-wallpapers, licence per file
  in ``lomiri/debian-copyright-*.txt``) and ``camera-traps/`` (LILA camera-trap images, CDLA-Permissive-1.0, table in
  ``camera-traps/README.md``). Every image's licence and author are read from those files and recorded.

Usage::

    pip install --no-deps --target /tmp/imgsrc scikit-image==0.26.0 scikit-learn==1.9.1
    PYTHONPATH=/tmp/imgsrc python examples/bundled_model/prepare_data.py --out data/bundled --photos PHOTOS_DIR

Output::

    <out>/ref_imgs/<source>_<kk>.png           training references (crops of the training sources)
    <out>/heldout/ref_imgs/<source>_<kk>.png   evaluation references (crops of the held-out sources only)
    <out>/heldout/photos/<source>.png          the held-out photographs themselves (for loss and ladder checks)
    <out>/sources.json                          origin, file, sha256, licence, author, held-out flag, crops

Crops are deterministic (``numpy.random.default_rng([seed, crc32(source name)])``): photographs whose longer side
exceeds ``--max-side`` are first downscaled to it (Lanczos); then, for each crop, a random downscale (factor in
[``min_scale``, 1]), a random square side from ``sizes`` and position, a random horizontal flip. Grayscale
photographs are replicated to RGB. The held-out sources (``HELD_OUT``) never reach the training folder, so the
evaluation in ``benchmarks/eval_model.py`` measures generalisation to unseen photographs.

Sources considered and left out: scikit-image's ``motorcycle_left``/``motorcycle_right`` (Middlebury 2014 stereo
set; no licence stated in the package), ``moon`` and ``page`` (no licence stated), ``horse``, ``logo``,
``chessboard_*``, ``phantom``, ``color`` (drawings or synthetic, not photographs), matplotlib's
``grace_hopper.jpg`` (the matplotlib wheel states no licence for it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import re
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
    origin: str = "package"  # "package" (a wheel's sample data) or "folder" (under --photos)


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

#: Sources kept out of training, for evaluation: three package photographs and twelve of the photograph folder
#: (ten CQ100 photographs of varied content, one wallpaper, one camera-trap image).
HELD_OUT = ("astronaut", "chelsea", "coffee",
            "cq100-buggy", "cq100-carrots", "cq100-girl", "cq100-king_penguin", "cq100-marrakech_museum",
            "cq100-puffin", "cq100-sagami_temple", "cq100-traffic", "cq100-venetian_lagoon", "cq100-wooden_toys",
            "lomiri-sunset_by_Aitzol_Berasategi", "camera-traps-domestic_dog")

_LICENCE_FILES = {"skimage": "skimage.data.<name>() docstring (skimage/data/_fetchers.py)",
                  "sklearn": "sklearn/datasets/images/README.txt"}
_LOADERS = {"ihc": "immunohistochemistry"}  # skimage.data function names that differ from the file name


def _cq100_sources(root: Path) -> list[Source]:
    sources = []
    with open(root / "metadata.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row["Modified Filename"]
            sources.append(Source(f"cq100-{name}", "cq100", "CQ100", f"cq100/{name}.png", row["License"],
                                  f"{row['License']} ({row['License URL']}); source {row['Source URL']}",
                                  row["Author"], origin="folder"))
    return sources


def _lomiri_sources(root: Path) -> list[Source]:
    """Licence and copyright holder of each wallpaper, from the Debian copyright files (DEP-5 format)."""
    stanzas: dict[str, tuple[str, str]] = {}
    for copyright_file in sorted(root.glob("debian-copyright-*.txt")):
        for block in copyright_file.read_text(encoding="utf-8").split("\n\n"):
            fields = dict(re.findall(r"^(Files|Copyright|License):[ \t]*(.*)$", block, flags=re.MULTILINE))
            if "Files" in fields and "License" in fields:
                stanzas[Path(fields["Files"].strip()).name] = (fields["License"].strip(),
                                                                fields.get("Copyright", "").strip())
    sources = []
    for path in sorted(root.glob("*.jpg")):
        if path.name not in stanzas:
            raise ValueError(f"expected a licence for {path.name} in {root}/debian-copyright-*.txt, got none")
        licence, holder = stanzas[path.name]
        sources.append(Source(f"lomiri-{path.stem}", "lomiri", "lomiri-wallpapers (Debian)", f"lomiri/{path.name}",
                              licence, f"{licence}; Copyright: {holder} (Debian copyright file)", holder,
                              origin="folder"))
    return sources


def _camera_trap_sources(root: Path) -> list[Source]:
    """Camera-trap images listed as *Original* in the folder's README table (CDLA-Permissive-1.0)."""
    sources = []
    for line in (root / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[1] != "Original":
            continue
        file = re.search(r"\[([^\]]+\.jpg)\]", cells[0])
        origin = re.search(r"\[([^\]]+)\]\(([^)]+)\)", cells[2])
        licence = re.search(r"\[([^\]]+)\]", cells[3])
        if file and (root / file.group(1)).is_file():
            collection = origin.group(1) if origin else cells[2]
            sources.append(Source(f"camera-traps-{Path(file.group(1)).stem}", "camera-traps",
                                  "google/cameratrapai test data", f"camera-traps/{file.group(1)}",
                                  licence.group(1) if licence else cells[3],
                                  f"{licence.group(1) if licence else cells[3]}; from {collection}", collection,
                                  origin="folder"))
    return sources


def folder_sources(root: Path) -> list[Source]:
    """Every photograph of a ``--photos`` folder with its licence and author, read from the folder's own files."""
    found = []
    for sub, reader in (("cq100", _cq100_sources), ("lomiri", _lomiri_sources),
                        ("camera-traps", _camera_trap_sources)):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"expected {root / sub}/ in the photograph folder, got no such folder")
        found.extend(reader(root / sub))
    return found


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


def limit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` downscaled (Lanczos) so that its longer side is at most ``max_side``."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


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
    parser.add_argument("--photos", type=Path, default=None,
                        help="photograph folder with cq100/, lomiri/ and camera-traps/ (see the module docstring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crops", type=int, default=12, help="crops per training source (default 12)")
    parser.add_argument("--heldout-crops", type=int, default=1, help="crops per held-out source (default 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224, 256],
                        help="square crop sides in pixels, drawn uniformly (default 160 192 224 256)")
    parser.add_argument("--heldout-size", type=int, default=256, help="side of the held-out crops (default 256)")
    parser.add_argument("--min-scale", type=float, default=0.5, help="smallest downscale factor (default 0.5)")
    parser.add_argument("--max-side", type=int, default=1024,
                        help="photographs are first downscaled to this longer side (default 1024)")
    args = parser.parse_args(argv)

    train_dir = args.out / "ref_imgs"
    held_dir = args.out / "heldout" / "ref_imgs"
    photo_dir = args.out / "heldout" / "photos"
    for folder in (train_dir, held_dir, photo_dir):
        folder.mkdir(parents=True, exist_ok=True)
        stale = sorted(folder.glob("*.png"))
        if stale:
            print(f"error: {folder} already holds {len(stale)} PNG files; use a fresh --out", file=sys.stderr)
            return 2
    sources = list(SOURCES) + (folder_sources(args.photos) if args.photos is not None else [])
    records = []
    for source in sources:
        base = package_dir(source.package) if source.origin == "package" else args.photos
        path = base / source.path
        if not path.is_file():
            raise FileNotFoundError(f"expected {source.path} in {source.distribution}, got no file at {path}")
        image = limit_side(load_rgb(path), args.max_side)
        held = source.name in HELD_OUT
        count, sizes, folder = ((args.heldout_crops, (args.heldout_size,), held_dir) if held
                                else (args.crops, tuple(args.sizes), train_dir))
        crops = make_crops(image, source.name, count, sizes, args.min_scale, args.seed)
        files = []
        for index, (crop, info) in enumerate(crops):
            name = f"{source.name}_{index:02d}.png"
            Image.fromarray(crop).save(folder / name)
            files.append({"file": name, **info})
        if held:
            Image.fromarray(image).save(photo_dir / f"{source.name}.png")
        version = (importlib.metadata.version(source.distribution) if source.origin == "package" else None)
        records.append({
            "name": source.name, "origin": source.origin, "package": source.distribution, "version": version,
            "file": f"{source.package}/{source.path}" if source.origin == "package" else source.path,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": [int(image.shape[1]), int(image.shape[0])],
            "licence": source.licence, "licence_text": source.licence_text,
            "licence_stated_in": (_LICENCE_FILES[source.package].replace("<name>", _LOADERS.get(source.name,
                                                                                               source.name))
                                  if source.origin == "package" else f"{source.package}/ metadata in --photos"),
            "attribution": source.attribution,
            "held_out": held, "crops": files,
        })
        print(f"{source.name:40s} {'held-out' if held else 'train':8s} {len(files):3d} crops  {source.licence}")
    missing = sorted(set(HELD_OUT) - {record["name"] for record in records})
    if missing:
        print(f"error: held-out sources {missing} were not found; pass --photos", file=sys.stderr)
        return 2
    manifest = {"seed": args.seed, "sizes": list(args.sizes), "heldout_size": args.heldout_size,
                "min_scale": args.min_scale, "max_side": args.max_side, "held_out": list(HELD_OUT),
                "sources": records}
    (args.out / "sources.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {sum(len(r['crops']) for r in records if not r['held_out'])} training and "
          f"{sum(len(r['crops']) for r in records if r['held_out'])} held-out references under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
