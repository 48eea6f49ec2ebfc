"""Acceptance checks of a trained VTAMIQ model: the figures its model card reports, measured the same way for any model.

Every check takes *scorers*, functions ``(ref, dist) -> (B,)`` distortion scores (higher = worse) on ``(B, 3, H, W)``
float images in [0, 1], so the model is always reported next to its teacher (the distortion ``D`` of
:mod:`vtamiq_metric.training.labels.teacher`), VSI (as ``1 - VSI``) and PSNR (as ``-PSNR``), which tells a reader
where it stands. ``benchmarks/eval_model.py`` runs them all and writes one JSON object.

Checks of the score:

- :func:`severity_check`: six severity ladders (JPEG quality, Gaussian blur, white noise, bicubic down-up
  resampling, contrast reduction, salt-and-pepper; five levels each, :data:`LADDERS`) on each reference; the share of
  level pairs whose scores are ordered like the levels, and the share of fully monotone ladders.
- :func:`stacking_check`: a second distortion put on top of a first one (noise, blur or JPEG, then a colour cast, a
  contrast cut or another of the three) must raise the score, where it costs at least 1 dB of PSNR.
- :func:`label_check` / :func:`correlations`: Spearman/Kendall correlation with a per-pair label (the teacher's
  distortion, ``1 - VSI``) on KADIS-style pairs and whole photographs (:func:`full_size_pairs`).
- :func:`mos_check`: Spearman correlation with human opinion scores (the sign is flipped: MOS is higher-is-better).
- :func:`identity_check`: identical pairs score 0 and below every distorted pair of the same reference.
- :func:`stability_check`: the standard deviation over sampling seeds, relative to the score range.

Checks of the loss:

- :func:`gradient_cosines`: the cosine between ``d score / d dist`` and ``dist - ref`` (a loss that pulls ``dist``
  towards ``ref`` has a positive cosine; 1 is the gradient of the squared error).
- :func:`pixel_optimisation`: gradient descent on the pixels of ``dist`` with the loss alone (Adam on sigmoid
  logits); PSNR, VSI and the teacher's distortion before and after.
- :func:`loss_alone_restoration`: a small restoration CNN trained with ``VTAMIQLoss`` alone; PSNR, the teacher and
  the colour cast (:func:`colour_cast_levels`) of its held-out outputs against its degraded inputs.
- :func:`partner_comparison`: the same CNN trained with L1 alone and with L1 plus ``VTAMIQLoss``, piq's ``VSILoss``
  or ``1 - MS-SSIM``; held-out PSNR, FSIM, GMSD and HaarPSI and the mean rank over the last three
  (:func:`mean_ranks`). :func:`restoration_benefit` is its two-variant form (L1 against L1 + ``VTAMIQLoss``).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats
from torch import Tensor, nn

from .._validation import load_image
from ..api import score
from ..loss import VTAMIQLoss
from ..model.vtamiq import VTAMIQ
from .datasets.base import iter_csv_rows
from .datasets.kadis700k import KADIS_SCORES_FILE, KADIS700kDataset
from .datasets.tid2013 import TID2013Dataset
from .labels.teacher import _MS_SSIM_WEIGHTS, SPREADS, _ms_ssim_levels, teacher_components, teacher_distortion
from .labels.vsi import vsi
from .seeds import KADIS_TYPE_IDS, derive_seed

__all__ = ["CASTS", "FULL_SIZE_TYPES", "KADIS_LABELS", "LADDERS", "PARTNER_MEASURES", "PARTNER_VARIANTS",
           "RESTORATION_TASKS", "STACK_FIRSTS", "STACK_SECONDS", "RestorationNet", "Scorer", "apply_cast",
           "centre_crop", "ciede2000_scorer", "colour_cast_levels", "correlations", "degrade", "fsimc_scorer",
           "full_size_pairs", "gmsd_scorer", "gradient_cosines", "identity_check", "label_check", "load_images",
           "loss_alone_restoration", "mean_ranks", "model_scorer", "mos_check", "partner_comparison",
           "pixel_optimisation", "psnr", "psnr_scorer", "read_kadis_pairs", "read_mos_folder", "reference_scorers",
           "restoration_benefit", "score_pairs", "score_table", "severity_check", "stability_check", "stacking_check",
           "teacher_scorers", "vsi_scorer"]

#: ``(ref, dist) -> (B,)`` distortion scores (higher = worse) for (B, 3, H, W) float images in [0, 1].
Scorer = Callable[[Tensor, Tensor], Tensor]

# ---------------------------------------------------------------------------------------------------------------
# Degradations


#: Severity ladders, weakest first: the parameter of each of the five levels.
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 70, 50, 30, 10),  # IJG quality (Pillow, 4:2:0)
    "gaussian_blur": (0.5, 1.0, 1.5, 2.5, 4.0),  # sigma in pixels
    "white_noise": (0.02, 0.04, 0.07, 0.10, 0.15),  # standard deviation, values in [0, 1], clipped
    "resample": (1.5, 2.0, 3.0, 4.0, 6.0),  # bicubic down-scaling factor, then bicubic back up
    "contrast": (0.85, 0.70, 0.55, 0.40, 0.25),  # share of the contrast kept around the image mean
    "salt_pepper": (0.005, 0.01, 0.02, 0.05, 0.10),  # share of pixels set to black or white
}

#: Colour casts of :func:`apply_cast` (the second distortions of :func:`stacking_check`). Deliberately simple and
#: unlike the training distortion types 26-32 (which work on linear light, in Bradford cone space or by hue
#: rotation), so that the check does not test the training data:
#:
#: - ``"gains"``: each gamma-encoded sRGB channel multiplied by its gain ``(g_R, g_G, g_B)``, as a naive edit does;
#: - ``"white_balance"``: every pixel's CIE L*a*b* (D65) chroma moved by ``(da*, db*)``, lightness kept (a
#:   white-balance shift: positive ``db*`` warmer, yellow; negative cooler, blue; ``da*`` a magenta or green tint).
CASTS = ("gains", "white_balance")


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]


def _to_pil(image: Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255


def _check_image(image: Tensor) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"expected a (3, H, W) float tensor, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")


def _quantise(image: Tensor) -> Tensor:
    """Clipped to [0, 1] and rounded to 8 bits, like a saved image."""
    return (image.clamp(0, 1) * 255).round() / 255


def degrade(image: Tensor, family: str, value: float, *, seed: int = 0) -> Tensor:
    """One degradation of :data:`LADDERS` at parameter ``value``.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        family: a key of :data:`LADDERS`.
        value: the family's parameter (see :data:`LADDERS`).
        seed: seed of the random families (white noise, salt-and-pepper).

    Returns:
        (3, H, W) float32 in [0, 1], quantised to 8 bits like a saved image.

    Raises:
        ValueError: an unknown family or a bad image shape.
    """
    _check_image(image)
    image = image.float()
    gen = torch.Generator().manual_seed(seed)
    if family == "jpeg":
        buffer = io.BytesIO()
        _to_pil(image).save(buffer, format="JPEG", quality=int(value), subsampling="4:2:0")
        return _from_pil(Image.open(buffer))
    if family == "gaussian_blur":
        out = _gaussian_blur(image, float(value))
    elif family == "white_noise":
        out = image + float(value) * torch.randn(image.shape, generator=gen)
    elif family == "resample":
        height, width = image.shape[1:]
        small = (max(1, round(width / value)), max(1, round(height / value)))
        return _from_pil(_to_pil(image).resize(small, Image.BICUBIC).resize((width, height), Image.BICUBIC))
    elif family == "contrast":
        mean = image.mean(dim=(1, 2), keepdim=True)
        out = mean + float(value) * (image - mean)
    elif family == "salt_pepper":
        u = torch.rand(image.shape[1:], generator=gen)
        out = image.clone()
        out[:, u < value / 2] = 0.0
        out[:, (u >= value / 2) & (u < value)] = 1.0
    else:
        raise ValueError(f"unknown degradation {family!r}; expected one of {sorted(LADDERS)}")
    return _quantise(out)


def apply_cast(image: Tensor, kind: str, values: Sequence[float]) -> Tensor:
    """A colour cast of :data:`CASTS`: channel gains on the sRGB values, or a shift of the L*a*b* chroma.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        kind: ``"gains"`` (``values`` = three gains for R, G, B, each > 0) or ``"white_balance"`` (``values`` =
            ``(da*, db*)``, the shift of every pixel's chroma in CIE L*a*b* units).
        values: the cast's parameters (see ``kind``).

    Returns:
        (3, H, W) float32 in [0, 1], clipped and quantised to 8 bits like a saved image.

    Raises:
        ValueError: an unknown kind, the wrong number of values, a gain that is not positive, or a bad image shape.
    """
    _check_image(image)
    values = tuple(float(v) for v in values)
    if kind == "gains":
        if len(values) != 3 or min(values) <= 0:
            raise ValueError(f"gains: expected three positive gains (R, G, B), got {values}")
        return _quantise(image.float() * torch.tensor(values).view(3, 1, 1))
    if kind == "white_balance":
        if len(values) != 2:
            raise ValueError(f"white_balance: expected (da*, db*), got {values}")
        from skimage import color  # a dependency of the train extra (the teacher's colour difference)

        lab = color.rgb2lab(image.double().clamp(0, 1).permute(1, 2, 0).numpy())
        lab[..., 1] += values[0]
        lab[..., 2] += values[1]
        rgb = np.clip(color.lab2rgb(lab), 0.0, 1.0)
        return _quantise(torch.from_numpy(rgb).permute(2, 0, 1).float())
    raise ValueError(f"unknown cast {kind!r}; expected one of {list(CASTS)}")


def centre_crop(image: Tensor, side: int) -> Tensor:
    """The centred ``side x side`` crop of a (3, H, W) image.

    Raises:
        ValueError: the image is smaller than ``side`` on a side.
    """
    _check_image(image)
    if min(image.shape[1:]) < side:
        raise ValueError(f"expected an image of at least {side} x {side} pixels to crop, got {tuple(image.shape[1:])}")
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top:top + side, left:left + side]


def load_images(paths: Sequence[Path], *, max_side: int | None = None) -> list[Tensor]:
    """Decode image files to (3, H, W) tensors, optionally downscaled (Lanczos) to ``max_side``."""
    out = []
    for path in paths:
        image = load_image(Path(path))
        if max_side is not None and max(image.shape[1:]) > max_side:
            pil = _to_pil(image)
            factor = max_side / max(pil.size)
            image = _from_pil(pil.resize((max(1, round(pil.width * factor)), max(1, round(pil.height * factor))),
                                         Image.LANCZOS))
        out.append(image)
    return out

# ---------------------------------------------------------------------------------------------------------------
# Scorers


def psnr(ref: Tensor, dist: Tensor) -> Tensor:
    """PSNR in dB of (B, 3, H, W) images in [0, 1]; capped at 100 dB for identical images."""
    mse = (ref.double() - dist.double()).square().mean(dim=(1, 2, 3))
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).float()


def model_scorer(model: VTAMIQ, *, num_patches: int | None = None, seed: int = 0, num_repeats: int = 1,
                 batch_size: int = 16, precision: str = "fp32") -> Scorer:
    """The model's :func:`vtamiq_metric.score` as a scorer (default patch count and seed 0 unless given)."""

    def run(ref: Tensor, dist: Tensor) -> Tensor:
        with torch.no_grad():
            return score(ref, dist, model=model, num_patches=num_patches, seed=seed, num_repeats=num_repeats,
                         batch_size=batch_size, precision=precision).cpu()

    return run


def vsi_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """``1 - VSI`` (a distortion, like the model's score)."""
    return (1.0 - vsi(ref, dist)).float()


def psnr_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """``-PSNR`` (a distortion, like the model's score)."""
    return -psnr(ref, dist)


class _TeacherParts:
    """The teacher and its three measures of the last ``(ref, dist)`` batch, computed once for all of them.

    :func:`score_table` hands the same two tensor objects to every scorer of a batch, so asking for the teacher, VSI,
    S-CIELAB and MS-SSIM of one batch costs one :func:`teacher_components` call. Any other pair of tensors is
    computed afresh (the cache holds one batch and compares the objects, not their values).
    """

    def __init__(self) -> None:
        self._key: tuple[Tensor, Tensor] | None = None
        self._parts: dict[str, Tensor] = {}

    def __call__(self, ref: Tensor, dist: Tensor) -> dict[str, Tensor]:
        if self._key is None or self._key[0] is not ref or self._key[1] is not dist:
            parts = teacher_components(ref, dist)
            parts["teacher"] = sum(parts[name].clamp_min(0.0) / SPREADS[name] for name in SPREADS)
            self._key, self._parts = (ref, dist), parts
        return self._parts


def teacher_scorers(names: Sequence[str] = ("teacher", "vsi", "scielab", "ms_ssim")) -> dict[str, Scorer]:
    """The teacher's distortion ``D`` and its measures as scorers that share one computation per batch.

    Args:
        names: any of ``"teacher"`` (``D`` of :func:`vtamiq_metric.training.labels.teacher.teacher_distortion`),
            ``"vsi"`` (``1 - VSI``), ``"scielab"`` (mean S-CIELAB dE00) and ``"ms_ssim"`` (``1 - MS-SSIM``, as many
            scales as fit), all at the teacher's viewing distance.

    Returns:
        ``{name: scorer}``, each (B,) float32, 0 = identical, higher = worse. Scored together through
        :func:`score_table`, they cost one teacher computation per batch.

    Raises:
        ValueError: an unknown name.
    """
    known = ("teacher", *SPREADS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown teacher measures {unknown}; expected names among {list(known)}")
    parts = _TeacherParts()

    def scorer(name: str) -> Scorer:
        return lambda ref, dist: parts(ref, dist)[name].float()

    return {name: scorer(name) for name in names}


def _piq():
    try:
        import piq
    except ImportError as exc:  # piq is a dependency of the train extra
        raise ImportError("these checks need piq: pip install 'vtamiq-metric[train]'") from exc
    return piq


def gmsd_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """piq's GMSD (gradient magnitude similarity deviation): 0 = identical, higher = worse."""
    return _piq().gmsd(dist.clamp(0, 1), ref.clamp(0, 1), data_range=1.0, reduction="none").float()


def fsimc_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """``1 - FSIMc`` (piq's FSIM with its chromatic term): 0 = identical, higher = worse."""
    return (1.0 - _piq().fsim(dist.clamp(0, 1), ref.clamp(0, 1), data_range=1.0, reduction="none",
                              chromatic=True)).float()


def ciede2000_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """Mean CIEDE2000 colour difference per pair (scikit-image, CIE L*a*b* D65, no spatial filtering)."""
    from skimage import color  # a dependency of the train extra

    out = [float(np.mean(color.deltaE_ciede2000(color.rgb2lab(r.double().clamp(0, 1).permute(1, 2, 0).numpy()),
                                                color.rgb2lab(d.double().clamp(0, 1).permute(1, 2, 0).numpy()))))
           for r, d in zip(ref.expand_as(dist), dist)]
    return torch.tensor(out, dtype=torch.float32)


def reference_scorers(model: VTAMIQ, *, extended: bool = False, **kwargs: object) -> dict[str, Scorer]:
    """The model and the measures it is reported next to.

    Args:
        model: the model (scored by :func:`model_scorer` with ``kwargs``).
        extended: add the classical measures the stacked-distortion check quotes: ``ms_ssim`` (``1 - MS-SSIM``),
            ``scielab`` (mean S-CIELAB dE00), ``gmsd``, ``fsimc`` (``1 - FSIMc``) and ``ciede2000`` (mean CIEDE2000).
        **kwargs: options of :func:`model_scorer`.

    Returns:
        ``{"model", "teacher" (D), "vsi" (1 - VSI), "psnr" (-PSNR)}`` and, with ``extended``, the measures above;
        every one a distortion (0 = identical, higher = worse). The teacher's measures share one computation per
        batch in :func:`score_table`.
    """
    group = teacher_scorers(("teacher", "vsi", "ms_ssim", "scielab") if extended else ("teacher", "vsi"))
    out = {"model": model_scorer(model, **kwargs), "teacher": group["teacher"], "vsi": group["vsi"],
           "psnr": psnr_scorer}
    if extended:
        out.update({"ms_ssim": group["ms_ssim"], "scielab": group["scielab"], "gmsd": gmsd_scorer,
                    "fsimc": fsimc_scorer, "ciede2000": ciede2000_scorer})
    return out


def score_table(scorers: Mapping[str, Scorer], refs: Sequence[Tensor], dists: Sequence[Tensor],
                batch: int = 16) -> dict[str, np.ndarray]:
    """Every scorer's scores of (3, H, W) pairs, batched by image size, in input order.

    Each batch is stacked once and handed to every scorer in turn, so scorers that share work (the teacher's
    measures, :func:`teacher_scorers`) compute it once.

    Args:
        scorers: named scorers.
        refs: (3, H, W) references in [0, 1].
        dists: (3, H, W) distorted images, one per reference entry, the same size as it.
        batch: pairs per call.

    Returns:
        ``{name: (n,) float64 scores}``.

    Raises:
        ValueError: different numbers of references and distorted images.
    """
    if len(refs) != len(dists):
        raise ValueError(f"expected one distorted image per reference, got {len(refs)} references and "
                         f"{len(dists)} distorted images")
    out = {name: np.zeros(len(refs), dtype=np.float64) for name in scorers}
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, ref in enumerate(refs):
        by_size.setdefault(tuple(ref.shape), []).append(i)
    for index in by_size.values():
        for start in range(0, len(index), batch):
            part = index[start:start + batch]
            ref_batch = torch.stack([refs[i] for i in part])
            dist_batch = torch.stack([dists[i] for i in part])
            for name, scorer in scorers.items():
                out[name][part] = scorer(ref_batch, dist_batch).double().cpu().numpy()
    return out


def score_pairs(scorer: Scorer, refs: Sequence[Tensor], dists: Sequence[Tensor], batch: int = 16) -> np.ndarray:
    """Scores of (3, H, W) pairs, batched by image size, in input order (one scorer of :func:`score_table`)."""
    return score_table({"scores": scorer}, refs, dists, batch)["scores"]

# ---------------------------------------------------------------------------------------------------------------
# Data


#: Similarity columns of a ``make-kadis`` CSV that :func:`read_kadis_pairs` reads when present (1 = identical).
KADIS_LABELS = ("vsi", "teacher")


def _kadis_csv(root: Path) -> Path:
    """The score file below ``root`` or ``root/kadis700k`` (the places :class:`KADIS700kDataset` looks)."""
    for folder in (Path(root), Path(root) / "kadis700k"):
        if (folder / KADIS_SCORES_FILE).is_file():
            return folder / KADIS_SCORES_FILE
    raise FileNotFoundError(f"expected {Path(root) / KADIS_SCORES_FILE} (made by vtamiq-train make-kadis), got no "
                            "file")


def read_kadis_pairs(root: Path, labels: Sequence[str] = KADIS_LABELS) -> list[dict]:
    """The pairs of a ``make-kadis`` folder, read by :class:`~.datasets.kadis700k.KADIS700kDataset`.

    Args:
        root: the folder holding :data:`~.datasets.kadis700k.KADIS_SCORES_FILE` (or its parent holding
            ``kadis700k/``).
        labels: similarity columns in [0, 1] to read where the CSV has them (``vsi``, ``teacher``: 1 = identical).

    Returns:
        One dict per pair, in the CSV's order: ``ref`` and ``dist`` (absolute paths), ``type`` (the type id as an
        int, or the cell as written when it is not a number), ``level``, and one float per label column present.

    Raises:
        FileNotFoundError: no CSV, or an image it lists is missing. ValueError: a malformed CSV (the dataset
        reader's messages name the file, line and column), a label outside [0, 1], or none of ``labels`` in it.
    """
    path = _kadis_csv(root)
    lines = iter_csv_rows(path)
    header = {cell.strip().lower() for cell in next(lines, [])}
    lines.close()
    present = [label for label in labels if label in header]
    if not present:
        raise ValueError(f"{path}: expected one of the label columns {list(labels)}, got columns {sorted(header)}")
    # linearize=False: the targets (unused here) are 1 - label, which needs no spread of labels (one pair is fine).
    datasets = {label: KADIS700kDataset(path.parent, label=label, linearize=False) for label in present}
    first = datasets[present[0]]
    rows = []
    for i, record in enumerate(first.records):
        kind = record.dist_type
        row = {"ref": record.ref, "dist": record.dist,
               "type": int(kind) if kind is not None and kind.isdigit() else kind, "level": record.level}
        for label, dataset in datasets.items():
            row[label] = dataset.records[i].score
        rows.append(row)
    return rows


def read_mos_folder(root: Path) -> tuple[list[Path], list[Path], list[float]]:
    """Every distorted image present in a folder laid out like TID2013, its reference and its MOS.

    Read by :class:`~.datasets.tid2013.TID2013Dataset` with ``skip_missing=True``: distorted images listed in
    ``mos_with_names.txt`` but absent (with their reference) are left out, so a fragment of the data set works.

    Returns:
        (reference paths, distorted paths, MOS) in the order of the MOS file.

    Raises:
        FileNotFoundError: a missing MOS file or folder, or no listed pair present. ValueError: a malformed MOS file.
    """
    dataset = TID2013Dataset(root, skip_missing=True, linearize=False)
    return ([r.ref for r in dataset.records], [r.dist for r in dataset.records],
            [float(r.score) for r in dataset.records])

# ---------------------------------------------------------------------------------------------------------------
# Checks of the score


#: KADID types of :func:`full_size_pairs`: all but 15 (denoising), which the bundled model's data leave out too.
FULL_SIZE_TYPES = tuple(t for t in KADIS_TYPE_IDS if t != 15)

#: First distortions of :func:`stacking_check`: a :data:`LADDERS` family and its two strengths.
STACK_FIRSTS: dict[str, tuple[float, ...]] = {
    "white_noise": (0.03, 0.06),
    "gaussian_blur": (1.0, 2.0),
    "jpeg": (40, 15),
}

#: Second distortions of :func:`stacking_check`: ``(kind, family, parameter)``; ``family`` is a :data:`LADDERS`
#: family (parameter as there) or a cast of :data:`CASTS` (parameters as :func:`apply_cast` takes them). ``kind``
#: groups the figures.
STACK_SECONDS: tuple[tuple[str, str, float | tuple[float, ...]], ...] = (
    ("colour_cast", "gains", (1.3, 0.8, 0.6)),  # strong orange: the example of issue 20
    ("colour_cast", "gains", (0.9, 1.0, 1.15)),  # mild blue
    ("colour_cast", "white_balance", (3.0, 15.0)),  # warmer (yellow, a little magenta)
    ("colour_cast", "white_balance", (-3.0, -15.0)),  # cooler (blue, a little green)
    ("contrast", "contrast", 0.7),
    ("contrast", "contrast", 0.5),
    ("white_noise", "white_noise", 0.05),
    ("gaussian_blur", "gaussian_blur", 1.5),
    ("jpeg", "jpeg", 25),
)


def _apply_step(image: Tensor, family: str, value: float | Sequence[float], seed: int) -> Tensor:
    if family in CASTS:
        return apply_cast(image, family, value)  # type: ignore[arg-type]
    return degrade(image, family, value, seed=seed)  # type: ignore[arg-type]


def _share(values: Sequence[bool]) -> float | None:
    """The share of True values; None (JSON null) for no values."""
    return float(np.mean(values)) if len(values) else None


def severity_check(refs: Sequence[Tensor], scorers: Mapping[str, Scorer], *,
                   ladders: Mapping[str, tuple[float, ...]] = LADDERS, seed: int = 0) -> dict[str, dict]:
    """How often each scorer orders the levels of the severity ladders correctly.

    Args:
        refs: (3, H, W) reference images in [0, 1].
        scorers: named scorers.
        ladders: families and their parameters, weakest first.
        seed: seed of the random degradations (derived per reference and level).

    Returns:
        Per scorer: ``pair_accuracy`` (share of level pairs ``i < j`` of one ladder with ``score_i < score_j``),
        ``monotone`` (share of ladders whose scores rise strictly), ``pairs``, ``ladders`` and the same two shares
        per family.
    """
    refs_all, dists, keys = [], [], []
    for r, ref in enumerate(refs):
        for family, values in ladders.items():
            for level, value in enumerate(values):
                refs_all.append(ref)
                dists.append(degrade(ref, family, value, seed=derive_seed(seed, r, family, level) % 2**31))
                keys.append((r, family, level))
    table = score_table(scorers, refs_all, dists)
    result = {}
    for name in scorers:
        per_family: dict[str, dict[str, list]] = {f: {"pairs": [], "monotone": []} for f in ladders}
        ladder_scores: dict[tuple[int, str], list[float]] = {}
        for (r, family, level), value in zip(keys, table[name]):
            ladder_scores.setdefault((r, family), []).append(value)
        for (_, family), seq in ladder_scores.items():
            seq_a = np.asarray(seq)
            i, j = np.triu_indices(len(seq_a), k=1)
            per_family[family]["pairs"].extend((seq_a[j] > seq_a[i]).tolist())
            per_family[family]["monotone"].append(bool(np.all(np.diff(seq_a) > 0)))
        pairs = [v for d in per_family.values() for v in d["pairs"]]
        mono = [v for d in per_family.values() for v in d["monotone"]]
        result[name] = {
            "pair_accuracy": float(np.mean(pairs)), "monotone": float(np.mean(mono)), "pairs": len(pairs),
            "ladders": len(mono),
            "per_family": {f: {"pair_accuracy": float(np.mean(d["pairs"])), "monotone": float(np.mean(d["monotone"]))}
                           for f, d in per_family.items()},
        }
    return result


def stacking_check(photos: Sequence[Tensor], scorers: Mapping[str, Scorer], *, crop: int = 256,
                   firsts: Mapping[str, Sequence[float]] = STACK_FIRSTS,
                   seconds: Sequence[tuple[str, str, float | tuple[float, ...]]] = STACK_SECONDS,
                   min_cost_db: float = 1.0, seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Does a second distortion on top of a first one raise the score? (A stack never scores better than its part.)

    On the centred ``crop x crop`` crop of each photograph, every first distortion (:data:`STACK_FIRSTS`: noise,
    blur, JPEG at two strengths) is followed by every second one (:data:`STACK_SECONDS`: colour casts, contrast
    cuts, noise, blur, JPEG). A case counts where the second costs at least ``min_cost_db`` of PSNR:
    ``PSNR(first, then second) <= PSNR(first) - min_cost_db``; there a scorer is right when
    ``score(first, then second) > score(first)`` (strictly). ``-PSNR`` is therefore right in every case by
    construction, and a scorer's share says how often it agrees that the stack is worse.

    Args:
        photos: (3, H, W) held-out photographs in [0, 1], each at least ``crop`` pixels on both sides.
        scorers: named scorers (distortions, higher = worse).
        crop: side of the centred crop of each photograph.
        firsts: first distortions (family of :data:`LADDERS` -> strengths).
        seconds: second distortions ``(kind, family, parameter)``.
        min_cost_db: how much PSNR the second distortion must cost for a case to count.
        seed: seeds the random distortions (derived per photograph, first and second).
        log: optional progress callback.

    Returns:
        ``per_scorer``: for each scorer, ``share`` (of all cases), ``by_second`` (share per kind of second
        distortion) and ``by_first`` (share per first family); shares are None where no case counts. Also
        ``cases``, ``candidates`` (stacks built), ``cases_by_second``, ``crop``, ``min_cost_db`` and ``photos``.

    Raises:
        ValueError: a photograph smaller than ``crop``, or an unknown family.
    """
    unknown = sorted({f for _, f, _ in seconds} - set(LADDERS) - set(CASTS) | set(firsts) - set(LADDERS))
    if unknown:
        raise ValueError(f"unknown distortions {unknown}; expected families of LADDERS {sorted(LADDERS)} or casts "
                         f"{list(CASTS)}")
    right: dict[str, list[bool]] = {name: [] for name in scorers}
    kinds: list[str] = []
    first_families: list[str] = []
    candidates = 0
    for p, photo in enumerate(photos):
        ref = centre_crop(photo, crop)
        first_images, stack_images, owners = [], [], []
        for family, strengths in firsts.items():
            for s, strength in enumerate(strengths):
                first = degrade(ref, family, strength, seed=derive_seed(seed, p, "first", family, s) % 2**31)
                first_psnr = float(psnr(ref[None], first[None]))
                for k, (kind, second_family, value) in enumerate(seconds):
                    candidates += 1
                    second_seed = derive_seed(seed, p, "second", family, s, k) % 2**31
                    stack = _apply_step(first, second_family, value, second_seed)
                    if float(psnr(ref[None], stack[None])) <= first_psnr - min_cost_db:
                        stack_images.append(stack)
                        owners.append(len(first_images))
                        kinds.append(kind)
                        first_families.append(family)
                first_images.append(first)
        if not stack_images:
            continue
        images = first_images + stack_images
        table = score_table(scorers, [ref] * len(images), images)
        for name, values in table.items():
            first_scores = values[:len(first_images)][owners]
            right[name].extend((values[len(first_images):] > first_scores).tolist())
        if log is not None:
            log(f"stacking: photograph {p + 1}/{len(photos)}, {len(kinds)} cases so far")
    per_scorer = {}
    for name, flags in right.items():
        flags_a = np.asarray(flags, dtype=bool)
        per_scorer[name] = {
            "share": _share(flags_a),
            "by_second": {k: _share(flags_a[[i for i, x in enumerate(kinds) if x == k]])
                          for k in dict.fromkeys(kind for kind, _, _ in seconds)},
            "by_first": {f: _share(flags_a[[i for i, x in enumerate(first_families) if x == f]]) for f in firsts},
        }
    return {"per_scorer": per_scorer, "cases": len(kinds), "candidates": candidates,
            "cases_by_second": {k: kinds.count(k) for k in dict.fromkeys(kind for kind, _, _ in seconds)},
            "crop": crop, "min_cost_db": min_cost_db, "photos": len(photos)}


def correlations(predictions: Mapping[str, np.ndarray], label: np.ndarray,
                 groups: Sequence[object] | None = None) -> dict[str, dict]:
    """Spearman and Kendall correlation of each scorer's scores with a per-pair label (both distortions).

    Args:
        predictions: ``{name: (n,) scores}``, e.g. from :func:`score_table`.
        label: (n,) label per pair (higher = worse), e.g. the teacher's distortion or ``1 - VSI``.
        groups: optional group per pair (e.g. the distortion type); adds a Spearman correlation per group.

    Returns:
        Per scorer: ``srocc``, ``krocc``, ``n`` and, with ``groups``, ``srocc_per_group``.

    Raises:
        ValueError: a prediction or the groups of another length than the label.
    """
    label = np.asarray(label, dtype=np.float64)
    lengths = {name: len(pred) for name, pred in predictions.items() if len(pred) != len(label)}
    if lengths or (groups is not None and len(groups) != len(label)):
        raise ValueError(f"expected as many scores and groups as labels ({len(label)}), got scores {lengths} and "
                         f"{None if groups is None else len(groups)} groups")
    out = {}
    for name, pred in predictions.items():
        pred = np.asarray(pred, dtype=np.float64)
        entry = {"srocc": float(stats.spearmanr(pred, label)[0]), "krocc": float(stats.kendalltau(pred, label)[0]),
                 "n": len(label)}
        if groups is not None:
            by_group: dict[object, list[int]] = {}
            for i, g in enumerate(groups):
                by_group.setdefault(g, []).append(i)
            entry["srocc_per_group"] = {str(g): float(stats.spearmanr(pred[idx], label[idx])[0])
                                        for g, idx in sorted(by_group.items(), key=lambda kv: str(kv[0]))
                                        if len(idx) > 2}
        out[name] = entry
    return out


def label_check(refs: Sequence[Tensor], dists: Sequence[Tensor], label: np.ndarray, scorers: Mapping[str, Scorer],
                groups: Sequence[object] | None = None) -> dict[str, dict]:
    """Spearman and Kendall correlation of each scorer with a per-pair label (a distortion, higher = worse).

    Args:
        refs: (3, H, W) references.
        dists: (3, H, W) distorted images, one per reference entry.
        label: (n,) label per pair, e.g. the teacher's distortion or ``1 - VSI``.
        scorers: named scorers.
        groups: optional group per pair (e.g. the distortion type); adds a Spearman correlation per group.

    Returns:
        Per scorer: ``srocc``, ``krocc``, ``n`` and, with ``groups``, ``srocc_per_group`` (see :func:`correlations`).
    """
    label = np.asarray(label, dtype=np.float64)
    if len(label) != len(refs) or len(dists) != len(refs):
        raise ValueError(f"expected as many labels and distorted images as references ({len(refs)}), got "
                         f"{len(label)} labels and {len(dists)} distorted images")
    return correlations(score_table(scorers, refs, dists), label, groups)


def full_size_pairs(photos: Sequence[Tensor], *, types: Sequence[int] = FULL_SIZE_TYPES, levels: Sequence[int] = (2, 4),
                    seed: int = 0) -> tuple[list[Tensor], list[Tensor], np.ndarray, list[int]]:
    """Every KADIS distortion type of whole photographs, labelled with ``1 - VSI`` at VSI's own viewing distance.

    The training pairs of the bundled model are crops shorter than 384 px, where VSI looks at every pixel; at
    ``min(H, W) >= 384`` VSI first averages ``F x F`` blocks (``F = round(min(H, W) / 256)``). These pairs show how
    a model does on images of the size people score, against the label it was trained to follow (the teacher's
    distortion of the same pairs is one :func:`score_table` call with :func:`teacher_scorers` away).

    Args:
        photos: (3, H, W) float photographs in [0, 1], each at least 48 x 48.
        levels: KADIS levels (1-5) of every type.
        types: KADID type ids (default: all but 15, denoising, as in the bundled model's data).
        seed: seed of the random types (each pair gets ``derive_seed(seed, photo, type, level)``).

    Returns:
        ``(refs, dists, label, types)``: one entry per pair (the pairs of a photograph share one reference tensor);
        ``label`` is ``1 - VSI`` (higher = worse).
    """
    from .distortions import apply_distortion

    refs, dists, labels, kinds = [], [], [], []
    for p, photo in enumerate(photos):
        array = (photo.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        ref = torch.from_numpy(array).permute(2, 0, 1).float().div(255.0)  # one tensor, shared by its pairs
        for type_id in types:
            for level in levels:
                out = apply_distortion(array, type_id, level, seed=derive_seed(seed, p, type_id, level))
                dist = torch.from_numpy(out).permute(2, 0, 1).float().div(255.0)
                labels.append(float(1.0 - vsi(ref[None], dist[None])[0]))
                refs.append(ref)
                dists.append(dist)
                kinds.append(type_id)
    return refs, dists, np.array(labels), kinds


def mos_check(refs: Sequence[Tensor], dists: Sequence[Tensor], mos: np.ndarray,
              scorers: Mapping[str, Scorer]) -> dict[str, dict]:
    """Spearman correlation of each scorer's *negated* distortion with human opinion (MOS, higher = better)."""
    return {name: {"srocc": value["srocc"], "n": value["n"]}
            for name, value in label_check(refs, dists, -np.asarray(mos, dtype=np.float64), scorers).items()}


def identity_check(scorer: Scorer, refs: Sequence[Tensor], dists_per_ref: Sequence[Sequence[Tensor]], *,
                   known_scores: Sequence[Sequence[float]] | None = None) -> dict:
    """Identical pairs score 0 and below every distorted pair of the same reference.

    Args:
        scorer: the model's scorer.
        refs: (3, H, W) references.
        dists_per_ref: for each reference, its distorted images (pixel-identical ones are left out and counted).
        known_scores: for each reference, the scores of its distorted images by the same scorer, when they are known
            already (saves scoring them again); default: scored here.

    Returns:
        ``max_abs_identical`` (largest |score(ref, ref)|), ``min_score`` (lowest score over every pair, identical
        ones included), ``below_all_distorted`` (share of references whose identical pair scores below all their
        distorted pairs), ``min_margin`` and ``pixel_identical_left_out``.

    Raises:
        ValueError: ``known_scores`` that do not match ``dists_per_ref`` in length.
    """
    if known_scores is not None and [len(k) for k in known_scores] != [len(d) for d in dists_per_ref]:
        raise ValueError("expected known_scores with one score per distorted image of dists_per_ref, got lengths "
                         f"{[len(k) for k in known_scores]} for {[len(d) for d in dists_per_ref]}")
    ident = score_pairs(scorer, refs, refs)
    below, margins, left_out, lowest = [], [], 0, float(ident.min())
    for r, (ref, same, dists) in enumerate(zip(refs, ident, dists_per_ref)):
        kept = [i for i, d in enumerate(dists) if not torch.equal(d, ref)]
        left_out += len(dists) - len(kept)
        if not kept:
            continue
        if known_scores is None:
            others = score_pairs(scorer, [ref] * len(kept), [dists[i] for i in kept])
        else:
            others = np.asarray([known_scores[r][i] for i in kept], dtype=np.float64)
        lowest = min(lowest, float(others.min()))
        below.append(bool(same < others.min()))
        margins.append(float(others.min() - same))
    return {"max_abs_identical": float(np.abs(ident).max()), "min_score": lowest,
            "below_all_distorted": float(np.mean(below)) if below else float("nan"), "references": len(below),
            "min_margin": float(min(margins)) if margins else float("nan"), "pixel_identical_left_out": left_out}


def stability_check(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, score_range: float,
                    seeds: int = 10, num_patches: int | None = None) -> dict:
    """Standard deviation of the score over ``seeds`` sampling seeds, relative to ``score_range``.

    Args:
        model: the model.
        refs: (3, H, W) references of the subset.
        dists: their distorted images.
        score_range: the spread (max - min) of the model's scores over the whole evaluation set.
        seeds: seeds ``0 .. seeds - 1``.
        num_patches: patches per image (default: the model's).

    Returns:
        ``max_std``, ``mean_std``, ``max_std_over_range``, ``mean_std_over_range``, ``seeds``, ``pairs``, ``patches``.
    """
    draws = np.stack([score_pairs(model_scorer(model, num_patches=num_patches, seed=s), refs, dists)
                      for s in range(seeds)])
    std = draws.std(axis=0)
    return {"max_std": float(std.max()), "mean_std": float(std.mean()),
            "max_std_over_range": float(std.max() / score_range) if score_range > 0 else float("nan"),
            "mean_std_over_range": float(std.mean() / score_range) if score_range > 0 else float("nan"),
            "seeds": seeds, "pairs": len(refs), "patches": num_patches or model.config.num_patches}

# ---------------------------------------------------------------------------------------------------------------
# Checks of the loss


def gradient_cosines(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, num_patches: int = 256,
                     draws: int = 8, seed: int = 0) -> np.ndarray:
    """Cosine between the score's gradient w.r.t. ``dist`` (summed over ``draws`` CAPS draws) and ``dist - ref``.

    Returns:
        (n,) cosines, one per pair; positive means that gradient descent on the score moves ``dist`` towards
        ``ref``.
    """
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, seed=seed, reduction="sum")
    out = []
    for ref, dist in zip(refs, dists):
        image = dist[None].clone().requires_grad_(True)
        grad = torch.zeros_like(image)
        for _ in range(draws):
            (g,) = torch.autograd.grad(loss_fn(ref[None], image), image)
            grad += g
        out.append(float(F.cosine_similarity(grad.flatten(), (dist - ref).flatten(), dim=0)))
    return np.asarray(out)


def pixel_optimisation(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, steps: int = 60,
                       lr: float = 0.05, num_patches: int = 256, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> dict:
    """Gradient descent on the pixels of each ``dist`` with ``VTAMIQLoss`` alone (Adam on sigmoid logits).

    Each distorted image is the starting point; ``steps`` Adam steps at ``lr`` on its logits lower the loss against
    its reference. A loss that measures what a person sees moves the image towards the reference, so PSNR rises and
    the teacher's distortion falls.

    Args:
        model: the metric (frozen inside the loss).
        refs: (3, H, W) references in [0, 1].
        dists: (3, H, W) distorted images, the starting points.
        steps: Adam steps per image.
        lr: Adam step size (on the logits).
        num_patches: patches per image of the loss.
        seed: seed of the loss's CAPS draws.
        log: optional progress callback.

    Returns:
        Lists per pair: ``psnr_before``, ``psnr_after`` (dB), ``vsi_before``, ``vsi_after`` (VSI, 1 = identical),
        ``teacher_before``, ``teacher_after`` (the teacher's distortion ``D``, 0 = identical); shares of pairs that
        got closer to the reference: ``improved_psnr``, ``improved_vsi``, ``improved_teacher``; the means
        ``mean_psnr_change`` (dB, after - before) and ``mean_teacher_change`` (after - before, negative = better);
        ``pairs``, ``steps``, ``lr``.
    """
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, seed=seed)
    rows: dict[str, list[float]] = {f"{m}_{w}": [] for m in ("psnr", "vsi", "teacher") for w in ("before", "after")}
    for i, (ref, dist) in enumerate(zip(refs, dists)):
        logits = torch.logit(dist[None].clamp(1e-4, 1 - 1e-4)).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(ref[None], torch.sigmoid(logits)).backward()
            optimizer.step()
        final = torch.sigmoid(logits.detach())
        for when, image in (("before", dist[None]), ("after", final)):
            rows[f"psnr_{when}"].append(float(psnr(ref[None], image)))
            rows[f"vsi_{when}"].append(float(vsi(ref[None], image)))
            rows[f"teacher_{when}"].append(float(teacher_distortion(ref[None], image)))
        if log is not None:
            log(f"pixel optimisation lr {lr}: pair {i + 1}/{len(refs)}, PSNR {rows['psnr_before'][-1]:.2f} -> "
                f"{rows['psnr_after'][-1]:.2f} dB, teacher {rows['teacher_before'][-1]:.3f} -> "
                f"{rows['teacher_after'][-1]:.3f}")
    a = {k: np.asarray(v) for k, v in rows.items()}
    return {**rows, "improved_psnr": float(np.mean(a["psnr_after"] > a["psnr_before"])),
            "improved_vsi": float(np.mean(a["vsi_after"] > a["vsi_before"])),
            "improved_teacher": float(np.mean(a["teacher_after"] < a["teacher_before"])),
            "mean_psnr_change": float(np.mean(a["psnr_after"] - a["psnr_before"])),
            "mean_teacher_change": float(np.mean(a["teacher_after"] - a["teacher_before"])),
            "pairs": len(refs), "steps": steps, "lr": lr}

# ---------------------------------------------------------------------------------------------------------------
# Restoration networks


#: Degradations the restoration networks learn to undo.
RESTORATION_TASKS: dict[str, tuple[str, float]] = {
    "deblur": ("gaussian_blur", 1.5),
    "denoise": ("white_noise", 0.08),
    "dejpeg": ("jpeg", 15),
}

#: Training objectives of :func:`partner_comparison`: loss terms joined by ``+``, the second one weighted so that
#: both are equal on the first batch. ``l1``: mean absolute error; ``vtamiq``: ``VTAMIQLoss`` of the model; ``vsi``:
#: piq's ``VSILoss`` (``1 - VSI``; the NaN its gradient has at flat pixels is taken as 0); ``ms_ssim``: piq's
#: ``1 - MS-SSIM`` with as many of the paper's five scales as the crop allows, their weights renormalised (the rule
#: of :func:`vtamiq_metric.training.labels.teacher.ms_ssim_distortion`: 3 scales at 64 px, 4 from 81, 5 from 161).
PARTNER_VARIANTS: tuple[str, ...] = ("l1", "l1+vtamiq", "l1+vsi", "l1+ms_ssim")

#: The held-out measures of :func:`partner_comparison` that its mean rank is taken over, and whether higher is
#: better for each (piq's FSIM, GMSD and HaarPSI; none of them is a training objective).
PARTNER_MEASURES: dict[str, bool] = {"fsim": True, "gmsd": False, "haarpsi": True}

_LOSS_TERMS = ("l1", "vtamiq", "vsi", "ms_ssim")


class RestorationNet(nn.Module):
    """A small residual CNN for restoration: ``x + conv(relu(conv(... x)))``, ``depth`` 3x3 convolutions."""

    def __init__(self, width: int = 32, depth: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.body(x)).clamp(0, 1)


@dataclass
class _Crops:
    images: list[Tensor]
    size: int

    def batch(self, gen: torch.Generator, count: int) -> Tensor:
        out = []
        for _ in range(count):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            top = int(torch.randint(image.shape[1] - self.size + 1, (1,), generator=gen))
            left = int(torch.randint(image.shape[2] - self.size + 1, (1,), generator=gen))
            out.append(image[:, top:top + self.size, left:left + self.size])
        return torch.stack(out)


def _degrade_batch(batch: Tensor, task: str, gen: torch.Generator) -> Tensor:
    family, value = RESTORATION_TASKS[task]
    return torch.stack([degrade(x, family, value, seed=int(torch.randint(2**31, (1,), generator=gen)))
                        for x in batch])


def colour_cast_levels(ref: Tensor, image: Tensor) -> Tensor:
    """The colour cast of images against their references, in 8-bit levels.

    ``max over R, G, B of |mean(image channel) - mean(reference channel)|``, times 255: a restoration that keeps the
    colours keeps every channel's mean (issue 20's target: within 2 levels, 2/255).

    Args:
        ref: (B, 3, H, W) or (1, 3, H, W) float RGB references in [0, 1].
        image: (B, 3, H, W) float RGB images in [0, 1] (may differ in size from ``ref``: only means are compared).

    Returns:
        (B,) float64 >= 0, 0 = the same channel means.

    Raises:
        ValueError: inputs that are not (B, 3, H, W) batches of matching (or broadcastable) batch size.
    """
    for name, tensor in (("ref", ref), ("image", image)):
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(tensor.shape)}")
    if ref.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"expected ref with batch size 1 or {image.shape[0]}, got {ref.shape[0]}")
    shift = image.double().mean(dim=(2, 3)) - ref.double().mean(dim=(2, 3))
    return shift.abs().amax(dim=1) * 255.0


def _variant_terms(variant: str) -> tuple[str, ...]:
    terms = tuple(variant.split("+"))
    if not 1 <= len(terms) <= 2 or any(t not in _LOSS_TERMS for t in terms):
        raise ValueError(f"expected a variant of one or two loss terms joined by '+' among {list(_LOSS_TERMS)}, "
                         f"got {variant!r}")
    return terms


def _loss_terms(terms: Sequence[str], model: VTAMIQ, num_patches: int, seed: int,
                crop: int) -> dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """The loss terms ``(output, clean) -> scalar`` that ``terms`` name (lower = closer), for ``crop`` px crops."""
    out: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": F.l1_loss}
    if "vtamiq" in terms:
        vtamiq_loss = VTAMIQLoss(model, num_patches=num_patches, seed=seed)
        out["vtamiq"] = lambda output, clean: vtamiq_loss(clean, output)
    if "vsi" in terms:
        vsi_loss = _piq().VSILoss(data_range=1.0)

        def vsi_term(output: Tensor, clean: Tensor) -> Tensor:
            # piq's gradient map is sqrt(gx^2 + gy^2), whose gradient at a flat pixel is 0 * inf = NaN; take 0 there
            # (a valid subgradient), on a copy so that only this term's gradient is touched.
            output = output.clone()
            if output.requires_grad:
                output.register_hook(lambda grad: torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
            return vsi_loss(output, clean)

        out["vsi"] = vsi_term
    if "ms_ssim" in terms:
        # The teacher's MS-SSIM: as many of the paper's scales as fit, their weights renormalised (by piq).
        weights = torch.tensor(_MS_SSIM_WEIGHTS[:_ms_ssim_levels(crop, crop)])
        out["ms_ssim"] = lambda output, clean: 1.0 - _piq().multi_scale_ssim(output, clean, data_range=1.0,
                                                                             scale_weights=weights)
    return out


def _train_restorer(terms: Sequence[str], loss_terms: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
                    init: dict[str, Tensor], crops: _Crops, task: str, *, steps: int, batch_size: int, lr: float,
                    seed: int, log: Callable[[str], None] | None) -> tuple[RestorationNet, float | None]:
    """One :class:`RestorationNet` from ``init``, trained on ``terms``; the same crops and degradations for any terms.

    Returns:
        The network and the weight of the second term (None for one term).
    """
    net = RestorationNet()
    net.load_state_dict(init)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    weight = None
    for step in range(steps):
        clean = crops.batch(gen, batch_size)
        degraded = _degrade_batch(clean, task, gen)
        out = net(degraded)
        values = [loss_terms[t](out, clean) for t in terms]
        loss = values[0]
        if len(values) == 2:
            if weight is None:
                weight = float(values[0].detach()) / max(float(values[1].detach()), 1e-12)
            loss = values[0] + weight * values[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None and (step + 1) % max(1, steps // 5) == 0:
            log(f"{task} {'+'.join(terms)}: step {step + 1}/{steps} loss {loss.item():.4f}")
    return net, weight


def _measure(refs: Sequence[Tensor], images: Sequence[Tensor], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per image: ``psnr`` (dB), ``vsi`` (similarity), ``teacher`` (D), ``cast`` (8-bit levels) or piq's ``fsim``,
    ``gmsd`` and ``haarpsi``."""
    piq = _piq() if {"fsim", "gmsd", "haarpsi"} & set(names) else None
    functions: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "psnr": psnr, "vsi": vsi, "teacher": teacher_distortion, "cast": colour_cast_levels,
        "fsim": lambda r, x: piq.fsim(x, r, data_range=1.0, reduction="none"),
        "gmsd": lambda r, x: piq.gmsd(x, r, data_range=1.0, reduction="none"),
        "haarpsi": lambda r, x: piq.haarpsi(x, r, data_range=1.0, reduction="none"),
    }
    out = {name: [] for name in names}
    with torch.no_grad():
        for ref, image in zip(refs, images):
            pair = (ref[None].float().clamp(0, 1), image[None].float().clamp(0, 1))
            for name in names:
                out[name].append(float(functions[name](*pair)[0]))
    return {name: np.asarray(values) for name, values in out.items()}


def _restoration_setup(train_images: Sequence[Tensor], test_images: Sequence[Tensor], task: str, crop: int,
                       seed: int) -> tuple[_Crops, dict[str, Tensor], list[Tensor]]:
    """Checked inputs: the training crops, the shared initial weights and the degraded held-out images."""
    if task not in RESTORATION_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(RESTORATION_TASKS)}")
    small = [tuple(im.shape[1:]) for im in train_images if min(im.shape[1:]) < crop]
    if small or not train_images:
        raise ValueError(f"expected training images of at least {crop} x {crop} pixels, got sizes "
                         f"{small or 'no images'}")
    if not test_images:
        raise ValueError("expected held-out images, got none")
    torch.manual_seed(seed)
    init = RestorationNet().state_dict()
    test_gen = torch.Generator().manual_seed(derive_seed(seed, "test") % 2**63)
    test_degraded = [_degrade_batch(im[None], task, test_gen)[0] for im in test_images]
    return _Crops(list(train_images), crop), init, test_degraded


def _restore(net: RestorationNet, images: Sequence[Tensor]) -> list[Tensor]:
    with torch.no_grad():
        return [net(d[None])[0] for d in images]


def restoration_benefit(model: VTAMIQ, train_images: Sequence[Tensor], test_images: Sequence[Tensor], task: str, *,
                        steps: int = 300, batch_size: int = 8, crop: int = 64, lr: float = 1e-3,
                        num_patches: int = 64, seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Does ``VTAMIQLoss`` help a network it trains? L1 alone against L1 + VTAMIQLoss, everything else equal.

    Two :class:`RestorationNet` with the same initial weights are trained for ``steps`` Adam steps on the same
    random crops of ``train_images`` degraded the same way (:data:`RESTORATION_TASKS`): one on L1, one on
    ``L1 + w * VTAMIQLoss`` with ``w`` set so that both terms are equal on the first batch. Both then restore the
    degraded ``test_images`` (same degradation seeds), and PSNR and VSI to the references are averaged.
    :func:`partner_comparison` adds the other partners a user would pick and measures none of them trains on.

    Args:
        model: the metric (frozen inside the loss).
        train_images: (3, H, W) training photographs, each at least ``crop`` pixels on both sides.
        test_images: (3, H, W) held-out photographs.
        task: a key of :data:`RESTORATION_TASKS`.
        steps: training steps of each network.
        batch_size: crops per step.
        crop: crop side in pixels.
        lr: Adam learning rate of the networks.
        num_patches: patches per image of the loss.
        seed: seeds the initial weights, the crops and the degradations.
        log: optional progress callback.

    Returns:
        ``l1`` and ``l1+vtamiq`` entries with held-out ``psnr`` and ``vsi`` (means), ``degraded`` (the inputs'),
        ``weight`` (w), ``vsi_gain`` and ``psnr_change`` (with the loss minus without), ``steps`` and ``seconds``.
    """
    started = time.perf_counter()
    crops, init, test_degraded = _restoration_setup(train_images, test_images, task, crop, seed)
    loss_terms = _loss_terms(("l1", "vtamiq"), model, num_patches, seed, crop)
    results: dict[str, dict] = {}
    weight = None
    for variant in ("l1", "l1+vtamiq"):
        net, w = _train_restorer(_variant_terms(variant), loss_terms, init, crops, task, steps=steps,
                                 batch_size=batch_size, lr=lr, seed=seed, log=log)
        weight = w if w is not None else weight
        measured = _measure(test_images, _restore(net, test_degraded), ("psnr", "vsi"))
        results[variant] = {k: float(v.mean()) for k, v in measured.items()}
    degraded = {k: float(v.mean()) for k, v in _measure(test_images, test_degraded, ("psnr", "vsi")).items()}
    return {"task": task, "degradation": list(RESTORATION_TASKS[task]), **results, "degraded": degraded,
            "weight": weight, "vsi_gain": results["l1+vtamiq"]["vsi"] - results["l1"]["vsi"],
            "psnr_change": results["l1+vtamiq"]["psnr"] - results["l1"]["psnr"], "steps": steps,
            "seconds": round(time.perf_counter() - started, 1)}


def loss_alone_restoration(model: VTAMIQ, train_images: Sequence[Tensor], test_images: Sequence[Tensor], task: str,
                           *, steps: int = 300, batch_size: int = 8, crop: int = 64, lr: float = 1e-3,
                           num_patches: int = 64, seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """A restoration CNN trained with ``VTAMIQLoss`` alone: is its output closer to the reference than its input?

    A :class:`RestorationNet` (residual, so it starts as the identity) is trained for ``steps`` Adam steps on random
    crops of ``train_images`` degraded by ``task`` (:data:`RESTORATION_TASKS`), with the model's loss and nothing
    else. It then restores the degraded ``test_images``, and PSNR, the teacher's distortion, VSI and the colour cast
    (:func:`colour_cast_levels`) of its outputs are compared with those of its inputs. A loss that cannot be gamed
    raises PSNR, lowers the teacher's distortion and leaves the channel means alone.

    Args:
        model: the metric (frozen inside the loss).
        train_images: (3, H, W) training photographs, each at least ``crop`` pixels on both sides.
        test_images: (3, H, W) held-out photographs.
        task: a key of :data:`RESTORATION_TASKS` (issue 20 measures ``denoise`` and ``deblur``).
        steps: training steps.
        batch_size: crops per step.
        crop: crop side in pixels.
        lr: Adam learning rate of the network.
        num_patches: patches per image of the loss.
        seed: seeds the initial weights, the crops and the degradations (as in :func:`partner_comparison`).
        log: optional progress callback.

    Returns:
        ``degraded`` and ``restored``: means over the held-out images of ``psnr`` (dB), ``vsi`` (similarity),
        ``teacher`` (D, 0 = identical), ``cast`` (8-bit levels), and ``cast_max`` (the largest over the images);
        ``psnr_change`` (dB) and ``teacher_change`` (restored - degraded; negative = better);
        ``improved_psnr`` and ``improved_teacher`` (shares of held-out images the network brought closer);
        ``task``, ``degradation``, ``images``, ``steps``, ``seconds``.
    """
    started = time.perf_counter()
    crops, init, test_degraded = _restoration_setup(train_images, test_images, task, crop, seed)
    net, _ = _train_restorer(("vtamiq",), _loss_terms(("vtamiq",), model, num_patches, seed, crop), init, crops, task,
                             steps=steps, batch_size=batch_size, lr=lr, seed=seed, log=log)
    names = ("psnr", "vsi", "teacher", "cast")
    before = _measure(test_images, test_degraded, names)
    after = _measure(test_images, _restore(net, test_degraded), names)

    def summary(values: dict[str, np.ndarray]) -> dict[str, float]:
        return {**{k: float(v.mean()) for k, v in values.items()}, "cast_max": float(values["cast"].max())}

    return {"task": task, "degradation": list(RESTORATION_TASKS[task]), "degraded": summary(before),
            "restored": summary(after), "psnr_change": float(np.mean(after["psnr"] - before["psnr"])),
            "teacher_change": float(np.mean(after["teacher"] - before["teacher"])),
            "improved_psnr": float(np.mean(after["psnr"] > before["psnr"])),
            "improved_teacher": float(np.mean(after["teacher"] < before["teacher"])),
            "images": len(test_images), "steps": steps, "seconds": round(time.perf_counter() - started, 1)}


def mean_ranks(table: Mapping[str, Mapping[str, float]],
               measures: Mapping[str, bool] = PARTNER_MEASURES) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Rank the rows of a table on each measure (1 = best, ties share the mean rank) and average the ranks.

    Args:
        table: ``{row: {measure: value}}``, e.g. ``{"l1": {"fsim": 0.88, "gmsd": 0.047, ...}, ...}``.
        measures: the measures to rank on and whether higher is better for each.

    Returns:
        ``(ranks, mean_rank)``: ``ranks[measure][row]`` and ``mean_rank[row]``, the mean over ``measures``.

    Raises:
        ValueError: an empty table or a row without one of the measures.
    """
    if not table or not measures:
        raise ValueError(f"expected a table and measures to rank on, got {len(table)} rows and {len(measures)} "
                         "measures")
    missing = {row: [m for m in measures if m not in values] for row, values in table.items()}
    missing = {row: m for row, m in missing.items() if m}
    if missing:
        raise ValueError(f"expected every row to have the measures {list(measures)}, missing {missing}")
    rows = list(table)
    ranks = {}
    for measure, higher_is_better in measures.items():
        values = np.array([float(table[row][measure]) for row in rows])
        ranked = stats.rankdata(-values if higher_is_better else values, method="average")
        ranks[measure] = {row: float(r) for row, r in zip(rows, ranked)}
    return ranks, {row: float(np.mean([ranks[m][row] for m in measures])) for row in rows}


def partner_comparison(model: VTAMIQ, train_images: Sequence[Tensor], test_images: Sequence[Tensor],
                       task: str = "deblur", *, variants: Sequence[str] = PARTNER_VARIANTS, steps: int = 300,
                       batch_size: int = 8, crop: int = 64, lr: float = 1e-3, num_patches: int = 64, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> dict:
    """``VTAMIQLoss`` beside the losses a user would pick instead, as a partner of L1 in training a restoration CNN.

    One :class:`RestorationNet` per variant (:data:`PARTNER_VARIANTS`: L1 alone, L1 + ``VTAMIQLoss``, L1 + piq's
    ``VSILoss``, L1 + ``1 - MS-SSIM``), all from the same initial weights, trained for ``steps`` Adam steps on the
    same random crops of ``train_images`` degraded the same way; the second term of a variant is weighted so that
    both terms are equal on the first batch. Each then restores the degraded ``test_images`` and is judged by
    measures none of them trains on: PSNR, and piq's FSIM, GMSD (lower is better) and HaarPSI, ranked across the
    variants (:func:`mean_ranks` over :data:`PARTNER_MEASURES`).

    MS-SSIM's five scales need 161 px; the ``ms_ssim`` term uses as many scales as ``crop`` allows, with the
    weights of those scales renormalised (the teacher's rule): 3 scales at the default 64 px, 5 from 161 px.

    Args:
        model: the metric (frozen inside ``VTAMIQLoss``).
        train_images: (3, H, W) training photographs, each at least ``crop`` pixels on both sides.
        test_images: (3, H, W) held-out photographs (at least 48 px for HaarPSI).
        task: a key of :data:`RESTORATION_TASKS` (issue 20 compares on ``deblur``).
        variants: training objectives, loss terms joined by ``+`` (see :data:`PARTNER_VARIANTS`).
        steps: training steps of each network.
        batch_size: crops per step.
        crop: crop side in pixels.
        lr: Adam learning rate of the networks.
        num_patches: patches per image of ``VTAMIQLoss``.
        seed: seeds the initial weights, the crops and the degradations.
        log: optional progress callback.

    Returns:
        ``variants``: per variant the held-out means ``psnr`` (dB), ``fsim``, ``gmsd``, ``haarpsi`` and ``weight``
        (of the second term; None for one term); ``degraded`` (the inputs' means); ``ranks`` (per measure, 1 =
        best), ``mean_rank`` and ``best`` (the variant with the lowest mean rank; the first of them on a tie);
        ``task``, ``degradation``, ``steps``, ``crop``, ``ms_ssim_scales``, ``seconds``.

    Raises:
        ValueError: an unknown task or variant, or images too small for the crop.
    """
    started = time.perf_counter()
    terms = {variant: _variant_terms(variant) for variant in variants}
    crops, init, test_degraded = _restoration_setup(train_images, test_images, task, crop, seed)
    loss_terms = _loss_terms(sorted({t for ts in terms.values() for t in ts}), model, num_patches, seed, crop)
    names = ("psnr", *PARTNER_MEASURES)
    table: dict[str, dict] = {}
    for variant, variant_terms in terms.items():
        net, weight = _train_restorer(variant_terms, loss_terms, init, crops, task, steps=steps,
                                      batch_size=batch_size, lr=lr, seed=seed, log=log)
        measured = _measure(test_images, _restore(net, test_degraded), names)
        table[variant] = {**{k: float(v.mean()) for k, v in measured.items()}, "weight": weight}
    ranks, mean_rank = mean_ranks(table)
    degraded = {k: float(v.mean()) for k, v in _measure(test_images, test_degraded, names).items()}
    return {"task": task, "degradation": list(RESTORATION_TASKS[task]), "variants": table, "degraded": degraded,
            "ranks": ranks, "mean_rank": mean_rank, "best": min(mean_rank, key=mean_rank.__getitem__),
            "steps": steps, "crop": crop, "ms_ssim_scales": _ms_ssim_levels(crop, crop),
            "seconds": round(time.perf_counter() - started, 1)}
