"""Stacked distortions (issue 20, check 2): a second distortion on top of a first one must raise the score.

A metric that is optimised must never find that adding damage lowers its score. Here a first distortion (noise, blur
or JPEG) is followed by a second one (a colour cast of :data:`~.degradations.CASTS`, a contrast cut, or another of the
three), and wherever the second costs at least 1 dB of PSNR, the stack must score worse than its first part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from torch import Tensor

from ..seeds import derive_seed
from .degradations import CASTS, LADDERS, apply_cast, centre_crop, degrade
from .scorers import Scorer, psnr, score_table

__all__ = ["STACK_FIRSTS", "STACK_SECONDS", "stacking_check"]


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


def _share(values: Sequence[bool] | np.ndarray) -> float | None:
    """The share of True values; None (JSON null) for no values."""
    return float(np.mean(values)) if len(values) else None


def stacking_check(photos: Sequence[Tensor], scorers: Mapping[str, Scorer], *, crop: int = 256,
                   firsts: Mapping[str, Sequence[float]] = STACK_FIRSTS,
                   seconds: Sequence[tuple[str, str, float | tuple[float, ...]]] = STACK_SECONDS,
                   min_cost_db: float = 1.0, seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """The share of stacked distortions that score worse than their first part (a stack must never score better).

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
        first_images: list[Tensor] = []
        stack_images: list[Tensor] = []
        owners: list[int] = []
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
