"""Builders shared by the tests: synthetic datasets in their official layouts, the authors' weights for the golden
tests and image pairs for CAPS draws. Import them with ``from tests.helpers import ...``; fixtures live in
``conftest.py``."""

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

from vtamiq_metric.sampling import PatchSample, SamplingConfig

# ---------------------------------------------------------------------------------------------------------------
# Golden weights and inputs (docs/background/authors-model.md §5): the authors' key lists, crc32-seeded values

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


def small_reference_state_dict(era_file: str, *, depth: int = 2, drop: tuple[str, ...] = ()) -> dict:
    """An authors'-layout state dict of one era (``keys-<era>.tsv``) with every width shrunk (768 -> 32, 3072 -> 64,
    192 -> 16, 48 -> 4), ``depth`` encoder blocks and the keys containing any of ``drop`` left out: a checkpoint of
    about 0.5 MB, built like the golden weights, for tests of loading and converting the authors' files."""
    widths = {768: 32, 3072: 64, 192: 16, 48: 4}
    dropped = tuple(f"{layer}.{i}." for layer in ("encoder.layer", "encoder.layers") for i in range(depth, 12))
    keys = [(key, tuple(widths.get(d, d) for d in shape)) for key, shape in era_keys(era_file)
            if not any(part in key for part in dropped + drop)]
    return generated_state_dict(keys)


def golden_inputs(dtype):
    """The golden (ref patches, dist patches, positions, scales) of the reference computation, in ``dtype``."""
    p_ref = np.random.RandomState(1).uniform(-2, 2, (2, 32, 3, 16, 16))
    p_dist = p_ref + np.random.RandomState(2).normal(0, 0.3, p_ref.shape)
    pos01 = np.random.RandomState(3).uniform(0, 1, (2, 32, 2))
    sc = np.random.RandomState(4).randint(0, 5, (2, 32))
    p_ref, p_dist, pos01 = (torch.from_numpy(a).to(dtype) for a in (p_ref, p_dist, pos01))
    return p_ref, p_dist, pos01, torch.from_numpy(sc).long()


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


# CAPS draws (tests/sampling/)

CAPS_UNIFORM = SamplingConfig(centre_weight=0, diff_weight=0, uniform_weight=1)
CAPS_CENTRE = SamplingConfig(centre_weight=1, diff_weight=0, uniform_weight=0)
CAPS_DIFF = SamplingConfig(centre_weight=0, diff_weight=1, uniform_weight=0)
CAPS_RELEASE = SamplingConfig(centre_weight=2, diff_weight=2, uniform_weight=0.5, num_scales=5, scale_ratio=1.5)
CAPS_PAPER = SamplingConfig(centre_weight=2, diff_weight=5, uniform_weight=0.25)


def caps_pair(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random (B, 3, H, W) reference and a noisy distorted copy, both in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(batch, 3, height, width, generator=gen)
    dist = (ref + 0.1 * torch.randn(batch, 3, height, width, generator=gen)).clamp(0, 1)
    return ref, dist


def quadrant_pair(size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (2, 3, size, size) images, identical except in the top-right quadrant."""
    gen = torch.Generator().manual_seed(1)
    ref = torch.rand(2, 3, size, size, generator=gen)
    dist = ref.clone()
    half = size // 2
    dist[:, :, :half, half:] = 1 - dist[:, :, :half, half:]
    return ref, dist


def check_sample(sample: PatchSample, batch: int, count: int, height: int, width: int, patch: int) -> None:
    """Assert the shapes and dtypes of a draw, and that every patch lies inside its level."""
    assert sample.ref.shape == (batch, count, 3, patch, patch)
    assert sample.dist.shape == (batch, count, 3, patch, patch)
    assert sample.pos.shape == (batch, count, 2) and sample.pos.dtype == torch.float32
    assert sample.top_left.shape == (batch, count, 2) and sample.top_left.dtype == torch.int64
    levels = torch.zeros(batch, count, dtype=torch.int64) if sample.scale is None else sample.scale
    limit_h = torch.tensor([height // 2**s - patch for s in range(8)])[levels]
    limit_w = torch.tensor([width // 2**s - patch for s in range(8)])[levels]
    assert bool((sample.top_left >= 0).all())
    assert bool((sample.top_left[..., 0] <= limit_h).all()) and bool((sample.top_left[..., 1] <= limit_w).all())
    assert bool((sample.pos >= 0).all()) and bool((sample.pos < 1).all())


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG file that only declares its size (an 8-bit RGB header and no pixel data): 57 bytes that claim
    ``width x height`` pixels, for the checks that must refuse an image from its header, before decoding it."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path
