"""Checks of the loss on the pixels: the gradient's direction, and optimisation with the loss alone (check 1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...loss import VTAMIQLoss
from ...model.vtamiq import VTAMIQ
from ..labels.teacher import teacher_distortion
from ..labels.vsi import vsi
from .scorers import psnr

__all__ = ["gradient_cosines", "pixel_optimisation"]


def gradient_cosines(model: VTAMIQ, refs: Sequence[Tensor], dists: Sequence[Tensor], *, num_patches: int = 256,
                     draws: int = 8, seed: int = 0) -> np.ndarray:
    """Cosine between the score's gradient w.r.t. ``dist`` (summed over ``draws`` CAPS draws) and ``dist - ref``.

    Returns:
        (n,) cosines, one per pair; positive means that gradient descent on the score moves ``dist`` towards
        ``ref``.
    """
    loss_fn = VTAMIQLoss(model, num_patches=num_patches, seed=seed, reduction="sum")
    out = []
    for ref, dist in zip(refs, dists, strict=True):
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
    for i, (ref, dist) in enumerate(zip(refs, dists, strict=True)):
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
