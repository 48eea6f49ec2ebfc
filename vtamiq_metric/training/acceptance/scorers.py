"""Scorers: ``(ref, dist) -> (B,)`` distortions, 0 = identical, higher = worse, and the batched scoring of pairs.

The model (:func:`model_scorer`) is reported next to its teacher (the distortion ``D`` of
:mod:`vtamiq_metric.training.labels.teacher`), VSI (``1 - VSI``) and PSNR (``-PSNR``), and, where issue 20 names them,
classical measures (``1 - MS-SSIM``, mean S-CIELAB and CIEDE2000, GMSD, ``1 - FSIMc``). :func:`score_table` hands each
batch to every scorer in turn, so the teacher and its three measures cost one computation per batch
(:func:`teacher_scorers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..._precision import Precision
from ...api import score
from ...model.vtamiq import VTAMIQ
from ..labels.teacher import SPREADS, teacher_components
from ..labels.vsi import vsi

__all__ = ["Scorer", "ciede2000_scorer", "fsimc_scorer", "gmsd_scorer", "model_scorer", "psnr", "psnr_scorer",
           "reference_scorers", "score_pairs", "score_table", "teacher_scorers", "vsi_scorer"]


#: ``(ref, dist) -> (B,)`` distortion scores (higher = worse) for (B, 3, H, W) float images in [0, 1].
Scorer = Callable[[Tensor, Tensor], Tensor]


def psnr(ref: Tensor, dist: Tensor) -> Tensor:
    """PSNR in dB of (B, 3, H, W) images in [0, 1]; capped at 100 dB for identical images."""
    mse = (ref.double() - dist.double()).square().mean(dim=(1, 2, 3))
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).float()


def model_scorer(model: VTAMIQ, *, num_patches: int | None = None, seed: int = 0, num_repeats: int = 1,
                 batch_size: int = 16, precision: Precision = "fp32") -> Scorer:
    """The model's :func:`vtamiq_metric.score` as a scorer (default patch count and seed 0 unless given)."""

    def run(ref: Tensor, dist: Tensor) -> Tensor:
        with torch.no_grad():
            scores = score(ref, dist, model=model, num_patches=num_patches, seed=seed, num_repeats=num_repeats,
                           batch_size=batch_size, precision=precision)
        return scores.cpu()  # one tensor: score()'s overloads know there is no return_std

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
            parts["teacher"] = torch.stack([parts[name].clamp_min(0.0) / SPREADS[name] for name in SPREADS]).sum(0)
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


def _piq() -> Any:
    try:
        import piq
    except ImportError as exc:  # piq is a dependency of the train extra
        raise ImportError("these checks need piq: pip install 'vtamiq-metric[train]'") from exc
    return piq


def gmsd_scorer(ref: Tensor, dist: Tensor) -> Tensor:
    """GMSD (gradient magnitude similarity deviation, piq's): 0 = identical, higher = worse."""
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
           for r, d in zip(ref.expand_as(dist), dist, strict=True)]
    return torch.tensor(out, dtype=torch.float32)


def reference_scorers(model: VTAMIQ, *, extended: bool = False, **kwargs: Any) -> dict[str, Scorer]:
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
