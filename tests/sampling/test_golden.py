"""Golden CAPS draws: the patch positions, scales and coverage densities the sampler gives today, frozen.

The bundled model was trained on these draws: a change of ``sample_patches`` that moves a patch changes its recipe.
Every case below builds its images from integer formulas (no random numbers, no transcendental functions), so the
inputs are bit-identical on every platform, and compares the sampler's output with ``tests/assets/caps_golden.json``:
``top_left`` and ``scale`` exactly, ``pos`` exactly against the documented rule
``((top + P/2) / H_s, (left + P/2) / W_s)`` in float32, and a few summary numbers of ``sampling_density`` to 1e-6
relative (its output is float32; a refactor may reorder float64 sums, which moves the last float32 bit).

A refactor must leave this file and the JSON untouched. Only a deliberate change of the draws may regenerate them
(``python -m tests.sampling.test_golden --write``), and then the CHANGELOG says which draws moved and why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vtamiq_metric.model.config import get_preset
from vtamiq_metric.sampling import PatchSample, SamplingConfig, sample_patches, sampling_density

GOLDEN_FILE = Path(__file__).resolve().parents[1] / "assets" / "caps_golden.json"
RELEASE = {"centre_weight": 2.0, "diff_weight": 2.0, "uniform_weight": 0.5, "num_scales": 5, "scale_ratio": 1.5}
BUNDLED = get_preset("vtamiq_tiny_patch16")

# name: image (height, width, batch), draw (num_patches, patch_size, seed), SamplingConfig fields, options.
CASES: dict[str, dict] = {
    "default-square": {"size": (64, 64, 2), "draw": (64, 16, 0), "config": {}},
    "default-odd-nonsquare": {"size": (75, 133, 2), "draw": (100, 16, 7), "config": {}, "density": True},
    "default-dense": {"size": (48, 80, 1), "draw": (700, 16, 2), "config": {}},
    "pyramid-release": {"size": (160, 224, 2), "draw": (256, 16, 3), "config": RELEASE, "density": True},
    "pyramid-odd-p8": {"size": (45, 83, 2), "draw": (120, 8, 5),
                       "config": {"centre_weight": 2.0, "diff_weight": 5.0, "uniform_weight": 0.25,
                                  "num_scales": 3, "scale_ratio": 1.0}},
    "no-diff": {"size": (97, 61, 2), "draw": (50, 16, 11), "config": {"diff_weight": 0.0}, "density": True},
    "diff-only": {"size": (70, 50, 1), "draw": (40, 16, 4),
                  "config": {"centre_weight": 0.0, "diff_weight": 1.0, "uniform_weight": 0.0}},
    "ssim-two-scales": {"size": (50, 70, 2), "draw": (40, 16, 9), "config": {"diff_type": "ssim", "num_scales": 2},
                        "density": True},
    "bundled": {"size": (192, 256, 1), "draw": (BUNDLED.num_patches, BUNDLED.patch_size, 0),
                "config": BUNDLED.sampling.__dict__, "density": True},
    "bundled-viewing-size": {"size": (256, 384, 1), "draw": (BUNDLED.num_patches, BUNDLED.patch_size, 1),
                             "config": BUNDLED.sampling.__dict__},
    "one-patch": {"size": (16, 16, 2), "draw": (5, 16, 0), "config": {}},
    "near-one-patch": {"size": (17, 19, 2), "draw": (9, 16, 1), "config": RELEASE, "density": True},
    "thin-wide": {"size": (16, 3000, 1), "draw": (256, 16, 2), "config": {}, "density": True},
    "tall-narrow": {"size": (2001, 17, 1), "draw": (256, 16, 3), "config": {}},
    "per-image-draws": {"size": (64, 96, 2), "draw": (48, 16, 6), "config": {}, "per_image_draws": True},
    "uint8-three-scales": {"size": (75, 61, 2), "draw": (64, 16, 5),
                           "config": {"centre_weight": 1.0, "diff_weight": 2.0, "uniform_weight": 0.5,
                                      "num_scales": 3},
                           "uint8": True},
    "identical": {"size": (40, 56, 2), "draw": (30, 16, 8), "config": {}, "identical": True, "density": True},
}


def _images(height: int, width: int, batch: int, *, identical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, H, W) uint8 reference and distorted images from integer formulas (the same bytes everywhere).

    The reference is a texture of ramps; the distorted image adds a hashed noise of amplitude 30 in the top-right
    region and of amplitude 5 elsewhere, so that the difference map has structure.
    """
    i = np.arange(height, dtype=np.int64)[:, None]
    j = np.arange(width, dtype=np.int64)[None, :]
    ref = np.empty((batch, 3, height, width), dtype=np.int64)
    noise = np.empty_like(ref)
    for b in range(batch):
        for c in range(3):
            ref[b, c] = (3 * i + 5 * j + (i * j) // 7 + 40 * c + 11 * b) % 256
            noise[b, c] = ((i * 73856093) ^ (j * 19349663) ^ ((c + 3 * b + 1) * 83492791)) % 61 - 30
    strong = (i < height // 2) & (j >= width // 3)
    dist = ref if identical else np.clip(ref + np.where(strong, noise, noise // 6), 0, 255)
    return ref.astype(np.uint8), dist.astype(np.uint8)


def _inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    ref8, dist8 = _images(*case["size"], identical=case.get("identical", False))
    if case.get("uint8", False):
        return torch.from_numpy(ref8), torch.from_numpy(dist8)
    return (torch.from_numpy(ref8.astype(np.float32) / np.float32(255)),
            torch.from_numpy(dist8.astype(np.float32) / np.float32(255)))


def _density_summary(density: torch.Tensor) -> list[dict[str, float]]:
    """Per image: the total, the maximum, the four quadrant sums and five fixed pixels of a (B, H, W) density."""
    out = []
    height, width = density.shape[1:]
    pixels = [(0, 0), (height // 2, width // 2), (height - 1, width - 1), (height // 3, width - 1 - width // 4),
              (height - 1 - height // 5, width // 7)]
    for image in density.double():
        top, bottom = image[: height // 2], image[height // 2:]
        summary = {"sum": float(image.sum()), "max": float(image.max())}
        for name, part in (("top_left", top[:, : width // 2]), ("top_right", top[:, width // 2:]),
                           ("bottom_left", bottom[:, : width // 2]), ("bottom_right", bottom[:, width // 2:])):
            summary[f"sum_{name}"] = float(part.sum())
        for row, col in pixels:
            summary[f"at_{row}_{col}"] = float(image[row, col])
        out.append(summary)
    return out


def compute(case: dict) -> tuple[dict, PatchSample]:
    """One case's draw: its JSON record (``top_left`` per image as a flat ``[r0, c0, r1, c1, ...]``, ``scale`` and
    ``density`` summaries) and the sample itself."""
    ref, dist = _inputs(case)
    num_patches, patch_size, seed = case["draw"]
    config = SamplingConfig(**case["config"])
    sample = sample_patches(ref, dist, num_patches, patch_size=patch_size, config=config, seed=seed,
                            per_image_draws=case.get("per_image_draws", False))
    result = {
        "top_left": [image.reshape(-1).tolist() for image in sample.top_left],
        "scale": None if sample.scale is None else [image.tolist() for image in sample.scale],
    }
    if case.get("density", False):
        density = sampling_density(ref, dist, num_patches, patch_size=patch_size, config=config)  # float inputs
        result["density"] = _density_summary(density)
    return result, sample


def _moved(expected: list[int], got: list[int], limit: int = 8) -> str:
    """What moved between two flat ``[r0, c0, ...]`` lists: the count and the first ``limit`` patches."""
    pairs = list(zip(expected[0::2], expected[1::2], strict=True))
    new = list(zip(got[0::2], got[1::2], strict=True))
    if len(pairs) != len(new):
        return f"{len(new)} patches instead of {len(pairs)}"
    moved = [(k, old, now) for k, (old, now) in enumerate(zip(pairs, new, strict=True)) if old != now]
    shown = ", ".join(f"patch {k}: {old} -> {now}" for k, old, now in moved[:limit])
    return f"{len(moved)} of {len(pairs)} patches moved (top, left): {shown}"


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN_FILE.read_text())


def test_the_golden_file_holds_every_case(golden):
    assert sorted(golden["cases"]) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_caps_draws_match_the_golden_values(name, golden):
    case, expected = CASES[name], golden["cases"][name]
    got, sample = compute(case)
    for b, (want, have) in enumerate(zip(expected["top_left"], got["top_left"], strict=True)):
        assert have == want, f"{name}, image {b}: {_moved(want, have)}"
    assert got["scale"] == expected["scale"], f"{name}: the pyramid levels of the patches changed"
    # pos follows from top_left by the documented rule, computed here in float64 and rounded to float32.
    _, patch_size, _ = case["draw"]
    height, width = case["size"][:2]
    levels = torch.zeros(sample.top_left.shape[:2], dtype=torch.int64) if sample.scale is None else sample.scale
    sizes = torch.stack([height // 2**levels, width // 2**levels], dim=-1).double()  # (B, N, 2)
    pos = ((sample.top_left.double() + patch_size / 2) / sizes).float().clamp(max=1.0 - 2.0**-24)
    assert torch.equal(sample.pos, pos), f"{name}: pos is not ((top + P/2) / H_s, (left + P/2) / W_s)"
    if "density" in expected:
        for b, (want, have) in enumerate(zip(expected["density"], got["density"], strict=True)):
            assert have.keys() == want.keys()
            for key in want:
                assert have[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (
                    f"{name}, image {b}: sampling_density {key} is {have[key]!r}, expected {want[key]!r}")


def _field(key: str, rows: list | None) -> str:
    """One JSON field of the golden file with one row per line (``null`` for None)."""
    if rows is None:
        return f'    "{key}": null'
    return f'    "{key}": [\n' + ",\n".join(f"      {json.dumps(row)}" for row in rows) + "\n    ]"


def _write() -> None:
    """Regenerate the golden file from the current code: one line per image, so that a diff shows what moved."""
    blocks = []
    for name in sorted(CASES):
        result, _ = compute(CASES[name])
        fields = [_field(key, result[key]) for key in ("top_left", "scale", "density") if key in result]
        blocks.append(f'  "{name}": {{\n' + ",\n".join(fields) + "\n  }")
    GOLDEN_FILE.write_text('{"cases": {\n' + ",\n".join(blocks) + "\n}}\n")
    json.loads(GOLDEN_FILE.read_text())  # the writer's output is valid JSON


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.sampling.test_golden --write  (only for a deliberate change of the draws)")
    _write()
