"""Evaluation figures: `vtamiq-train evaluate --plot` and `vtamiq-train plot RUN` (matplotlib, the [plot] extra)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from vtamiq_metric.training import cli

pytest.importorskip("matplotlib")
from vtamiq_metric.training.evaluate import correlations, fit_logistic
from vtamiq_metric.training.plots import plot_predictions, read_metrics


def _check_picture(path, size: tuple[int, int], min_colours: int = 30) -> np.ndarray:
    with Image.open(path) as image:
        assert image.size == size
        pixels = np.asarray(image.convert("RGB")).astype(np.float64)
    assert pixels.std() > 10  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= min_colours  # text, points, lines, antialiasing
    return pixels


def _has_colour(pixels: np.ndarray, channel: int) -> bool:
    """Whether more than 20 pixels are clearly dominated by one channel (0 red, 2 blue): drawn data, not text."""
    others = np.delete(pixels, channel, axis=-1).max(-1)
    return bool((pixels[..., channel] - others > 40).sum() > 20)


def test_evaluate_plot_draws_one_panel_per_dataset(kadid, tmp_path, tiny_model, capsys):
    tiny_model.save_pretrained(tmp_path / "m")
    out = tmp_path / "plots" / "scatter.png"
    args = ["evaluate", "--checkpoint", str(tmp_path / "m"), "--patches", "8", "--workers", "0", "--device", "cpu",
            "--plot", str(out)]
    assert cli.main([*args, "--dataset", "kadid10k", "--data-root", str(kadid)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    pixels = _check_picture(out, (400, 385))  # one 4 x 3.6 inch panel plus 0.25 inch for the title, 100 dpi
    assert _has_colour(pixels, 2)  # the points (tab:blue)
    assert _has_colour(pixels, 0)  # the fitted curve (tab:red)
    # Two datasets side by side.
    assert cli.main([*args, "--dataset", "kadid10k", "--data-root", str(kadid), "--dataset", "kadid10k",
                     "--data-root", str(kadid)]) == 0
    _check_picture(out, (800, 385))


def test_evaluate_plot_checks_the_figure_format_first(kadid, tmp_path, capsys):
    code = cli.main(["evaluate", "--checkpoint", str(tmp_path / "missing"), "--dataset", "kadid10k", "--data-root",
                     str(kadid), "--plot", str(tmp_path / "scatter.txt")])
    assert code == 1
    assert "expected an output file ending in one of" in capsys.readouterr().err


def test_plot_predictions_uses_the_fit_of_correlations():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 1, 200)
    target = 1 / (1 + np.exp(-8 * (pred - 0.5))) + rng.normal(0, 0.05, 200)
    curve, method = fit_logistic(pred, target)
    metrics = correlations(pred, target)
    assert method == metrics["fit"] == "logistic5"
    # PLCC is the Pearson correlation of the targets with the curve at the predictions.
    assert np.corrcoef(target, curve(pred))[0, 1] == pytest.approx(metrics["plcc"], abs=1e-12)
    fig = plot_predictions({"synthetic": {"pred": pred, "target": target}})
    legend = fig.axes[0].get_legend().get_texts()
    assert any(f"SROCC {metrics['srocc']:.3f}  PLCC {metrics['plcc']:.3f}" in t.get_text() for t in legend)
    with pytest.raises(ValueError, match="expected pred and target of the same length for 'x', got 3 and 2"):
        plot_predictions({"x": {"pred": [1, 2, 3], "target": [1, 2]}})
    with pytest.raises(ValueError, match="expected at least one dataset"):
        plot_predictions({})


def test_plot_draws_the_curves_of_a_real_run(kadid, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", "kadid10k", "--data-root", str(kadid), "--output", str(run),
                     "--model-preset", "tiny", "--epochs", "3", "--lr-milestones", "2", "--batch-size", "4",
                     "--train-patches", "8", "--eval-patches", "8", "--workers", "0", "--device", "cpu",
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["plot", str(run)]) == 0
    assert f"wrote {run / 'curves.png'}" in capsys.readouterr().out
    pixels = _check_picture(run / "curves.png", (1100, 420))
    assert _has_colour(pixels, 2)  # tab:blue lines


def test_plot_handles_repeated_runs_and_missing_logs(tmp_path, capsys):
    for index, offset in enumerate((0.0, 0.05)):
        folder = tmp_path / "runs" / f"run_{index:02d}"
        folder.mkdir(parents=True)
        rows = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_srocc": 0.5 + 0.1 * e + offset,
                 "val_plcc": 0.55 + 0.1 * e, "val_krocc": math.nan, "val_selection": 0.5 + 0.1 * e + offset}
                for e in range(4)]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    runs = read_metrics(tmp_path / "runs")
    assert list(runs) == ["run_00", "run_01"] and [r["epoch"] for r in runs["run_00"]] == [0, 1, 2, 3]
    out = tmp_path / "curves.svg"
    assert cli.main(["plot", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    assert cli.main(["plot", str(tmp_path / "nothing")]) == 1
    assert "metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"loss": 1}\n')
    with pytest.raises(ValueError, match="expected a JSON object with an 'epoch'"):
        read_metrics(tmp_path / "bad")


def test_plot_leaves_out_values_near_the_float_limit_with_a_warning(tmp_path, capsys, caplog):
    # Issue 23 item 15: metrics of +-1e308 made `vtamiq-train plot` fail with "arange: cannot compute length".
    rows = [{"epoch": 0, "train_loss": 1e308, "val_srocc": -1e308, "val_selection": 1e308},
            {"epoch": 1, "train_loss": 0.5, "val_srocc": 0.6, "val_selection": 0.6},
            {"epoch": 2, "train_loss": -1e308, "val_srocc": 0.7, "val_selection": -1e308},
            {"epoch": 3, "train_loss": 0.25, "val_srocc": 0.7, "val_selection": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "curves.png"
    with caplog.at_level("WARNING"):
        assert cli.main(["plot", str(tmp_path), "--out", str(out)]) == 0
    assert "not drawn, beyond +-1e+100: train_loss=1e+308 (epoch 0)" in caplog.text
    assert "val_selection=-1e+308 (epoch 2)" in caplog.text
    _check_picture(out, (1100, 420))
    from vtamiq_metric.training.plots import plot_training_curves

    figure = plot_training_curves(tmp_path)
    star = next(line for line in figure.axes[1].lines if line.get_label().startswith("best epoch"))
    assert star.get_label() == "best epoch 3"  # 0.7 at epoch 3; epoch 2's selection is not drawable
    assert figure.axes[0].lines[0].get_xdata().tolist() == [1.0, 3.0]


def test_plot_marks_the_later_of_tied_best_epochs(tmp_path):
    from vtamiq_metric.training.plots import plot_training_curves

    rows = [{"epoch": e, "train_loss": 1.0, "val_srocc": 1.0, "val_selection": 1.0} for e in range(3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    figure = plot_training_curves(tmp_path)
    assert any(line.get_label() == "best epoch 2" for line in figure.axes[1].lines)  # as best/ keeps (ties: later)


def test_plot_predictions_refuses_values_it_cannot_draw():
    with pytest.raises(ValueError, match=r"cannot draw the predictions of 'x': expected finite values within "
                                         r"\+-1e\+100, got 1e\+308"):
        plot_predictions({"x": {"pred": [0.1, 1e308, 0.3, 0.2], "target": [0.1, 0.2, 0.3, 0.4]}})


def test_correlations_of_values_near_the_float_limit_are_finite():
    # The logistic fit standardised x - mean with squares that overflow (numpy's LinAlgError "SVD did not converge").
    target = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    pred = np.array([0.3, 0.1, 0.35, 0.5, 0.45, 0.8, 0.9])
    small = correlations(pred, target)
    huge = correlations(pred * 2.0**1020, target)  # exactly rescaled: every scale-free metric is bit-identical
    for key in ("srocc", "krocc", "plcc", "plcc_nofit", "rmse"):
        assert huge[key] == small[key], key
    assert math.isfinite(huge["rmse_nofit"])
    both = correlations(np.array([-1e308, -1e300, 0.0, 1.0, 2.0, 1e300, 1e308]), target)
    assert both["srocc"] == 1.0 and all(math.isfinite(both[k]) for k in ("plcc", "plcc_nofit", "rmse", "rmse_nofit"))
