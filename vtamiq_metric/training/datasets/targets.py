"""Training targets from published quality labels.

Every dataset publishes its label on its own scale and in its own direction (DMOS: lower is better; MOS, ELO,
VSI: higher is better). VTAMIQ regresses a *distortion* score, so every reader turns its raw labels into targets in
``[0, 1]`` where **0 is the best quality** in the dataset and 1 the worst.

Processing order (:func:`process_scores`), a documented decision:

1. min-max normalise the raw scores to ``[0, 1]``;
2. reverse (``1 - x``) when the raw score is higher-is-better, so that 0 = best;
3. optionally *linearise* with :func:`histogram_equalize` (a smooth histogram equalisation), which ends with a
   second min-max normalisation.

This is the order of the paper-era reference code (P21/R22 ``process_data``: normalise, reverse, linearise,
normalise), which produced the paper's results. The reference HEAD (H24 ``process_qs``) linearises before reversing;
for the 5-parameter logistic used here the two orders give the same targets, because the family is closed under
``x -> 1 - x`` applied to both input and output (the logistic term flips sign and the linear term's slope stays
non-negative after reflecting both axes). Reversing first has a practical advantage: the equalising curve then always
maps distortion-like scores to increasing quantiles, so it can be fitted with monotone-increasing bounds.

Histogram equalisation (``linearize=True``) fits the 5-parameter logistic :func:`logistic5` from the sorted scores to
uniform quantiles by ordinary least squares (``scipy.optimize.curve_fit``), with ``p0, p1, p3 >= 0`` so the curve is
non-decreasing and the ranking of the images is never changed. The reference HEAD's ``"L2"`` option squares the
residuals before ``leastsq`` (it minimises the sum of r**4, docs/background/datasets.md §3.4); we use plain least
squares like the paper-era code.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

__all__ = ["as_scores", "histogram_equalize", "logistic5", "minmax_normalize", "process_scores"]

_logger = logging.getLogger(__name__)

# Above this many scores the equalising curve is fitted on evenly spaced order statistics (the curve has 5 parameters;
# 20k points describe the empirical distribution function far more finely than it can follow).
_MAX_FIT_POINTS = 20_000
# Below this many scores a 5-parameter fit is not meaningful; the scores are only min-max normalised.
_MIN_FIT_POINTS = 6


def logistic5(x: np.ndarray | float, p0: float, p1: float, p2: float, p3: float, p4: float) -> np.ndarray:
    """Five-parameter logistic with a monotone linear term (Sheikh et al. 2006 form, as in the VTAMIQ code).

    ``f(x) = p0 * (0.5 - 1 / (1 + exp(p1 * (x - p2)))) + |p3| * x + p4``

    The absolute value keeps the linear term non-decreasing. The reference code adds ``1e-6`` inside the exponent;
    that constant only shifts ``p2`` by ``1e-6 / p1`` and is omitted here. Evaluated with ``scipy.special.expit`` so
    large arguments do not overflow.

    Args:
        x: input values, any shape.
        p0: amplitude of the logistic term.
        p1: steepness of the logistic term.
        p2: centre of the logistic term (in units of ``x``).
        p3: slope of the linear term (its absolute value is used).
        p4: offset.

    Returns:
        ``f(x)`` as a float64 array of the shape of ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    # 1 / (1 + exp(z)) == expit(-z)
    return p0 * (0.5 - expit(-p1 * (x - p2))) + abs(p3) * x + p4


def as_scores(scores: Sequence[float] | np.ndarray, what: str = "scores") -> np.ndarray:
    """Return ``scores`` as a finite 1-D float64 array or raise ValueError/TypeError."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"expected {what} as a 1-D sequence of numbers, got {type(scores).__name__}: {err}") from err
    if arr.ndim != 1:
        raise ValueError(f"expected {what} as a 1-D array, got shape {arr.shape}")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ValueError(f"expected finite {what}, got {bad} non-finite value(s) out of {arr.size}")
    return arr


def minmax_normalize(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Map scores linearly onto ``[0, 1]`` (min -> 0, max -> 1).

    Args:
        scores: 1-D finite scores with at least two distinct values.

    Returns:
        float64 array, same length, in ``[0, 1]``; the order of the values is kept.

    Raises:
        ValueError: the scores are not 1-D, not finite, or all equal.
    """
    arr = as_scores(scores)
    if arr.size == 0:
        raise ValueError("expected at least two distinct scores, got an empty array")
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        raise ValueError(f"expected at least two distinct scores to normalise, got {arr.size} all equal to {lo}")
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)


