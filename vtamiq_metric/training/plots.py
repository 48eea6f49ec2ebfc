"""Figures of evaluations and training runs: predictions against MOS with the logistic fit, and per-epoch curves.

Both need matplotlib (``pip install 'vtamiq-metric[plot]'``) and return a :class:`matplotlib.figure.Figure` that is
not attached to pyplot; ``vtamiq-train evaluate --plot`` and ``vtamiq-train plot`` save them.

Orientation: VTAMIQ predicts a distortion (0 = identical, higher = worse) and the datasets' targets are MOS/DMOS
normalised to [0, 1] with **0 = best quality** (:mod:`.datasets.targets`), so a good model's points rise from the
bottom left to the top right.
"""

from __future__ import annotations

import logging
import math
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._plotting import new_figure, require_matplotlib
from .checkpoint import read_metric_log
from .evaluate import correlations, fit_logistic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DRAWABLE_LIMIT", "plot_predictions", "plot_training_curves", "read_metrics"]

_logger = logging.getLogger(__name__)

# Validation metrics drawn by plot_training_curves, in legend order (those present in the log are drawn).
_VAL_METRICS = (("val_srocc", "SROCC"), ("val_plcc", "PLCC"), ("val_krocc", "KROCC"),
                ("val_preference_accuracy", "preference accuracy"))
_MAX_SCATTER_POINTS = 20_000
#: Values beyond this magnitude are not drawn: matplotlib's axis limits overflow near the float64 limit (a metric of
#: +-1e308 made ``vtamiq-train plot`` fail with "arange: cannot compute length"), and no loss, correlation or score of
#: a working run comes near it.
DRAWABLE_LIMIT = 1e100


