"""Evaluation metrics as in the paper: SROCC, KROCC, PLCC after a logistic fit, RMSE; run aggregation; cross tables.

Sign convention: VTAMIQ predicts a *distortion* (0 = perfect) and the training targets of every dataset are
distortion-like too (0 = best quality, see :mod:`.datasets.targets`). Pass both in that orientation and a good model
has **positive** SROCC, KROCC and PLCC. Passing raw MOS (higher = better) as the target makes the rank correlations
negative; this module never flips signs silently.

PLCC follows the paper ("non-linear fitting ... prior to computing PLCC", Sheikh et al. 2006): the predictions are
mapped to the targets with the 5-parameter logistic :func:`.datasets.targets.logistic5`
``f(x) = p0 (0.5 - 1/(1 + exp(p1 (x - p2)))) + |p3| x + p4`` fitted by least squares (``scipy.optimize.curve_fit``)
in the direction predictions -> targets (as the reference HEAD; the paper-era code fitted the reverse direction,
docs/background/datasets.md §3.1), then ``plcc = pearson(target, f(pred))`` and ``rmse = rms(target - f(pred))``. The
fit runs on standardised data (which leaves the result unchanged: the family absorbs affine maps of x and positive
affine maps of y) from several initial guesses, keeping the lowest sum of squared errors; if every fit fails or is worse
than a straight line, a linear least-squares fit is used instead (reported in ``"fit"``). Because the fitted curve
includes a free scale and offset, ``plcc`` is never negative; the signed linear correlation is ``plcc_nofit``, and
``rmse_nofit`` is the RMS difference without any mapping (meaningful when predictions and targets share the ``[0, 1]``
target scale).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

from .datasets.targets import as_scores, logistic5

__all__ = ["METRICS", "aggregate_runs", "correlations", "cross_dataset_table", "fit_logistic"]

_logger = logging.getLogger(__name__)

#: metric names produced by :func:`correlations` and aggregated by :func:`aggregate_runs`
METRICS: tuple[str, ...] = ("srocc", "krocc", "plcc", "plcc_nofit", "rmse", "rmse_nofit")


def _as_vector(values: Any, what: str) -> np.ndarray:
    """Array-like or tensor -> finite float64 1-D array (singleton dims squeezed); checks as for targets."""
    if hasattr(values, "detach"):  # torch tensors, without importing torch here
        values = values.detach().cpu().numpy()
    try:
        shape = np.shape(values)
    except ValueError:  # ragged input: let as_scores report it
        shape = (0,)
    if len(shape) != 1 and math.prod(shape) == max(shape, default=1):  # scalar, (N, 1), (1, N): squeeze to (N,)
        values = np.reshape(values, -1)
    return as_scores(values, what)


def fit_logistic(pred: Any, target: Any) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The map predictions -> targets that PLCC is computed after (see the module docstring), as a function.

    Args:
        pred: predictions ``(N,)``, N >= 2, not constant.
        target: targets ``(N,)``, not constant.

    Returns:
        ``(curve, method)``: ``curve(x)`` maps any array of predictions to fitted targets (float64, same shape), and
        ``method`` is ``"logistic5"`` or ``"linear"`` (the fallback, also used for five points or fewer).

    Raises:
        TypeError / ValueError: as :func:`correlations` for bad inputs; ValueError for constant inputs.
    """
    x = _as_vector(pred, "pred")
    y = _as_vector(target, "target")
    if x.size != y.size or x.size < 2 or _constant(x) or _constant(y):
        raise ValueError(f"expected pred and target of the same length >= 2, neither constant; got lengths {x.size} "
                         f"and {y.size}")
    # Standardised on power-of-two rescaled copies (exact, so ordinary inputs give the same bits as without): values
    # near the float64 limit, e.g. +-1e308, would overflow x - mean and the squares of the std.
    ex, ey = _exponent(x), _exponent(y)
    xs, ys = np.ldexp(x, -ex), np.ldexp(y, -ey)
    mx, sx, my, sy = xs.mean(), xs.std(), ys.mean(), ys.std()
    if not sx > 0 or not sy > 0:
        raise ValueError("expected pred and target that are not constant after rescaling; got values too close to "
                         "each other to fit")
    u, v = (xs - mx) / sx, (ys - my) / sy
    slope, intercept = np.polyfit(u, v, 1)
    best_params: tuple[float, ...] | None = None
    best_sse, method = float(np.sum((v - (slope * u + intercept)) ** 2)), "linear"
    if len(u) > 5:  # five parameters need more than five points; otherwise a line is the only honest fit
        med = float(np.median(u))
        span = float(v.max() - v.min())
        guesses = (
            (span, 1.0, med, 0.1, 0.0),  # increasing logistic, weak linear part
            (-span, 1.0, med, 0.1, 0.0),  # decreasing logistic
            (span, 4.0, med, 0.01, 0.0),  # steep
            (1.0, 1.0, med, 1.0, float(np.median(v))),  # the reference code's guess
            (2.0 * span, 0.5, med, 0.0, 0.0),  # shallow, no linear part
        )
        for guess in guesses:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", OptimizeWarning)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    params, _ = curve_fit(logistic5, u, v, p0=guess, maxfev=20_000, ftol=1e-12, xtol=1e-12)
            except (RuntimeError, ValueError) as err:
                _logger.debug("logistic fit from %s failed: %s", guess, err)
                continue
            fit = logistic5(u, *params)
            sse = float(np.sum((v - fit) ** 2))
            if np.all(np.isfinite(fit)) and sse < best_sse:
                best_params, best_sse, method = tuple(float(p) for p in params), sse, "logistic5"

    def curve(values: np.ndarray) -> np.ndarray:
        w = (np.ldexp(np.asarray(values, dtype=np.float64), -ex) - mx) / sx
        fitted = slope * w + intercept if best_params is None else logistic5(w, *best_params)
        return np.ldexp(fitted * sy + my, ey)

    return curve, method


