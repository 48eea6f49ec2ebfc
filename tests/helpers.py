"""Builders shared by the tests: synthetic datasets in their official layouts and the authors' weights for the golden
tests. Import them with ``from tests.helpers import ...``; fixtures live in ``conftest.py``."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------------------
# Golden weights and inputs (spec/REFERENCE.md §1.9): the authors' key lists, filled by a crc32-seeded generator

ASSETS = Path(__file__).parent / "assets" / "reference"
GOLDEN = json.loads((ASSETS / "reference-golden.json").read_text())["model"]


def era_keys(era_file: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every tensor of an era's checkpoint, from its ``keys-<era>.tsv``."""
    out = []
    for line in (ASSETS / era_file).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        out.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return out


def drop_keys(keys, *needles):
    """The (key, shape) pairs whose key contains none of ``needles``."""
    return [(k, s) for k, s in keys if not any(n in k for n in needles)]


VARIANTS = {
    # golden name: (our converter variant, key list, position transform is internal)
    "head": ("head2024", era_keys("keys-head2024.tsv")),
    "head_min": ("head2024", drop_keys(era_keys("keys-head2024.tsv"), "extra_tokens", ".ls1.", ".ls2.", "diff_scale")),
    "rel": ("release2022", era_keys("keys-release2022.tsv")),
    "rel_noscale": ("release2022", drop_keys(era_keys("keys-release2022.tsv"), "scale_embeddings")),
    "paper": ("paper2021", era_keys("keys-paper2021.tsv")),
}


def golden_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The authors'-layout state_dict of golden variant ``name`` (cached)."""
    return generated_state_dict(VARIANTS[name][1])


def generated_state_dict(keys) -> dict[str, torch.Tensor]:
    """Float32 tensors for (key, shape) pairs from a generator seeded by the key's crc32, as the golden values were."""
    return {key: _generated_tensor(key, shape) for key, shape in keys}


@functools.cache
def _generated_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    # Cached per key: the eras share most keys, and drawing 57M normals per era is most of a golden test's time.
    z = np.random.RandomState(zlib.crc32(key.encode("utf-8"))).standard_normal(size=shape)
    last = key.split(".")[-1]
    if key.endswith("norm.weight") or last == "gamma":
        value = 1 + 0.1 * z
    elif shape == (1,) and last == "weight":
        value = 0.25 + 0.05 * z
    else:
        value = 0.02 * z
    return torch.from_numpy(value.astype(np.float32))


def golden_inputs(dtype):
    """The golden (ref patches, dist patches, positions, scales) of the reference computation, in ``dtype``."""
    p_ref = np.random.RandomState(1).uniform(-2, 2, (2, 32, 3, 16, 16))
    p_dist = p_ref + np.random.RandomState(2).normal(0, 0.3, p_ref.shape)
    pos01 = np.random.RandomState(3).uniform(0, 1, (2, 32, 2))
    sc = np.random.RandomState(4).randint(0, 5, (2, 32))
    as_t = lambda a: torch.from_numpy(a).to(dtype)
    return as_t(p_ref), as_t(p_dist), as_t(pos01), torch.from_numpy(sc).long()


# ---------------------------------------------------------------------------------------------------------------
# Datasets


def build_fake_kadid(root: Path, levels: int) -> Path:
    """A tiny KADID-10k in its official layout: 5 references x ``levels`` noise levels, 32x40 PNGs, MOS falling
    with the noise level."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["dist_img,ref_img,dmos,var"]
    yy, xx = np.mgrid[0:32, 0:40]
    for r in range(1, 6):
        ref = (np.stack([xx * 6 + r * 10, yy * 7, (xx + yy) * 3 + r * 5], axis=-1) % 256).astype(np.uint8)
        Image.fromarray(ref).save(root / "images" / f"I{r:02d}.png")
        for level in range(1, levels + 1):
            dist = np.clip(ref + rng.normal(0, 12 * level, ref.shape), 0, 255).astype(np.uint8)
            name = f"I{r:02d}_01_{level:02d}.png"
            Image.fromarray(dist).save(root / "images" / name)
            rows.append(f"{name},I{r:02d}.png,{5 - level + rng.uniform(-0.2, 0.2):.3f},0.5")
    (root / "dmos.csv").write_text("\n".join(rows) + "\n")
    return root


# ---------------------------------------------------------------------------------------------------------------
# Processes


def torchrun(module: str, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=NPROC -m MODULE ARGS`` on CPU; fails the test
    with both outputs when it exits non-zero."""
    import pytest

    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", module,
           *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        pytest.fail(f"torchrun exited with {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


# ---------------------------------------------------------------------------------------------------------------
# Image pairs on disk for the `vtamiq` command


def write_png_pairs(root: Path, count: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """``count`` 8-bit PNG pairs ``root/refs/pNN.png`` and ``root/dists/pNN.png`` (uniform noise images, the
    distorted copy with added noise that grows with NN); returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder in ("refs", "dists"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        ref = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        noisy = np.clip(ref.astype(int) + rng.integers(-5 - 3 * i, 5 + 3 * i, ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(root / "refs" / f"p{i:02d}.png")
        Image.fromarray(noisy).save(root / "dists" / f"p{i:02d}.png")
    return root


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG file that only declares its size (an 8-bit RGB header and no pixel data): 57 bytes that claim
    ``width x height`` pixels, for the checks that must refuse an image from its header, before decoding it."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path
