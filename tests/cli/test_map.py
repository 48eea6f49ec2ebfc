"""`vtamiq map`: the damage-map figure (needs matplotlib, the [plot] extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vtamiq_metric import VTAMIQ, cli

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 64 x 80 reference, a copy with its left half blurred by averaging, and tiny random weights."""
    root = tmp_path_factory.mktemp("map")
    yy, xx = np.mgrid[0:64, 0:80]
    ref = np.stack([(xx * 9) % 256, (yy * 7) % 256, ((xx + yy) * 5) % 256], axis=-1).astype(np.uint8)
    dist = ref.copy()
    dist[:, :40] = ((ref[:, :40].astype(np.float64) + np.roll(ref[:, :40], 1, axis=1)) / 2).astype(np.uint8)
    Image.fromarray(ref).save(root / "ref.png")
    Image.fromarray(dist).save(root / "dist.png")
    torch.manual_seed(0)
    weights = VTAMIQ("tiny").eval().save_pretrained(root / "tiny")
    return root, ["--model", str(weights), "--patches", "16", "--device", "cpu"]


def _check_picture(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.size == size
        pixels = np.asarray(image.convert("RGB")).astype(np.float64)
    assert pixels.std() > 20  # not blank
    colors = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colors) > 200  # photographs and a colour map, not a few flat areas
    saturation = pixels.max(-1) - pixels.min(-1)
    assert (saturation > 60).mean() > 0.02  # the colour overlay is there


@pytest.mark.parametrize(("extra", "panels"), [([], 3), (["--show-sampling"], 4)], ids=["map", "with-sampling"])
def test_map_writes_a_figure_of_the_expected_size(pair, tmp_path, capsys, extra, panels):
    root, options = pair
    out = tmp_path / "figures" / "map.png"
    assert cli.main(["map", str(root / "ref.png"), str(root / "dist.png"), "--output", str(out), *options, *extra]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    # 4-inch panels with 0.6 inch between them, height 4 * 64 / 80 + 0.9 inches for the titles; 100 dpi.
    _check_picture(out, (round(100 * (4.0 * panels + 0.6 * (panels - 1))), round(100 * (4.0 * 64 / 80 + 0.9))))


def test_map_rejects_an_unknown_figure_format_before_any_work(pair, tmp_path, capsys):
    root, options = pair
    assert cli.main(["map", str(root / "ref.png"), str(root / "dist.png"), "--output", str(tmp_path / "map.xyz"),
                     *options]) == 1
    err = capsys.readouterr().err
    assert "expected an output file ending in one of" in err and ".png" in err and "map.xyz" in err
    assert not (tmp_path / "map.xyz").exists()


def test_map_reports_a_missing_image(pair, tmp_path, capsys):
    root, options = pair
    assert cli.main(["map", str(root / "nope.png"), str(root / "dist.png"), "--output", str(tmp_path / "m.png"),
                     *options]) == 2
    assert "image not found" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_extra(pair, tmp_path):
    root, options = pair
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from vtamiq_metric import cli\n"
            "raise SystemExit(cli.main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, "map", str(root / "ref.png"), str(root / "dist.png"), "--out",
                           str(tmp_path / "m.png"), *options], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert "pip install 'vtamiq-metric[plot]'" in done.stderr


def test_plot_damage_map_takes_one_pair(tiny_model):
    from vtamiq_metric.maps import plot_damage_map

    with pytest.raises(ValueError, match="expected one image pair to plot, got a batch of 2"):
        plot_damage_map(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), model=tiny_model)