def _constant(values: np.ndarray) -> bool:
    """All values equal (``np.ptp`` would overflow for values of both signs near the float64 limit)."""
    return bool(values.max() == values.min())


def _exponent(values: np.ndarray) -> int:
    """The binary exponent of the largest magnitude: ``ldexp(values, -e)`` lies in (-1, 1), exactly rescaled."""
    return int(np.frexp(np.max(np.abs(values)))[1])


def _rms(values: np.ndarray) -> float:
    """Root mean square without overflow for values near the float64 limit (rescaled by a power of two)."""
    exponent = _exponent(values)
    return float(np.ldexp(np.sqrt(np.mean(np.ldexp(values, -exponent) ** 2)), exponent))


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, str]:
    """Least-squares map x -> y with logistic5 (several starts) or a line; returns (fitted y, method)."""
    curve, method = fit_logistic(x, y)
    return curve(x), method


def _nan_result(n: int, note: str) -> dict[str, Any]:
    _logger.warning("correlations: %s; returning NaN metrics", note)
    return {**dict.fromkeys(METRICS, math.nan), "n": n, "fit": None, "note": note}


def correlations(pred: Any, target: Any) -> dict[str, Any]:
    """SROCC, KROCC, PLCC (after the logistic fit), PLCC without fit, RMSE (after fit and without).

    Args:
        pred: predictions ``(N,)`` (array-like or tensor), distortion-like: 0 = best.
        target: targets ``(N,)``, distortion-like: 0 = best (e.g. ``dataset.targets()``).

    Returns:
        JSON-able dict: ``srocc`` (``scipy.stats.spearmanr``), ``krocc`` (``scipy.stats.kendalltau``, tau-b),
        ``plcc`` (Pearson of target and fitted prediction, >= 0), ``plcc_nofit`` (signed Pearson of the raw values),
        ``rmse`` (target units, after the fit), ``rmse_nofit``, ``n``, ``fit`` (``"logistic5"``, ``"linear"`` or None)
        and ``note`` (None, or why the metrics are NaN). Fewer than 3 points, constant predictions or constant targets
        give NaN metrics with a logged warning and a ``note`` instead of an error.

    Raises:
        TypeError: an input is not numeric.
        ValueError: the inputs are not 1-D, differ in length, or contain NaN/inf.
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(target, "target")
    if p.size != t.size:
        raise ValueError(f"expected pred and target of the same length, got {p.size} and {t.size}")
    n = int(p.size)
    if n < 3:
        return _nan_result(n, f"fewer than 3 points (n={n}): correlations are undefined")
    if _constant(p):
        return _nan_result(n, f"constant predictions (all {p[0]:.6g}): correlations are undefined")
    if _constant(t):
        return _nan_result(n, f"constant targets (all {t[0]:.6g}): correlations are undefined")
    fitted, method = _fit_logistic(p, t)
    # Pearson correlations are scale-free: computed on power-of-two rescaled copies (exact), so that values near the
    # float64 limit cannot overflow; RMSEs are rescaled the same way (_rms).
    ps, ts = np.ldexp(p, -_exponent(p)), np.ldexp(t, -_exponent(t))
    plcc = math.nan if _constant(fitted) else float(stats.pearsonr(ts, np.ldexp(fitted, -_exponent(fitted)))[0])
    return {
        "srocc": float(stats.spearmanr(p, t)[0]),
        "krocc": float(stats.kendalltau(p, t, variant="b")[0]),
        "plcc": plcc,
        "plcc_nofit": float(stats.pearsonr(ps, ts)[0]),
        "rmse": _rms(t - fitted),
        "rmse_nofit": _rms(np.ldexp(t, -1) - np.ldexp(p, -1)) * 2.0,
        "n": n,
        "fit": method,
        "note": None,
    }


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"expected a number or None for a metric value, got {type(value).__name__}")
    return float(value)


def aggregate_runs(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation and median of each metric over repeated runs (the paper reports the mean of 20).

    Args:
        results: one :func:`correlations` dict per run (extra keys are ignored; a metric missing from some runs is
            aggregated over the runs that have it).

    Returns:
        JSON-able ``{metric: {"mean", "std", "median", "count"}, ..., "num_runs": R}``. ``std`` is the population
        standard deviation (``np.std``, ddof=0) like the reference ``run_multi.py``. NaN runs (e.g. a constant
        predictor) are left out of the statistics and ``count`` says how many runs were used; a metric with no valid
        run has NaN statistics. A warning is logged when runs are left out.

    Raises:
        TypeError: ``results`` is not a sequence of mappings, or a metric value is not a number.
        ValueError: ``results`` is empty.
    """
    if isinstance(results, Mapping) or not isinstance(results, Sequence):
        raise TypeError(f"expected a list of per-run result dicts, got {type(results).__name__}")
    if not results:
        raise ValueError("expected at least one run result to aggregate, got an empty list")
    if not all(isinstance(r, Mapping) for r in results):
        raise TypeError("expected every run result to be a dict from correlations()")
    out: dict[str, Any] = {}
    for metric in METRICS:
        values = np.array([_number(r[metric]) for r in results if metric in r], dtype=np.float64)
        if values.size == 0:
            continue
        valid = values[np.isfinite(values)]
        if valid.size < values.size:
            _logger.warning(
                "aggregate_runs: %s is NaN in %d of %d run(s); they are left out",
                metric,
                values.size - valid.size,
                values.size,
            )
        if valid.size:
            stats_ = {"mean": float(valid.mean()), "std": float(valid.std()), "median": float(np.median(valid))}
        else:
            stats_ = dict.fromkeys(("mean", "std", "median"), math.nan)
        out[metric] = {**stats_, "count": int(valid.size)}
    out["num_runs"] = len(results)
    return out


