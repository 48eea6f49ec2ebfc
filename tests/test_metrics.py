"""VTAMIQMetric (torchmetrics): equals score(), works in a training loop, syncs across processes, stays optional."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vtamiq_metric import load_model, score

pytest.importorskip("torchmetrics")
from vtamiq_metric.metrics import VTAMIQMetric

ROOT = Path(__file__).resolve().parents[1]


def _pairs(count: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(count, 3, 32, 40, generator=gen)
    dist = (ref + 0.15 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    return ref, dist


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_metric_equals_score_over_the_same_pairs_and_seed(tiny_model, reduction):
    ref, dist = _pairs()
    options = {"num_patches": 12, "num_repeats": 2, "seed": 3}
    metric = VTAMIQMetric(tiny_model, reduction=reduction, **options)
    for start, stop in ((0, 3), (3, 4), (4, 7)):  # uneven batches
        metric.update(dist[start:stop], ref[start:stop])  # torchmetrics' order: preds, target
    expected = score(ref, dist, model=tiny_model, **options)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    torch.testing.assert_close(metric.compute(), expected, rtol=1e-6, atol=1e-7)


def test_forward_returns_the_batch_value_and_accumulates(tiny_model):
    ref, dist = _pairs(6)
    metric = VTAMIQMetric(tiny_model, num_patches=12)
    batch_values = [metric(dist[i:i + 2], ref[i:i + 2]) for i in (0, 2, 4)]
    per_pair = score(ref, dist, model=tiny_model, num_patches=12)
    torch.testing.assert_close(torch.stack(batch_values), per_pair.view(3, 2).mean(1))
    torch.testing.assert_close(metric.compute(), per_pair.mean())
    metric.reset()
    assert metric.num_pairs == 0 and metric.score_sum == 0


def test_the_network_is_frozen_and_stays_in_eval_mode(tiny_model):
    metric = VTAMIQMetric(tiny_model.train(), num_patches=8)
    holder = nn.ModuleDict({"metric": metric}).train()
    assert holder.training and not metric.training and not metric.model.training
    assert all(not m.training for m in metric.modules())
    assert all(not p.requires_grad for p in metric.parameters())
    assert VTAMIQMetric.higher_is_better is False and VTAMIQMetric.full_state_update is False


class _Denoiser(nn.Module):
    """A toy restoration model: predicts the noise and subtracts it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.net(x)).clamp(0, 1)


