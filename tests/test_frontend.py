"""The scoring front-end, once (``vtamiq_metric._frontend``, ``vtamiq_metric._checks``): every face x every bad option.

Each face of the metric (``score``, ``VTAMIQLoss``, ``VTAMIQMetric``, ``damage_map``, ``plot_damage_map``, ``vtamiq
score``, ``vtamiq map``) must refuse the same bad value with the same exception type and the same words. The Python
faces raise ``NAME must ...``; the command line says ``argument --FLAG: must ...`` (argparse, exit status 2) or
``vtamiq: error: ...`` (exit status 1, for a device this machine does not have).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from vtamiq_metric import VTAMIQ, VTAMIQLoss, _frontend, cli, damage_map, score
from vtamiq_metric._checks import renamed_keywords
from vtamiq_metric._frontend import REDUCTIONS, ScoringOptions, reduce, resolve
from vtamiq_metric.sampling import SamplingConfig

_DEVICE = "device: expected 'cpu', 'cuda', 'cuda:N', 'mps'..., got 'gpu0'"

# (option, bad value, exception, message): the message of a Python face, which starts with the option's name.
BAD: list[tuple[str, object, type[Exception], str]] = [
    ("num_patches", 0, ValueError, "num_patches must be an int >= 1, got 0"),
    ("num_patches", True, TypeError, "num_patches must be an int, got bool"),
    ("num_patches", 1.5, TypeError, "num_patches must be an int, got float"),
    ("num_repeats", 0, ValueError, "num_repeats must be an int >= 1, got 0"),
    ("num_repeats", True, TypeError, "num_repeats must be an int, got bool"),
    ("num_repeats", 2.0, TypeError, "num_repeats must be an int, got float"),
    ("seed", -1, ValueError, "seed must be an int in [0, 2**64), got -1"),
    ("seed", True, TypeError, "seed must be an int, got bool"),
    ("seed", "0", TypeError, "seed must be an int, got str"),
    ("precision", "fp8", ValueError, "precision must be one of ('auto', 'fp32', 'bf16', 'fp16'), got 'fp8'"),
    ("batch_size", 0, ValueError, "batch_size must be an int >= 1 or None, got 0"),
    ("batch_size", True, TypeError, "batch_size must be an int >= 1 or None, got bool"),
    ("sampling", "caps", TypeError, "sampling must be a SamplingConfig or None, got str"),
    ("compile", "yes", TypeError, "compile must be a bool, got str"),
    ("max_pixels", 0, ValueError, "max_pixels must be an int >= 1 or None, got 0"),
    ("max_pixels", True, TypeError, "max_pixels must be an int >= 1 or None, got bool"),
    ("reduction", "max", ValueError, "reduction must be one of ('mean', 'sum', 'none'), got 'max'"),
    ("device", "gpu0", ValueError, _DEVICE),
    ("device", 3, TypeError, "device must be None, a str or a torch.device, got int"),
    ("model", 3, TypeError, "model must be a name, a path or a VTAMIQ instance, got int"),
    ("steps", 0, ValueError, "steps must be an int >= 1, got 0"),
    ("steps", 1.5, TypeError, "steps must be an int, got float"),
    ("signed", 1, TypeError, "signed must be a bool, got int"),
    ("return_std", 1, TypeError, "return_std must be a bool, got int"),
    ("resample", "no", TypeError, "resample must be a bool, got str"),
]

# The options each face takes (besides images), and the command-line flag of each option.
FACES: dict[str, set[str]] = {
    "score": {"num_patches", "num_repeats", "seed", "precision", "batch_size", "sampling", "compile", "max_pixels",
              "device", "model", "return_std"},
    "VTAMIQLoss": {"num_patches", "seed", "precision", "sampling", "reduction", "model", "resample"},
    "VTAMIQMetric": {"num_patches", "num_repeats", "seed", "precision", "sampling", "batch_size", "reduction",
                     "model"},
    "damage_map": {"num_patches", "num_repeats", "seed", "precision", "sampling", "device", "model", "steps",
                   "signed", "max_pixels"},
    "plot_damage_map": {"num_patches", "num_repeats", "seed", "device", "model", "steps", "max_pixels"},
}
FLAGS: dict[str, dict[str, str]] = {
    "vtamiq score": {"num_patches": "--patches", "num_repeats": "--repeats", "seed": "--seed",
                     "precision": "--precision", "batch_size": "--batch-size", "device": "--device"},
    "vtamiq map": {"num_patches": "--patches", "num_repeats": "--repeats", "seed": "--seed", "device": "--device",
                   "steps": "--steps"},
}


def _python_face(face: str, model: VTAMIQ, image: torch.Tensor) -> Callable[[dict], object]:
    pair = (image, (image * 0.9).clamp(0, 1))

    def call(kwargs: dict) -> object:
        kwargs = {"model": model, **kwargs}
        if face == "score":
            return score(*pair, **kwargs)
        if face == "VTAMIQLoss":
            return VTAMIQLoss(kwargs.pop("model"), **kwargs)(*pair)
        if face == "VTAMIQMetric":
            pytest.importorskip("torchmetrics")
            from vtamiq_metric.metrics import VTAMIQMetric

            return VTAMIQMetric(kwargs.pop("model"), **kwargs).update(pair[1], pair[0])  # preds, target
        if face == "damage_map":
            return damage_map(*pair, **kwargs)
        pytest.importorskip("matplotlib")
        from vtamiq_metric.maps import plot_damage_map

        return plot_damage_map(*pair, **kwargs)

    return call


_PYTHON_CASES = [pytest.param(face, option, value, error, message, id=f"{face}-{option}={value!r}")
                 for face, options in FACES.items() for option, value, error, message in BAD if option in options]
# The command line reads text: only the bad values that a flag's text can mean (an int for the counts, a string for
# the precision and the device) have a command-line case.
_TEXT_TYPES = {"precision": str, "device": str}
_CLI_CASES = [pytest.param(face, option, value, error, message, id=f"{face}-{FLAGS[face][option]}={value!r}")
              for face in FLAGS for option, value, error, message in BAD
              if option in FLAGS[face] and type(value) is _TEXT_TYPES.get(option, int)]


def test_every_face_is_in_the_table():
    assert len(_PYTHON_CASES) > 60 and len(_CLI_CASES) >= 8
    covered = {option for option, *_ in BAD}
    assert set().union(*FACES.values()) <= covered


@pytest.mark.parametrize(("face", "option", "value", "error", "message"), _PYTHON_CASES)
def test_python_faces_refuse_a_bad_option_alike(tiny_model, face, option, value, error, message):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(error) as info:
        _python_face(face, tiny_model, image)({option: value})
    assert str(info.value).startswith(message), str(info.value)


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "ref.png")
    Image.fromarray(image // 2).save(root / "dist.png")
    torch.manual_seed(0)
    weights = VTAMIQ("tiny").eval().save_pretrained(root / "tiny")
    return root, str(weights)


@pytest.mark.parametrize(("face", "option", "value", "error", "message"), _CLI_CASES)
def test_command_line_faces_refuse_a_bad_option_alike(cli_inputs, capsys, face, option, value, error, message):
    root, weights = cli_inputs
    command = face.split()[1]
    argv = [command, str(root / "ref.png"), str(root / "dist.png"), "--model", weights, FLAGS[face][option],
            str(value)]
    if command == "map":
        argv += ["--output", str(root / "map.png")]
    if option == "device":  # a value argparse cannot check: the run stops with the Python message, exit status 1
        assert cli.main(argv) == 1
        # The same words, naming the flag: "--device: expected ..." where Python says "device: expected ...".
        assert f"vtamiq: error: {FLAGS[face][option]}{message.removeprefix(option)}" in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    # "must be ...", after argparse's "argument --flag:"; a flag cannot be None, so its words do not offer it.
    words = message.removeprefix(f"{option} ").replace(" or None", "")
    assert f"argument {FLAGS[face][option]}: {words}" in capsys.readouterr().err


def test_options_are_checked_on_construction_and_completed_from_the_model(tiny_model):
    options = ScoringOptions(num_repeats=2, seed=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 1  # type: ignore[misc]
    scorer = resolve(tiny_model, options)
    assert scorer.options.num_patches == tiny_model.config.num_patches
    assert scorer.options.sampling == tiny_model.config.sampling
    assert scorer.options.num_repeats == 2 and scorer.options.seed == 5
    assert scorer.device == torch.device("cpu") and scorer.model is tiny_model
    mine = SamplingConfig(1.0, 0.0, 1.0)
    assert resolve(tiny_model, ScoringOptions(num_patches=7, sampling=mine)).options.sampling is mine
    with pytest.raises(TypeError, match="options must be a ScoringOptions, got dict"):
        resolve(tiny_model, {"num_patches": 7})  # type: ignore[arg-type]


def test_a_named_model_is_shared_by_score_and_fresh_for_the_module_faces(tmp_path, tiny_model, monkeypatch):
    path = str(tiny_model.save_pretrained(tmp_path / "m"))
    monkeypatch.setattr(_frontend, "_MODEL_CACHE", {})
    shared = resolve(path, ScoringOptions(), device="cpu").model
    assert resolve(path, ScoringOptions(), device="cpu").model is shared  # cached per (name, device)
    fresh = resolve(path, ScoringOptions(), shared=False).model
    assert fresh is not shared and not fresh.training
    assert not any(p.requires_grad for p in fresh.parameters())


def test_reductions_are_one_table(tiny_model):
    scores = torch.tensor([1.0, 2.0, 4.0])
    assert REDUCTIONS == ("mean", "sum", "none")
    assert [reduce(scores, r).tolist() for r in REDUCTIONS] == [pytest.approx(7 / 3), 7.0, [1.0, 2.0, 4.0]]
    image = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    per_pair = VTAMIQLoss(tiny_model, num_patches=8, reduction="none", resample=False)(image, image.flip(-1))
    summed = VTAMIQLoss(tiny_model, num_patches=8, reduction="sum", resample=False)(image, image.flip(-1))
    torch.testing.assert_close(summed, per_pair.sum())


def test_the_module_faces_share_the_eval_lock(tiny_model):
    loss = VTAMIQLoss(tiny_model, num_patches=8)
    outer = torch.nn.Sequential(torch.nn.Identity(), loss).train()
    assert not loss.training and not loss.model.training and not outer[1].training
    assert (loss.num_patches, loss.seed, loss.precision) == (8, 0, "fp32")


def test_draws_is_a_deprecated_alias_of_num_repeats(tiny_model, image_pair):
    options = {"model": tiny_model, "num_patches": 8, "steps": 1}
    expected = damage_map(*image_pair, num_repeats=2, **options)
    with pytest.warns(DeprecationWarning, match=re.escape("damage_map(): draws= is deprecated, use num_repeats=")):
        torch.testing.assert_close(damage_map(*image_pair, draws=2, **options), expected)
    with pytest.raises(TypeError, match="got both num_repeats= and its deprecated name draws="):
        damage_map(*image_pair, draws=2, num_repeats=2, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name warns about nothing
        damage_map(*image_pair, num_repeats=1, **options)


def test_renamed_keywords_keep_the_signature():
    @renamed_keywords(old="new")
    def f(*, new: int = 1) -> int:
        """Doc."""
        return new

    assert f.__doc__ == "Doc." and f.__name__ == "f" and f() == 1
    with pytest.warns(DeprecationWarning):
        assert f(old=3) == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_says_so(tiny_model):
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="device='cuda' was requested but no CUDA device is available"):
        score(image, image, num_patches=8, device="cuda")


def test_the_options_of_a_module_face_read_and_write_as_attributes(tiny_model):
    pytest.importorskip("torchmetrics")
    from vtamiq_metric.metrics import VTAMIQMetric

    for face in (VTAMIQLoss(tiny_model, num_patches=8), VTAMIQMetric(tiny_model, num_patches=8)):
        face.seed = 3
        face.num_patches = 12
        assert (face.seed, face.num_patches, face.options.seed) == (3, 12, 3)
        face.num_patches = None  # the model's again
        assert face.num_patches == tiny_model.config.num_patches
        with pytest.raises(ValueError, match="num_patches must be an int >= 1, got 0"):
            face.num_patches = 0
        assert face.num_patches == tiny_model.config.num_patches  # a refused value changes nothing