def _metric_value(entry: Any, metric: str) -> float:
    """A metric from a correlations dict, an aggregate dict (its mean) or a bare number."""
    if isinstance(entry, Mapping):
        if metric not in entry:
            raise ValueError(f"expected a result with a {metric!r} entry, got keys {sorted(entry)}")
        value = entry[metric]
        if isinstance(value, Mapping):
            if "mean" not in value:
                raise ValueError(f"expected an aggregate with a 'mean' for {metric!r}, got keys {sorted(value)}")
            value = value["mean"]
        return _number(value)
    return _number(entry)


def cross_dataset_table(
    results: Mapping[str, Mapping[str, Any]], *, metric: str = "srocc", digits: int = 3
) -> tuple[dict[str, Any], str]:
    """Cross-dataset table laid out like the paper's Tables 3-4 (rows = training set, columns = test set).

    Args:
        results: ``{train_name: {test_name: result}}`` where a result is a :func:`correlations` dict, an
            :func:`aggregate_runs` dict (its mean is shown) or a number. Row order is the mapping's order; columns are
            the test names in order of first appearance.
        metric: which metric to tabulate (one of :data:`METRICS`).
        digits: decimals shown in the Markdown table.

    Returns:
        ``(data, markdown)``: ``data`` is JSON-able ``{"metric", "rows", "columns", "values": {train: {test: value or
        None}}}`` (None for missing or NaN entries); ``markdown`` is a table with "-" for missing entries.

    Raises:
        TypeError: ``results`` is not a nested mapping.
        ValueError: unknown metric, negative ``digits``, or a result lacking the metric.
    """
    if metric not in METRICS:
        raise ValueError(f"expected metric in {list(METRICS)}, got {metric!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"expected digits as a non-negative int, got {digits!r}")
    if not isinstance(results, Mapping) or not all(isinstance(v, Mapping) for v in results.values()):
        raise TypeError("expected results as {train_name: {test_name: result}}")
    rows = [str(r) for r in results]
    columns: list[str] = []
    for tests in results.values():
        columns.extend(str(c) for c in tests if str(c) not in columns)
    values: dict[str, dict[str, float | None]] = {}
    for train, tests in results.items():
        row: dict[str, float | None] = {}
        for test, entry in tests.items():
            value = _metric_value(entry, metric)
            row[str(test)] = value if math.isfinite(value) else None
        values[str(train)] = row
    data = {"metric": metric, "rows": rows, "columns": columns, "values": values}

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"| Trained on \\ Tested on ({metric.upper()}) | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    lines += [f"| {train} | " + " | ".join(fmt(values[train].get(c)) for c in columns) + " |" for train in rows]
    return data, "\n".join(lines) + "\n"