def _fit_equalizing_curve(xs: np.ndarray, q: np.ndarray) -> np.ndarray | None:
    """Least-squares fit of a non-decreasing :func:`logistic5` through the points ``(xs, q)``; None if all fail."""
    med = float(np.median(xs))
    spread = float(xs.max() - xs.min()) or 1.0
    guesses = (
        (1.0, 1.0, med, 1.0, float(np.median(q))),  # the reference code's initial guess
        (1.0, 10.0 / spread, med, 0.1, 0.5),
        (1.0, 40.0 / spread, med, 0.01, 0.5),
    )
    inf = np.inf
    bounds = ([0.0, 0.0, -inf, 0.0, -inf], [inf, inf, inf, inf, inf])
    best: tuple[float, np.ndarray] | None = None
    for guess in guesses:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                params, _ = curve_fit(logistic5, xs, q, p0=guess, bounds=bounds, maxfev=20_000)
        except (RuntimeError, ValueError) as err:
            _logger.debug("equalising fit from %s failed: %s", guess, err)
            continue
        sse = float(np.sum((logistic5(xs, *params) - q) ** 2))
        if np.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, params)
    return None if best is None else best[1]


def histogram_equalize(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Smooth histogram equalisation of scores (the paper's "histogram equalization" of training labels).

    The scores are min-max normalised, sorted, and a non-decreasing :func:`logistic5` is fitted by least squares from
    the sorted scores to uniform quantiles ``k / (n - 1)``, ``k = 0 .. n-1`` (``scipy.optimize.curve_fit``, several
    initial guesses, lowest sum of squared errors kept). The curve is applied to every score and the result is min-max
    normalised again. Because the curve has only five parameters the result is a *smooth* approximation of the
    empirical distribution function: ties stay ties and the order of the scores never changes. (Fitting to ``k / n``
    like the reference code gives the same result after the final normalisation.)

    With fewer than 6 scores, or when every fit fails, the scores are only min-max normalised (logged as a warning).

    Args:
        scores: 1-D finite scores, any direction, at least two distinct values.

    Returns:
        float64 array in ``[0, 1]``, same length and same ordering as ``scores``, with a roughly uniform histogram.

    Raises:
        ValueError: the scores are not 1-D, not finite, or all equal.
    """
    x = minmax_normalize(scores)
    n = x.size
    if n < _MIN_FIT_POINTS:
        _logger.warning("histogram equalisation needs %d or more scores, got %d; min-max only", _MIN_FIT_POINTS, n)
        return x
    xs = np.sort(x)
    q = np.arange(n, dtype=np.float64) / (n - 1)
    if n > _MAX_FIT_POINTS:
        idx = np.round(np.linspace(0, n - 1, _MAX_FIT_POINTS)).astype(np.int64)
        xs, q = xs[idx], q[idx]
    params = _fit_equalizing_curve(xs, q)
    if params is None:
        _logger.warning("histogram equalisation: the logistic fit failed for all initial guesses; using min-max only")
        return x
    y = logistic5(x, *params)
    if not float(y.max()) > float(y.min()):
        _logger.warning("histogram equalisation produced a constant curve; using min-max only")
        return x
    return minmax_normalize(y)


def process_scores(scores: Sequence[float] | np.ndarray, *, higher_is_better: bool, linearize: bool) -> np.ndarray:
    """Turn raw published labels into training targets (0 = best quality, 1 = worst).

    Order: min-max normalise -> reverse if ``higher_is_better`` -> :func:`histogram_equalize` if ``linearize``
    (see the module docstring for why this order).

    Args:
        scores: raw labels of one whole dataset (MOS, DMOS, ELO, ...), 1-D, finite, at least two distinct values.
        higher_is_better: True when a larger raw label means better quality (MOS, ELO, similarity indices).
        linearize: apply smooth histogram equalisation after orienting.

    Returns:
        float64 targets in ``[0, 1]``, same length as ``scores``; 0 = best quality. The targets are a monotone
        function of the raw labels (decreasing if ``higher_is_better``, else increasing).

    Raises:
        ValueError: the scores are not 1-D, not finite, or all equal.
    """
    if not isinstance(higher_is_better, bool) or not isinstance(linearize, bool):
        raise TypeError(
            f"expected bool higher_is_better and linearize, got {type(higher_is_better).__name__} and "
            f"{type(linearize).__name__}"
        )
    t = minmax_normalize(scores)
    if higher_is_better:
        t = 1.0 - t
    if linearize:
        t = histogram_equalize(t)
    return t
