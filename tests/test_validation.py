"""Input coercion and checks (`vtamiq_metric._validation`): every accepted kind, every rejection, autograd."""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from PIL import Image

from vtamiq_metric._validation import load_image, prepare_pair, to_batch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _rgb_uint8(height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _expected(array_hwc: np.ndarray, scale: float) -> torch.Tensor:
    """(H, W, 3) -> (1, 3, H, W) float32 divided by ``scale`` (one correctly rounded float32 division)."""
    return (torch.tensor(array_hwc.astype(np.float32)) / scale).permute(2, 0, 1)[None]


@pytest.fixture(autouse=True)
def _no_stray_warnings():
    """Conversions the module documents as silent must not warn; tests that expect a warning catch it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------------------------------------------------
# numpy arrays


def test_uint8_array_is_divided_by_255():
    array = _rgb_uint8()
    array[0, 0] = 255
    batch = to_batch(array)
    assert batch.shape == (1, 3, 5, 7)
    assert batch.dtype == torch.float32
    assert batch.device.type == "cpu"
    torch.testing.assert_close(batch, _expected(array, 255.0), rtol=0, atol=0)
    assert batch[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]


def test_uint16_array_is_divided_by_65535_in_either_byte_order():
    array = np.random.default_rng(1).integers(0, 65536, size=(4, 6, 3)).astype(np.uint16)
    array[1, 2] = 65535
    expected = _expected(array, 65535.0)
    torch.testing.assert_close(to_batch(array), expected, rtol=0, atol=0)
    torch.testing.assert_close(to_batch(array.astype(">u2")), expected, rtol=0, atol=0)
    assert to_batch(array)[0, :, 1, 2].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_array_keeps_its_values(dtype):
    array = np.random.default_rng(2).random((3, 4, 3)).astype(dtype)
    batch = to_batch(array)
    assert batch.dtype == torch.float32
    torch.testing.assert_close(batch, _expected(array, 1.0), rtol=0, atol=0)


def test_bool_array_gives_zero_and_one():
    array = np.array([[True, False], [False, True]])
    batch = to_batch(array)
    assert batch.shape == (1, 3, 2, 2)
    assert batch[0, 1].tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 2)])
def test_gray_array_is_replicated_and_alpha_dropped(shape):
    gray = np.random.default_rng(3).integers(0, 256, size=(5, 7), dtype=np.uint8)
    array = gray.reshape(5, 7, 1) if len(shape) == 3 else gray
    if shape[-1] == 2:
        array = np.concatenate([array, np.full_like(array, 7)], axis=-1)  # gray + alpha
    batch = to_batch(array)
    assert batch.shape == (1, 3, 5, 7)
    expected = torch.tensor(gray / 255.0, dtype=torch.float32)
    for channel in range(3):
        torch.testing.assert_close(batch[0, channel], expected, rtol=0, atol=0)


def test_rgba_array_drops_alpha_without_compositing():
    rgb = _rgb_uint8()
    rgba = np.concatenate([rgb, np.zeros((5, 7, 1), np.uint8)], axis=-1)  # fully transparent
    torch.testing.assert_close(to_batch(rgba), _expected(rgb, 255.0), rtol=0, atol=0)


def test_batched_array_is_channel_last():
    array = np.stack([_rgb_uint8(seed=s) for s in range(3)])  # (3, 5, 7, 3)
    batch = to_batch(array)
    assert batch.shape == (3, 3, 5, 7)
    torch.testing.assert_close(batch[2:], _expected(array[2], 255.0), rtol=0, atol=0)


def test_non_contiguous_and_read_only_arrays():
    array = _rgb_uint8(8, 8)
    flipped = array[::-1, ::2]
    torch.testing.assert_close(to_batch(flipped), _expected(np.ascontiguousarray(flipped), 255.0), rtol=0, atol=0)
    frozen = array.copy()
    frozen.flags.writeable = False
    torch.testing.assert_close(to_batch(frozen), _expected(array, 255.0), rtol=0, atol=0)


@pytest.mark.parametrize("view", [np.flipud, np.fliplr, np.rot90, lambda a: a[::-1, ::-2]],
                         ids=["flipud", "fliplr", "rot90", "reversed-step"])
def test_uint8_views_with_negative_strides_are_accepted_like_float_views(view):
    # Issue 23 item 14: keep_uint8 (what score() uses) refused these with torch's internal "At least one stride in the
    # given numpy array is negative" while float arrays of the same views worked.
    ref, dist = _rgb_uint8(20, 34, seed=1), _rgb_uint8(20, 34, seed=2)
    flipped_ref, flipped_dist = view(ref), view(dist)
    assert any(stride < 0 for stride in flipped_ref.strides)
    got_ref, got_dist = prepare_pair(flipped_ref, flipped_dist, keep_uint8=True)
    assert got_ref.dtype == torch.uint8
    torch.testing.assert_close(got_ref, torch.from_numpy(np.ascontiguousarray(flipped_ref)).permute(2, 0, 1)[None],
                               rtol=0, atol=0)
    float_ref, _ = prepare_pair(flipped_ref.astype(np.float32) / 255, flipped_dist.astype(np.float32) / 255)
    torch.testing.assert_close(got_ref.float() / 255, float_ref, rtol=0, atol=0)
    assert torch.equal(got_dist, torch.from_numpy(np.ascontiguousarray(flipped_dist)).permute(2, 0, 1)[None])


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.complex64, object])
def test_unsupported_array_dtype_is_a_type_error(dtype):
    expected = rf"ref: expected a numpy array of dtype uint8 .*got dtype {np.dtype(dtype)}$"
    with pytest.raises(TypeError, match=expected):
        to_batch(np.zeros((4, 4, 3), dtype=dtype))


def test_channel_first_array_is_rejected_with_a_hint():
    hint = "got shape (3, 8, 9); this looks channel-first, use arr.transpose(1, 2, 0)"
    with pytest.raises(ValueError, match=re.escape(hint)):
        to_batch(np.zeros((3, 8, 9), np.uint8))
    hint = r"\(B, H, W, C\).*got shape \(2, 3, 8, 9\); this looks channel-first, use arr.transpose\(0, 2, 3, 1\)"
    with pytest.raises(ValueError, match=hint):
        to_batch(np.zeros((2, 3, 8, 9), np.uint8))


@pytest.mark.parametrize("shape", [(7,), (1, 2, 3, 4, 3), ()])
def test_array_with_wrong_ndim_is_rejected(shape):
    with pytest.raises(ValueError, match=re.escape(f"got shape {shape}")):
        to_batch(np.zeros(shape, np.uint8))


def test_empty_array_is_rejected():
    with pytest.raises(ValueError, match=r"non-empty numpy array, got shape \(0, 4, 3\)"):
        to_batch(np.zeros((0, 4, 3), np.uint8))


# ----------------------------------------------------------------------------------------------------------------
# value range


@pytest.mark.parametrize("make", [np.asarray, torch.tensor], ids=["numpy", "tensor"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (float("nan"), "contains NaN"),
        (float("inf"), "contains infinite values"),
        (float("-inf"), "contains infinite values"),
        (200.0, "got min 0.5 and max 200; did you pass 0-255 values\\? divide by 255"),
        (-0.5, "got min -0.5 and max 0.5; did you pass values in \\[-1, 1\\]\\? map them with \\(x \\+ 1\\) / 2"),
        (1.001, "got min 0.5 and max 1.001; clamp slightly out-of-range values"),
        (-3.0, "got min -3 and max 0.5$"),
    ],
)
def test_bad_values_are_rejected(make, bad, message):
    values = [[0.5, 0.5], [0.5, bad]]
    image = make(values) if make is np.asarray else make([values])  # (H, W) array or (1, H, W) tensor
    with pytest.raises(ValueError, match=f"dist: expected values in \\[0, 1\\].*{message}"):
        to_batch(image, name="dist")


def test_rounding_slack_is_clamped_but_no_more():
    inside = torch.tensor([[[-1e-6, 1.0 + 1e-6]]], dtype=torch.float64)
    batch = to_batch(inside)
    assert batch.min().item() == 0.0
    assert batch.max().item() == 1.0
    with pytest.raises(ValueError, match="got min -1e-05"):
        to_batch(torch.tensor([[[-1e-5, 0.5]]], dtype=torch.float64))
    # float16/bfloat16 get one unit in the last place at 1.0
    assert to_batch(torch.tensor([[[1.0009765625]]], dtype=torch.float16)).max().item() == 1.0
    with pytest.raises(ValueError, match=r"max 1\.00195"):
        to_batch(torch.tensor([[[1.001953125]]], dtype=torch.float16))
    assert to_batch(torch.tensor([[[1.0078125]]], dtype=torch.bfloat16)).max().item() == 1.0
    assert to_batch(np.array([[1.0 + 5e-7]])).max().item() == 1.0


def test_nan_in_dropped_alpha_is_ignored():
    array = np.full((2, 2, 4), 0.25)
    array[..., 3] = np.nan
    assert to_batch(array).unique().tolist() == [0.25]


# ----------------------------------------------------------------------------------------------------------------
# PIL images and files


def test_pil_rgb_and_l():
    array = _rgb_uint8()
    torch.testing.assert_close(to_batch(Image.fromarray(array)), _expected(array, 255.0), rtol=0, atol=0)
    gray = Image.fromarray(array[..., 0])
    assert gray.mode == "L"
    torch.testing.assert_close(to_batch(gray), _expected(np.repeat(array[..., :1], 3, axis=-1), 255.0), rtol=0, atol=0)


def test_pil_rgba_and_la_drop_alpha():
    array = _rgb_uint8()
    rgba = Image.fromarray(np.concatenate([array, np.zeros((5, 7, 1), np.uint8)], axis=-1))
    assert rgba.mode == "RGBA"
    torch.testing.assert_close(to_batch(rgba), _expected(array, 255.0), rtol=0, atol=0)
    la = Image.fromarray(array[..., 0]).convert("LA")
    torch.testing.assert_close(to_batch(la), to_batch(Image.fromarray(array[..., 0])), rtol=0, atol=0)


def test_pil_palette_uses_the_palette_and_ignores_transparency():
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    palette.putdata([0, 1, 2, 2, 1, 0])
    palette.info["transparency"] = b"\x00\x00\xff"  # indices 0 and 1 fully transparent, as bytes
    batch = to_batch(palette)
    assert batch[0, :, 0, 1].tolist() == [1.0, 0.0, 0.0]  # red, although transparent
    assert batch[0, :, 0, 2].tolist() == [0.0, 0.0, 1.0]
    assert batch[0, :, 1, 2].tolist() == [0.0, 0.0, 0.0]
    pa = palette.convert("PA")
    torch.testing.assert_close(to_batch(pa), batch, rtol=0, atol=0)


def test_pil_bilevel():
    image = Image.new("1", (4, 2), 0)
    image.putpixel((3, 1), 1)
    batch = to_batch(image)
    assert batch.sum().item() == 3.0
    assert batch[0, :, 1, 3].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("mode", ["1", "P", "PA"])
def test_bilevel_and_palette_files_stay_8_bit_for_scoring(tmp_path: Path, mode: str):
    # Issue 23 item 9: a 1-bit pair went through float32 (12 bytes a pixel, 4 times an 8-bit pair's memory) in
    # score() and `vtamiq score`; it is read as 8-bit data now, with the same values as the float path.
    rng = np.random.default_rng(9)
    if mode == "1":
        image = Image.fromarray(rng.integers(0, 2, (20, 24), dtype=np.uint8) * 255).convert("1")
    else:
        image = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).quantize(16).convert(mode)
    assert image.mode == mode
    path = tmp_path / ("x.tif" if mode == "PA" else "x.png")
    image.save(path)
    with Image.open(path) as reread:
        assert reread.mode == mode
    ref, dist = prepare_pair(path, path, keep_uint8=True)
    assert ref.dtype == dist.dtype == torch.uint8 and ref.shape == (1, 3, 20, 24)
    torch.testing.assert_close(ref.float() / 255, to_batch(path), rtol=0, atol=0)


def test_pil_16_bit_modes():
    data = np.array([[0, 1, 65535], [32768, 1000, 2]], dtype=np.uint16)
    expected = torch.tensor(data / 65535.0, dtype=torch.float32)
    little = Image.fromarray(data)
    big = Image.frombytes("I;16B", (3, 2), data.astype(">u2").tobytes())
    wide = Image.fromarray(data.astype(np.int32))
    assert (little.mode, big.mode, wide.mode) == ("I;16", "I;16B", "I")
    for image in (little, big, wide):
        batch = to_batch(image)
        assert batch.shape == (1, 3, 2, 3)
        torch.testing.assert_close(batch[0, 2], expected, rtol=0, atol=0)


def test_pil_mode_i_outside_16_bit_is_rejected():
    image = Image.fromarray(np.array([[0, 70000]], dtype=np.int32))
    with pytest.raises(ValueError, match=r"mode 'I' is read as 16-bit data .*got min 0 and max 70000"):
        to_batch(image)


def test_pil_float_mode():
    data = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    image = Image.fromarray(data)
    assert image.mode == "F"
    torch.testing.assert_close(to_batch(image)[0, 0], torch.from_numpy(data), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"ref: expected values in \[0, 1\], got min 0 and max 2"):
        to_batch(Image.fromarray(data * 2))


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr"])
def test_other_pil_modes_convert_to_rgb_with_a_warning(mode):
    rgb = Image.fromarray(_rgb_uint8())
    image = rgb.convert(mode)
    with pytest.warns(UserWarning, match=f"mode '{mode}' to RGB.*not colour-managed"):
        batch = to_batch(image)
    torch.testing.assert_close(batch, _expected(np.asarray(image.convert("RGB")), 255.0), rtol=0, atol=0)


def test_paths_str_and_pathlike_with_16_bit_png(tmp_path: Path):
    array = _rgb_uint8()
    Image.fromarray(array).save(tmp_path / "rgb.png")
    data = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1800)
    Image.fromarray(data).save(tmp_path / "gray16.png")
    with Image.open(tmp_path / "gray16.png") as reopened:
        assert reopened.mode in ("I;16", "I")
    torch.testing.assert_close(to_batch(str(tmp_path / "rgb.png")), _expected(array, 255.0), rtol=0, atol=0)
    batch = to_batch(tmp_path / "gray16.png")
    torch.testing.assert_close(batch[0, 1], torch.tensor(data / 65535.0, dtype=torch.float32), rtol=0, atol=0)


def test_missing_file_names_it(tmp_path: Path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=re.escape(f"dist: image file not found: '{missing}'")):
        to_batch(missing, name="dist")


def test_corrupt_file_names_it_and_the_reason(tmp_path: Path):
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"this is not a png" * 10)
    with pytest.raises(ValueError, match=re.escape(f"ref: cannot decode image file '{garbage}': cannot identify")):
        to_batch(garbage)


def test_truncated_file_names_it(tmp_path: Path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(f"cannot decode image file '{cut}'") + ".*(truncated|broken)"):
        to_batch(cut)


def test_directory_is_not_an_image(tmp_path: Path):
    with pytest.raises(ValueError, match="expected an image file, got the directory"):
        to_batch(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# tensors


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_tensor_keeps_dtype_and_values(dtype):
    image = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
    batch = to_batch(image)
    assert batch.shape == (1, 3, 6, 5)
    assert batch.dtype == dtype
    torch.testing.assert_close(batch[0], image, rtol=0, atol=0)


def test_one_channel_tensor_is_replicated():
    image = torch.rand(2, 1, 4, 4)
    batch = to_batch(image)
    assert batch.shape == (2, 3, 4, 4)
    torch.testing.assert_close(batch, image.expand(-1, 3, -1, -1), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int64, torch.bool, torch.complex64])
def test_non_float_tensor_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=f"ref: expected a tensor of dtype float16, bfloat16, .*got {dtype}"):
        to_batch(torch.zeros(3, 4, 4, dtype=dtype))


def test_uint8_tensors_are_0_255_data_like_uint8_arrays():
    pixels = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = to_batch(pixels)
    assert batch.dtype == torch.float32
    expected = to_batch(pixels.permute(0, 2, 3, 1).numpy())  # the same data as a uint8 (B, H, W, C) array
    torch.testing.assert_close(batch, expected, rtol=0, atol=0)
    gray = to_batch(pixels[0, :1])  # (1, H, W): replicated to RGB
    torch.testing.assert_close(gray, pixels[0, :1].float().div(255).expand(3, 5, 6)[None], rtol=0, atol=0)
    kept, _ = prepare_pair(pixels, pixels, patch_size=4, keep_uint8=True)
    assert kept.dtype == torch.uint8 and torch.equal(kept, pixels)
    with pytest.raises(TypeError, match=re.escape("x.float() / 65535")):
        to_batch(torch.zeros(3, 4, 4, dtype=torch.int32))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 4, 4, 4), r"got shape \(1, 4, 4, 4\): 4 channels \(RGBA\?\); drop or composite the alpha"),
        ((4, 4, 4), r"got shape \(4, 4, 4\): 4 channels"),
        ((2, 5, 6, 3), r"got shape \(2, 5, 6, 3\): 5 channels; this looks channel-last, use x.permute\(0, 3, 1, 2\)"),
        ((2, 5, 6), r"got shape \(2, 5, 6\): 2 channels$"),
        ((4, 4), r"got shape \(4, 4\); add a channel axis with x\[None\]"),
        ((1, 1, 3, 4, 4), r"got shape \(1, 1, 3, 4, 4\)$"),
        ((16,), r"got shape \(16,\)$"),
        ((0, 3, 4, 4), r"non-empty tensor, got shape \(0, 3, 4, 4\)"),
    ],
)
def test_tensor_with_wrong_shape_is_rejected(shape, message):
    with pytest.raises(ValueError, match=message):
        to_batch(torch.zeros(shape))


def test_gradients_flow_through_a_tensor_that_requires_grad():
    gray = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    rgb = torch.rand(3, 8, 8, requires_grad=True)
    weights = torch.arange(3.0).view(1, 3, 1, 1)
    (to_batch(gray) * weights).sum().backward()
    torch.testing.assert_close(gray.grad, torch.full_like(gray, 3.0))  # 0 + 1 + 2 over replicated channels
    ref, dist = prepare_pair(np.zeros((8, 8, 3), np.uint8), rgb, patch_size=8)
    (dist * weights).sum().backward()
    torch.testing.assert_close(rgb.grad, weights[0].expand(3, 8, 8))
    assert ref.requires_grad is False


def test_gradients_flow_through_the_clamped_slack():
    image = torch.tensor([[[0.25, 1.0 + 5e-7], [0.5, 0.75]]], requires_grad=True)
    batch = to_batch(image)
    assert batch.max().item() == 1.0
    batch.sum().backward()
    assert image.grad is not None
    torch.testing.assert_close(image.grad, torch.tensor([[[3.0, 0.0], [3.0, 3.0]]]))  # the clamped value gets none


def test_input_is_not_modified():
    image = torch.tensor([[[1.0 + 1e-6, 0.5]]])
    before = image.clone()
    to_batch(image)
    assert torch.equal(image, before)


# ----------------------------------------------------------------------------------------------------------------
# lists and other inputs


def test_list_of_mixed_kinds_forms_one_batch(tmp_path: Path):
    array = _rgb_uint8()
    Image.fromarray(array).save(tmp_path / "a.png")
    items = [tmp_path / "a.png", Image.fromarray(array), array, torch.from_numpy(array).permute(2, 0, 1) / 255.0]
    batch = to_batch(items)
    assert batch.shape == (4, 3, 5, 7)
    assert batch.dtype == torch.float32
    for index in range(4):
        torch.testing.assert_close(batch[index : index + 1], _expected(array, 255.0))


def test_list_with_a_batched_tensor_and_dtype_promotion():
    batch = to_batch((torch.rand(2, 3, 4, 4, dtype=torch.float16), torch.rand(3, 4, 4, dtype=torch.float64)))
    assert batch.shape == (3, 3, 4, 4)
    assert batch.dtype == torch.float64


def test_list_with_mixed_sizes_names_the_index():
    items = [np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)]
    with pytest.raises(ValueError, match=re.escape("got (8, 9) at dist[2] and (8, 8) at dist[0]")):
        to_batch(items, name="dist")


def test_list_item_errors_name_the_index():
    with pytest.raises(ValueError, match=r"ref\[1\]: expected values in \[0, 1\].*contains NaN"):
        to_batch([torch.zeros(3, 4, 4), torch.full((3, 4, 4), float("nan"))])
    with pytest.raises(TypeError, match=r"ref\[0\]: expected a path .*got a nested list"):
        to_batch([[np.zeros((4, 4), np.uint8)]])


@pytest.mark.parametrize("empty", [[], ()])
def test_empty_list_is_rejected(empty):
    with pytest.raises(ValueError, match=f"ref must hold at least one image, got an empty {type(empty).__name__}"):
        to_batch(empty)


@pytest.mark.parametrize("bad", [3, 2.5, None, b"a.png", {"a": 1}])
def test_unsupported_kind_is_a_type_error(bad):
    with pytest.raises(TypeError, match=f"expected a path .* or a list/tuple of them, got {type(bad).__name__}"):
        to_batch(bad)


# ----------------------------------------------------------------------------------------------------------------
# prepare_pair


def test_prepare_pair_returns_matching_batches():
    ref, dist = prepare_pair(torch.rand(2, 3, 16, 20, dtype=torch.float64), np.zeros((2, 16, 20, 3), np.uint8))
    assert ref.shape == dist.shape == (2, 3, 16, 20)
    assert ref.dtype == dist.dtype == torch.float64
    assert ref.device == dist.device


def test_prepare_pair_size_mismatch_message():
    message = "ref and dist must have the same size, got ref (384, 512) and dist (380, 512)"
    with pytest.raises(ValueError, match=re.escape(message)):
        prepare_pair(torch.rand(1, 3, 384, 512), torch.rand(1, 3, 380, 512))


def test_prepare_pair_batch_mismatch():
    with pytest.raises(ValueError, match="same number of images, got 2 ref and 3 dist"):
        prepare_pair(torch.rand(2, 3, 16, 16), torch.rand(3, 3, 16, 16))


def test_prepare_pair_requires_a_patch():
    prepare_pair(torch.rand(3, 16, 16), torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=re.escape("at least 16x16 pixels (the patch size), got (15, 40)")):
        prepare_pair(torch.rand(3, 15, 40), torch.rand(3, 15, 40))
    prepare_pair(torch.rand(3, 15, 40), torch.rand(3, 15, 40), patch_size=8)


@pytest.mark.parametrize(("patch_size", "error"), [(0, ValueError), (-2, ValueError), (16.0, TypeError),
                                                    (True, TypeError)])
def test_prepare_pair_rejects_bad_patch_size(patch_size, error):
    with pytest.raises(error, match="patch_size must be"):
        prepare_pair(torch.rand(3, 16, 16), torch.rand(3, 16, 16), patch_size=patch_size)


@pytest.mark.cuda
@requires_cuda
def test_prepare_pair_moves_non_tensor_side_to_the_tensor_device():
    dist = torch.rand(1, 3, 16, 16, device="cuda")
    ref, dist_out = prepare_pair(np.zeros((16, 16, 3), np.uint8), dist)
    assert ref.device == dist_out.device == dist.device
    with pytest.raises(ValueError, match="ref and dist must be on the same device, got ref on cpu and dist on cuda"):
        prepare_pair(torch.rand(1, 3, 16, 16), dist)


@pytest.mark.cuda
@requires_cuda
def test_cuda_tensor_keeps_device_and_list_devices_must_agree():
    image = torch.rand(3, 8, 8, device="cuda", dtype=torch.bfloat16)
    batch = to_batch([image, np.zeros((8, 8), np.uint8)])
    assert batch.device == image.device
    assert batch.dtype == torch.float32
    with pytest.raises(ValueError, match=r"all tensors in ref must be on the same device, got cpu at ref\[1\]"):
        to_batch([image, torch.rand(3, 8, 8)])


# ----------------------------------------------------------------------------------------------------------------
# property test


_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32, "float64": np.float64}


@st.composite
def _images(draw: st.DrawFn) -> tuple[object, np.ndarray, str]:
    """An image as a numpy array or tensor with random size, layout, dtype and value range (valid or not)."""
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    dtype = _DTYPES[draw(st.sampled_from(sorted(_DTYPES)))]
    as_tensor = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = draw(st.sampled_from([1, 3] if as_tensor else [0, 1, 2, 3, 4]))  # 0 = no channel axis
    shape = (height, width) + ((channels,) if channels else ())
    if np.issubdtype(dtype, np.integer):
        values = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    else:
        low = draw(st.sampled_from([0.0, 0.0, -1e-7, -0.5, -300.0]))
        high = draw(st.sampled_from([1.0, 1.0, 1.0 + 1e-7, 1.5, 255.0]))
        values = (low + (high - low) * rng.random(shape)).astype(dtype)
        special = draw(st.sampled_from([None, None, np.nan, np.inf, -np.inf]))
        if special is not None:
            values.flat[draw(st.integers(0, values.size - 1))] = special
    if not as_tensor:
        return values, values, "numpy"
    chw = np.moveaxis(values, -1, 0)  # (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(chw)), values, "tensor"


@settings(max_examples=60, deadline=None)
@given(_images())
def test_property_valid_batch_or_clear_error(case):
    image, values, kind = case
    integer = np.issubdtype(values.dtype, np.integer)
    color = values if values.ndim == 2 else values[..., :3] if values.shape[-1] >= 3 else values[..., :1]
    with np.errstate(invalid="ignore"):
        in_range = bool(np.all(np.isfinite(color)) and color.min() >= -1e-6 and color.max() <= 1 + 1e-6)
    if kind == "tensor" and integer and values.dtype != np.uint8:  # uint8 tensors are 0-255 data, like arrays
        event("TypeError")
        with pytest.raises(TypeError, match="expected a tensor of dtype float16"):
            to_batch(image)
        return
    if not integer and not in_range:
        event("ValueError")
        with pytest.raises(ValueError, match=r"expected values in \[0, 1\]"):
            to_batch(image)
        return
    event("valid")
    batch = to_batch(image)
    height, width = values.shape[:2]
    assert batch.shape == (1, 3, height, width)
    assert batch.dtype == (torch.float64 if values.dtype == np.float64 and kind == "tensor" else torch.float32)
    assert bool(torch.isfinite(batch).all())
    assert batch.min() >= 0
    assert batch.max() <= 1
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(values.dtype, 1.0)
    gray = color if color.ndim == 2 else color[..., 0]
    expected = np.clip(gray.astype(np.float64) / scale, 0, 1)
    torch.testing.assert_close(batch[0, 0].double(), torch.from_numpy(expected), rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# Files that are not images, and the 0-255 hint


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


@pytest.mark.parametrize(("low", "high", "hint"), [
    (0.0, 1.05, "clamp slightly out-of-range values"),
    (0.0, 1.106, "did you pass 0-255 values? divide by 255 (a network's outputs: clamp them"),  # above 1.1 too
    (0.0, 1.6, "did you pass 0-255 values? divide by 255"),
    (0.0, 200.0, "did you pass 0-255 values? divide by 255"),
    (0.0, 4095.0, "did you pass 16-bit values (0-65535)? divide by 65535"),
    (-0.5, 1.0, "did you pass values in [-1, 1]?"),
    (-3.0, 1.0, None),
])
def test_the_range_hint_names_what_the_data_looks_like(low, high, hint):
    image = torch.full((3, 16, 16), 0.5)
    image[0, 0, 0], image[0, 0, 1] = low, high
    with pytest.raises(ValueError, match=r"expected values in \[0, 1\]") as info:
        prepare_pair(image, image)
    message = str(info.value)
    if hint is None:
        assert message.endswith(f"max {high:.6g}")
    else:
        assert hint in message
    assert ("did you pass 0-255 values" in message) == (hint is not None and "0-255" in hint)
