"""Shared matplotlib plumbing for the figures (``vtamiq map``, ``vtamiq-train evaluate --plot``, ``vtamiq-train plot``).

matplotlib is an optional dependency (the ``[plot]`` extra) and is imported only when a figure is drawn. Figures are
built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no global figure registry, no GUI
backend, nothing left open, and the same code works in scripts, servers and notebooks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["check_figure_path", "new_figure", "require_matplotlib", "save_figure"]

_logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vtamiq-metric[plot]'"


def require_matplotlib() -> Any:
    """Import and return ``matplotlib``, or raise an ImportError that names the extra to install.

    Raises:
        ImportError: matplotlib is not installed.
    """
    try:
        import matplotlib
        import matplotlib.figure  # loads the submodule the callers use
    except ImportError as exc:
        raise ImportError(f"drawing figures needs matplotlib, which is an optional dependency: {INSTALL_HINT}") from exc
    return matplotlib


def new_figure(width: float, height: float, *, dpi: int = 100) -> Figure:
    """A standalone figure of ``width x height`` inches with constrained layout (no pyplot state)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def check_figure_path(path: str | os.PathLike[str]) -> str:
    """The image format matplotlib will write for ``path`` (from its suffix), checked before any work is done.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the suffix is not a format matplotlib can write.
    """
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"expected an output file ending in one of {', '.join(sorted('.' + k for k in supported))}, "
                         f"got {str(path)!r}")
    return fmt


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix, e.g. ``.png``, ``.pdf``, ``.svg``); creates folders.

    The file is written under a temporary name and renamed, so a reader never sees half a PNG.

    Returns:
        The path written.

    Raises:
        ValueError: the suffix is not a format matplotlib can write.
    """
    fmt = check_figure_path(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a new temporary name per call: threads saving one figure never clash
        figure.savefig(tmp, format=fmt)
    _logger.debug("wrote %s", path)
    return path