def plot_predictions(results: Mapping[str, Mapping[str, Any]], *, title: str | None = None) -> Figure:
    """Predicted score against MOS, one panel per dataset, with the fitted 5-parameter logistic curve.

    Each panel shows every item as a point (at most 20,000, evenly subsampled, for very large sets), the logistic
    curve that PLCC is computed after (:func:`.evaluate.fit_logistic`, the same fit as :func:`.evaluate.correlations`)
    and a legend with SROCC and PLCC over all items.

    Args:
        results: ``{dataset name: {"pred": (N,), "target": (N,)}}`` with predictions (distortion scores) and targets
            (normalised MOS, 0 = best), e.g. the output of :func:`.train.predict`.
        title: figure title (default none), wrapped to the figure's width.

    Returns:
        The figure: panels of 4 x 3.6 inches (100 dpi) in rows of at most three, plus a quarter inch per title line.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: ``results`` is empty, or a dataset lacks ``pred``/``target``, has mismatched lengths, or values
            that are not finite or beyond :data:`DRAWABLE_LIMIT` in magnitude.
    """
    require_matplotlib()
    if not results:
        raise ValueError("expected at least one dataset to plot, got none")
    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    if title:
        # Wrapped to the figure's width (about 40 characters per panel at the default font size).
        title = "\n".join(textwrap.wrap(title, width=40 * columns, break_long_words=True))
    fig = new_figure(4.0 * columns, 3.6 * rows + (0.25 + 0.25 * title.count("\n") if title else 0.0))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, (name, data) in zip(axes, results.items(), strict=False):
        if "pred" not in data or "target" not in data:
            raise ValueError(f"expected 'pred' and 'target' for dataset {name!r}, got keys {sorted(data)}")
        pred = np.asarray(data["pred"], dtype=np.float64).ravel()
        target = np.asarray(data["target"], dtype=np.float64).ravel()
        if pred.size != target.size:
            raise ValueError(f"expected pred and target of the same length for {name!r}, got {pred.size} and "
                             f"{target.size}")
        for what, values in (("predictions", pred), ("targets", target)):
            if values.size and not np.all(np.abs(values) <= DRAWABLE_LIMIT):  # NaN fails the comparison too
                worst = float(values[~(np.abs(values) <= DRAWABLE_LIMIT)][0])
                raise ValueError(f"cannot draw the {what} of {name!r}: expected finite values within "
                                 f"+-{DRAWABLE_LIMIT:g}, got {worst!r}")
        shown = np.linspace(0, pred.size - 1, _MAX_SCATTER_POINTS).astype(int) if pred.size > _MAX_SCATTER_POINTS \
            else slice(None)
        # Fewer points are drawn larger and more opaque; thousands are small and translucent so density shows.
        alpha = float(np.clip(40.0 / math.sqrt(max(pred.size, 1)), 0.15, 0.8))
        size = float(np.clip(3000.0 / max(pred.size, 1), 4.0, 25.0))
        ax.scatter(pred[shown], target[shown], s=size, alpha=alpha, color="tab:blue", edgecolors="none",
                   label="items")
        metrics = correlations(pred, target)
        if metrics["note"] is None:
            curve, method = fit_logistic(pred, target)
            grid = np.linspace(pred.min(), pred.max(), 200)
            fit_name = "logistic fit" if method == "logistic5" else "linear fit"
            ax.plot(grid, curve(grid), color="tab:red", linewidth=2,
                    label=f"{fit_name}\nSROCC {metrics['srocc']:.3f}  PLCC {metrics['plcc']:.3f}")
        else:
            ax.plot([], [], " ", label=metrics["note"])
        ax.set_title(f"{name} (n = {pred.size})")
        ax.set_xlabel("VTAMIQ score (0 = identical)")
        ax.set_ylabel("MOS, normalised (0 = best)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
    for ax in axes[len(results):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def read_metrics(run: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """The per-epoch rows of a run's ``metrics.jsonl``, or of each repeated run (``run_00/``, ``run_01/``...).

    Args:
        run: a run folder (``vtamiq-train train --output``) or a ``metrics.jsonl`` file.

    Returns:
        ``{label: rows}`` with rows sorted by epoch: one entry labelled with the folder name for a single run, one per
        ``run_*`` subfolder for ``--runs N``.

    Raises:
        FileNotFoundError: no ``metrics.jsonl`` there.
        ValueError: a line is not a JSON object with an ``epoch``.
    """
    path = Path(run)
    if path.is_file():
        files = {path.parent.name or str(path): path}
    elif (path / "metrics.jsonl").is_file():
        files = {path.name or str(path): path / "metrics.jsonl"}
    else:
        files = {child.name: child / "metrics.jsonl" for child in sorted(path.glob("run_*"))
                 if (child / "metrics.jsonl").is_file()}
    if not files:
        raise FileNotFoundError(f"expected {path / 'metrics.jsonl'} (or run_*/metrics.jsonl for repeated runs), "
                                f"found none")
    runs: dict[str, list[dict[str, Any]]] = {}
    for label, file in files.items():
        rows = read_metric_log(file)
        runs[label] = sorted(rows, key=lambda r: r["epoch"])
    return runs


def _drawable(value: Any) -> bool:
    """A number (not a bool) that is finite and within +-:data:`DRAWABLE_LIMIT`."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and abs(value) <= DRAWABLE_LIMIT)


def _warn_undrawable(label: str, rows: list[dict[str, Any]]) -> None:
    """One warning per run naming the finite values beyond :data:`DRAWABLE_LIMIT` that the figure leaves out."""
    skipped = [f"{key}={value!r} (epoch {row['epoch']})" for row in rows for key, value in row.items()
               if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)
               and math.isfinite(value) and abs(value) > DRAWABLE_LIMIT]
    if skipped:
        _logger.warning("%s: not drawn, beyond +-%g: %s%s", label, DRAWABLE_LIMIT, ", ".join(skipped[:5]),
                        f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, values)`` of ``key``, leaving out rows without a drawable value (NaN, infinite, beyond the limit)."""
    pairs = [(r["epoch"], r[key]) for r in rows if _drawable(r.get(key))]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    epochs, values = zip(*pairs, strict=True)
    return np.asarray(epochs, dtype=np.float64), np.asarray(values, dtype=np.float64)


def plot_training_curves(run: str | os.PathLike[str], *, title: str | None = None) -> Figure:
    """Training loss and validation metrics per epoch, from ``metrics.jsonl`` (see :func:`read_metrics`).

    Left: the mean training loss of each epoch (log scale when it spans more than a factor of 20). Right: the
    validation SROCC, PLCC and KROCC (or the preference accuracy for PieAPP runs), with the epoch that selected
    ``best/`` marked. Repeated runs share the panels, one shade per run.

    Args:
        run: a run folder or its ``metrics.jsonl``.
        title: figure title (default: the folder name and "training curves").

    Returns:
        The figure: two panels, 11 x 4.2 inches at 100 dpi.

    Values that cannot be drawn are left out: NaN and infinite ones silently (an epoch without validation), finite
    ones beyond +-:data:`DRAWABLE_LIMIT` (a diverged or damaged log) with a logged warning naming them.

    Raises:
        ImportError: matplotlib is not installed.
        FileNotFoundError / ValueError: as :func:`read_metrics`.
    """
    matplotlib = require_matplotlib()
    runs = read_metrics(run)
    for label, rows in runs.items():
        _warn_undrawable(label, rows)
    fig = new_figure(11.0, 4.2)
    loss_ax, val_ax = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"]
    styles = ("-", "--", ":", "-.")
    losses = []
    for index, (label, rows) in enumerate(runs.items()):
        prefix = f"{label}: " if len(runs) > 1 else ""
        epochs, loss = _series(rows, "train_loss")
        losses.append(loss)
        loss_ax.plot(epochs, loss, marker="o", markersize=3, color=colours(index % 10), label=f"{prefix}train loss")
        drawn = [(key, name) for key, name in _VAL_METRICS if _series(rows, key)[0].size]
        for style, (key, name) in zip(styles, drawn, strict=False):
            x, y = _series(rows, key)
            val_ax.plot(x, y, style, marker="o", markersize=3, color=colours(index % 10), label=f"{prefix}{name}")
        selection_x, selection_y = _series(rows, "val_selection")
        if selection_y.size:
            best = selection_y.size - 1 - int(np.argmax(selection_y[::-1]))  # the last of equal bests, as best/ keeps
            val_ax.plot(selection_x[best], selection_y[best], marker="*", markersize=14, color=colours(index % 10),
                        markeredgecolor="black", linestyle="none", label=f"{prefix}best epoch {int(selection_x[best])}")
    finite = np.concatenate([loss for loss in losses if loss.size]) if any(loss.size for loss in losses) else None
    if finite is not None and finite.min() > 0 and finite.max() / finite.min() > 20:
        loss_ax.set_yscale("log")
    loss_ax.set_title("training loss (mean per epoch)")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    val_ax.set_title("validation (higher is better)")
    val_ax.set_xlabel("epoch")
    val_ax.set_ylabel("validation metric")
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle(title if title is not None else f"{Path(run).resolve().name}: training curves")
    return fig