def _train_step(model: _Denoiser, optimizer: torch.optim.Optimizer, noisy: torch.Tensor,
                clean: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One MSE step on a batch: the restored batch (still attached to the graph) and the loss."""
    restored = model(noisy)
    loss = nn.functional.mse_loss(restored, clean)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return restored, loss.item()


def test_metric_inside_a_training_loop(tiny_model):
    """Update on every batch of an epoch, compute and reset at its end, as a Lightning validation loop does."""
    torch.manual_seed(0)
    clean, _ = _pairs(8, seed=1)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    restorer = _Denoiser()
    restorer.metric = VTAMIQMetric(tiny_model, num_patches=12)  # held by the trained module, like a LightningModule
    optimizer = torch.optim.Adam(restorer.net.parameters(), lr=1e-2)
    epoch_values, epoch_losses = [], []
    for _ in range(3):
        restorer.train()
        losses = []
        for i in range(0, 8, 4):
            restored, loss = _train_step(restorer, optimizer, noisy[i:i + 4], clean[i:i + 4])
            losses.append(loss)
            # preds first: a tensor that requires grad, scored but not differentiated
            restorer.metric.update(restored, clean[i:i + 4])
        epoch_values.append(restorer.metric.compute())
        epoch_losses.append(sum(losses) / len(losses))
        restorer.metric.reset()
        assert not restorer.metric.model.training
    assert epoch_losses[-1] < epoch_losses[0]  # the loop still trains: the metric took no gradient and no state
    assert all(p.grad is None for p in restorer.metric.parameters())
    # The last epoch's value is score() over what the model produced during that epoch.
    torch.manual_seed(0)
    replay = _Denoiser()
    optimizer = torch.optim.Adam(replay.net.parameters(), lr=1e-2)
    outputs = []
    for epoch in range(3):
        for i in range(0, 8, 4):
            restored, _ = _train_step(replay, optimizer, noisy[i:i + 4], clean[i:i + 4])
            if epoch == 2:
                outputs.append(restored.detach())
    expected = score(clean, torch.cat(outputs), model=tiny_model, num_patches=12).mean()
    torch.testing.assert_close(epoch_values[-1], expected)


def test_update_takes_preds_then_target_like_torchmetrics_in_a_metric_collection(tiny_model):
    from torchmetrics import MetricCollection
    from torchmetrics.image import PeakSignalNoiseRatio

    target, preds = _pairs(4)  # target: the reference; preds: the distorted/restored image
    collection = MetricCollection({"psnr": PeakSignalNoiseRatio(data_range=1.0),
                                   "vtamiq": VTAMIQMetric(tiny_model, num_patches=12)})
    collection.update(preds, target)  # one positional call for both metrics
    values = collection.compute()
    expected = score(target, preds, model=tiny_model, num_patches=12).mean()  # score(ref, dist)
    torch.testing.assert_close(values["vtamiq"], expected)
    swapped = score(preds, target, model=tiny_model, num_patches=12).mean()
    assert abs(values["vtamiq"] - swapped) > 1e-4  # the metric is asymmetric: the order matters
    torch.testing.assert_close(values["psnr"], PeakSignalNoiseRatio(data_range=1.0)(preds, target))
    # Keywords: torchmetrics' names, and the old ref=/dist= names with a DeprecationWarning.
    metric = VTAMIQMetric(tiny_model, num_patches=12)
    metric.update(target=target, preds=preds)
    torch.testing.assert_close(metric.compute(), expected)
    old = VTAMIQMetric(tiny_model, num_patches=12)
    with pytest.warns(DeprecationWarning) as record:
        old.update(ref=target, dist=preds)
    assert {str(w.message) for w in record} == {"update(): ref= is deprecated, use target=",
                                                "update(): dist= is deprecated, use preds="}
    torch.testing.assert_close(old.compute(), expected)


def test_plot_draws_values_as_torchmetrics_metrics_do(tiny_model):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    target, preds = _pairs(4)
    metric = VTAMIQMetric(tiny_model, num_patches=12)
    values = [metric(preds[i:i + 2], target[i:i + 2]) for i in (0, 2)]
    fig, ax = metric.plot(values)
    assert fig is ax.figure and len(ax.lines) >= 1
    assert list(ax.lines[0].get_ydata()) == pytest.approx([float(v) for v in values])
    fig, ax = metric.plot()  # compute()'s value
    assert ax.get_ylim()[0] <= 0.0 <= float(metric.compute())  # plot_lower_bound: scores are >= 0 distortions
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"reduction": "max"}, ValueError, r"reduction must be one of \('mean', 'sum', 'none'\), got 'max'"),
    ({"num_patches": 0}, ValueError, "num_patches must be an int >= 1, got 0"),
    ({"num_repeats": 0}, ValueError, "num_repeats must be an int >= 1, got 0"),
])
def test_bad_arguments_raise_with_expected_and_got(tiny_model, kwargs, error, message):
    with pytest.raises(error, match=message):
        VTAMIQMetric(tiny_model, **kwargs)
    with pytest.raises(TypeError, match="model must be a name, a path or a VTAMIQ instance, got int"):
        VTAMIQMetric(3)


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_importing_the_package_imports_neither_torchmetrics_nor_matplotlib():
    done = _run_python("import sys, vtamiq_metric\n"
                       "assert vtamiq_metric.damage_map and vtamiq_metric.score\n"
                       "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchmetrics', 'matplotlib')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_torchmetrics_the_error_names_the_extra():
    done = _run_python("import sys; sys.modules['torchmetrics'] = None\n"
                       "import vtamiq_metric\n"
                       "import vtamiq_metric.metrics")
    assert done.returncode != 0
    assert "pip install 'vtamiq-metric[metrics]'" in done.stderr


# ---------------------------------------------------------------------------------------------------------------
# Two processes (gloo)


def _ddp_worker(rank: int, world: int, store: str, weights: str, out: str) -> None:
    import torch.distributed as torch_dist

    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        ref, dist = _pairs(7)
        mine = list(range(rank, 7, world))  # unequal shares: 4 and 3 pairs
        model = load_model(weights)
        results = {}
        for reduction in ("mean", "sum", "none"):
            metric = VTAMIQMetric(model, num_patches=12, seed=1, reduction=reduction)
            for k in range(0, len(mine), 2):
                index = mine[k:k + 2]
                metric.update(dist[index], ref[index])
            results[reduction] = metric.compute()
        results["order"] = [k for r in range(world) for k in range(r, 7, world)]
        if rank == 0:
            torch.save(results, out)
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_give_the_one_process_result(tiny_model, tmp_path):
    weights = tiny_model.save_pretrained(tmp_path / "tiny")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(weights), str(tmp_path / "out.pt")),
                                nprocs=2, join=True)
    results = torch.load(tmp_path / "out.pt")
    ref, dist = _pairs(7)
    single = VTAMIQMetric(tiny_model, num_patches=12, seed=1, reduction="none")
    single.update(dist, ref)
    expected = single.compute()
    torch.testing.assert_close(results["mean"], expected.mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(results["sum"], expected.sum(), rtol=1e-6, atol=1e-7)
    # "none" concatenates the ranks' scores: rank 0's pairs (0, 2, 4, 6), then rank 1's (1, 3, 5).
    torch.testing.assert_close(results["none"], expected[results["order"]], rtol=1e-6, atol=1e-7)


@pytest.mark.cuda
def test_metric_moves_to_cuda_with_its_model(tiny_model):
    ref, dist = _pairs(4)
    expected = score(ref, dist, model=tiny_model, num_patches=12, precision="fp32").mean()
    metric = VTAMIQMetric(tiny_model, num_patches=12, precision="fp32").cuda()
    metric.update(dist, ref)  # CPU inputs are moved to the model's device
    value = metric.compute()
    assert value.device.type == "cuda" and next(metric.model.parameters()).is_cuda
    torch.testing.assert_close(value.cpu(), expected, rtol=1e-4, atol=1e-6)
