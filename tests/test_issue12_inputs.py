"""Issue 12/13 input guards: non-regular files, the pixel limit, the 0-255 hint, lazy batches, a missing GPU."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from vtamiq_metric import score
from vtamiq_metric._validation import load_image, prepare_pair


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            load_image(fifo, name="ref")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # release the blocked open() before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_image blocked on a FIFO")
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert "expected a regular image file (or a symlink to one), got a FIFO (named pipe)" in str(errors[0])


def test_an_empty_path_says_it_is_empty():
    with pytest.raises(ValueError, match="ref: expected an image file path, got an empty path"):
        load_image("", name="ref")


def test_max_pixels_refuses_large_images_before_decoding(tiny_model):
    image = np.zeros((64, 80, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"ref\[1\]: expected at most max_pixels=5,000 pixels, got a 80x64 image"):
        prepare_pair([image[:32, :32], image], [image[:32, :32], image], max_pixels=5000)
    with pytest.raises(ValueError, match="max_pixels=100 pixels"):
        score(image, image, model=tiny_model, num_patches=8, max_pixels=100)
    assert score(image, image, model=tiny_model, num_patches=8, max_pixels=None).shape == (1,)
    with pytest.raises(ValueError, match="max_pixels must be an int >= 1 or None, got 0"):
        score(image, image, model=tiny_model, num_patches=8, max_pixels=0)


@pytest.mark.parametrize(("high", "hinted"), [(1.106, False), (1.6, False), (200.0, True)])
def test_the_0_255_hint_appears_only_when_it_fits(high, hinted):
    image = torch.full((3, 16, 16), 0.5)
    image[0, 0, 0] = high
    with pytest.raises(ValueError) as info:
        prepare_pair(image, image)
    assert ("did you pass 0-255 values" in str(info.value)) is hinted


def test_lazy_batches_give_the_scores_of_one_batch_and_keep_uint8(tiny_model):
    gen = np.random.default_rng(0)
    refs = [gen.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(5)]
    dists = [np.clip(r.astype(int) + gen.integers(-30, 30, r.shape), 0, 255).astype(np.uint8) for r in refs]
    ref8, _ = prepare_pair(refs[0], dists[0], keep_uint8=True)
    assert ref8.dtype == torch.uint8
    floats = [torch.from_numpy(r.astype(np.float32) / np.float32(255)).permute(2, 0, 1) for r in refs]
    dfloats = [torch.from_numpy(d.astype(np.float32) / np.float32(255)).permute(2, 0, 1) for d in dists]
    options = {"model": tiny_model, "num_patches": 16, "precision": "fp32"}
    whole = score(torch.stack(floats), torch.stack(dfloats), **options)
    lazy = score(refs, dists, batch_size=2, **options)
    torch.testing.assert_close(lazy, whole, rtol=1e-5, atol=1e-6)
    bad_refs, bad_dists = refs[:4] + [refs[4][:32]], dists[:4] + [dists[4][:32]]
    with pytest.raises(ValueError, match=r"all images in ref must have the same size, got \(32, 48\) at ref\[4\]"):
        score(bad_refs, bad_dists, batch_size=2, **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_says_so(tiny_model):
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="device='cuda' was requested but no CUDA device is available"):
        score(image, image, num_patches=8, device="cuda")
