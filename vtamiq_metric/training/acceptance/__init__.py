"""Acceptance checks of a trained VTAMIQ model: the figures its model card reports, measured the same way for any model.

Every check takes *scorers*, functions ``(ref, dist) -> (B,)`` distortion scores (higher = worse) on ``(B, 3, H, W)``
float images in [0, 1], so the model is always reported next to its teacher (the distortion ``D`` of
:mod:`vtamiq_metric.training.labels.teacher`), VSI (as ``1 - VSI``) and PSNR (as ``-PSNR``), which tells a reader
where it stands. ``benchmarks/eval_model.py`` runs them all and writes one JSON object; the numbers in brackets are
issue 20's checks.

One module per concern:

- :mod:`.degradations`: the severity ladders (:data:`LADDERS`, :func:`degrade`), explicit colour casts
  (:data:`CASTS`, :func:`apply_cast`), :func:`centre_crop`, :func:`load_images`.
- :mod:`.scorers`: the model, the teacher and its measures, VSI, PSNR and classical measures as scorers;
  :func:`score_table` (every scorer on every pair, batched).
- :mod:`.data`: the held-out pairs and MOS folders, read by the dataset readers (:func:`read_kadis_pairs`,
  :func:`read_mos_folder`).
- :mod:`.score_checks`: :func:`severity_check` (six ladders of five levels) [5]; :func:`correlations`,
  :func:`label_check` and :func:`full_size_pairs` (agreement with the teacher and VSI on crops and whole
  photographs) [6]; :func:`mos_check` (human opinion) [7]; :func:`identity_check` and :func:`stability_check` [5].
- :mod:`.stacking`: :func:`stacking_check`, a second distortion on top of a first must raise the score [2].
- :mod:`.loss_checks`: :func:`gradient_cosines` and :func:`pixel_optimisation` (Adam on the pixels with the loss
  alone; PSNR, VSI and the teacher before and after) [1].
- :mod:`.restoration`: :func:`loss_alone_restoration` (a small CNN trained with the loss alone; PSNR, teacher and
  colour cast of its outputs) [3]; :func:`partner_comparison` (the same CNN with L1 and each partner a user would
  pick; PSNR, FSIM, GMSD, HaarPSI and :func:`mean_ranks`) [4]; :func:`restoration_benefit` (L1 against
  L1 + ``VTAMIQLoss``).
"""

from __future__ import annotations

from .data import KADIS_LABELS, read_kadis_pairs, read_mos_folder
from .degradations import CASTS, LADDERS, apply_cast, centre_crop, degrade, load_images
from .loss_checks import gradient_cosines, pixel_optimisation
from .restoration import (
    PARTNER_MEASURES,
    PARTNER_VARIANTS,
    RESTORATION_TASKS,
    RestorationNet,
    colour_cast_levels,
    loss_alone_restoration,
    mean_ranks,
    partner_comparison,
    restoration_benefit,
)
from .score_checks import (
    FULL_SIZE_TYPES,
    correlations,
    full_size_pairs,
    identity_check,
    label_check,
    mos_check,
    severity_check,
    stability_check,
)
from .scorers import (
    Scorer,
    ciede2000_scorer,
    fsimc_scorer,
    gmsd_scorer,
    model_scorer,
    psnr,
    psnr_scorer,
    reference_scorers,
    score_pairs,
    score_table,
    teacher_scorers,
    vsi_scorer,
)
from .stacking import STACK_FIRSTS, STACK_SECONDS, stacking_check

__all__ = ["CASTS", "FULL_SIZE_TYPES", "KADIS_LABELS", "LADDERS", "PARTNER_MEASURES", "PARTNER_VARIANTS",
           "RESTORATION_TASKS", "STACK_FIRSTS", "STACK_SECONDS", "RestorationNet", "Scorer", "apply_cast",
           "centre_crop", "ciede2000_scorer", "colour_cast_levels", "correlations", "degrade", "fsimc_scorer",
           "full_size_pairs", "gmsd_scorer", "gradient_cosines", "identity_check", "label_check", "load_images",
           "loss_alone_restoration", "mean_ranks", "model_scorer", "mos_check", "partner_comparison",
           "pixel_optimisation", "psnr", "psnr_scorer", "read_kadis_pairs", "read_mos_folder", "reference_scorers",
           "restoration_benefit", "score_pairs", "score_table", "severity_check", "stability_check", "stacking_check",
           "teacher_scorers", "vsi_scorer"]
