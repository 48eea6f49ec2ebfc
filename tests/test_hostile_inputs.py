"""Hostile inputs, one row each: the cases of the attacker's-eye probes (issue 23 and later), kept so that every
round starts from them.

Each row of :data:`CASES` is a :class:`Hostile`: an id, the issue item it comes from, a function that builds the input
in a temporary folder and feeds it to the package, the exception expected (or None: the input is handled and the call
returns) and a fragment of the message (of the exception, or of the log when nothing is raised). Commands go through
:func:`run_command`, which turns a failing exit status into :class:`CommandFailed` carrying stderr, so command-line
rows read like API rows; a traceback is never the expected outcome (the exception would be of another type).

To add rows: write a small builder function near your section (``def _my_case(tmp: Path) -> object``) and append
``Hostile(...)`` rows to :data:`CASES` under a comment naming the issue; an optional ``after`` function checks what
must still hold afterwards (files kept, nothing written). Rows must stay fast (well under a second each) and offline.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

# ---------------------------------------------------------------------------------------------------------------
# The table's machinery


class CommandFailed(Exception):
    """A command-line ``main`` returned a non-zero status (or argparse exited); the message is its stderr."""

    def __init__(self, status: int, stderr: str) -> None:
        super().__init__(f"exit status {status}: {stderr.strip()}")
        self.status = status
        self.stderr = stderr


def run_command(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> str:
    """Run a command's ``main(argv)`` in-process; its stdout, or :class:`CommandFailed` with its stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            status = exc.code if isinstance(exc.code, int) else 2
    if status != 0:
        raise CommandFailed(status, err.getvalue())
    return out.getvalue()


@dataclass(frozen=True)
class Hostile:
    """One hostile input and the clean outcome expected of it.

    Attributes:
        id: the test id, short and unique.
        issue: where the case comes from, e.g. ``"23.15"`` (issue 23, item 15).
        run: builds the input under the given temporary folder and feeds it to the package.
        raises: the exception type expected, or None when the input must be handled without one.
        fragment: a piece of the exception's message (or, with ``raises=None``, of the log; "" for no check).
        after: optional check of the temporary folder afterwards (e.g. that nothing was removed).
    """

    id: str
    issue: str
    run: Callable[[Path], object]
    raises: type[BaseException] | None
    fragment: str
    after: Callable[[Path], None] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Builders: weights and model files (issue 23 items 11 and 15)


def _tiny_model():
    from vtamiq_metric import VTAMIQ

    torch.manual_seed(0)
    return VTAMIQ("tiny").eval()


def _weights_file(tmp: Path, *, dtype: torch.dtype = torch.float32, **config_changes) -> Path:
    from safetensors.torch import save_file

    from vtamiq_metric.model.serialization import CONFIG_META

    model = _tiny_model()
    config = json.dumps({**model.config.to_dict(), **config_changes})
    path = tmp / "m.safetensors"
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={CONFIG_META: config})
    return path


def _load(path: Path) -> object:
    from vtamiq_metric import load_model

    return load_model(path)


def _config_json_not_utf8(tmp: Path) -> object:
    _tiny_model().save_pretrained(tmp / "m")
    (tmp / "m" / "config.json").write_bytes(b'{"embed_dim": 32, "name": "caf\xe9"}')
    return _load(tmp / "m")


def _convert_zero_row_channel_attention(tmp: Path) -> object:
    from vtamiq_metric.model.convert import convert_reference_state_dict

    # Just the keys the converter reads sizes from, in the paper era's layout, with an empty channel attention.
    state = {"transformer.embeddings.cls_token": torch.zeros(1, 1, 8),
             "transformer.embeddings.patch_embeddings.weight": torch.zeros(8, 3, 4, 4),
             "transformer.embeddings.positional_embeddings.positional_embeddings": torch.zeros(1, 5, 8),
             "transformer.encoder.layer.0.ffn.fc1.weight": torch.zeros(16, 8),
             "diff_net.0.body.0.body.4.conv_du.0.weight": torch.zeros(0, 8, 1, 1)}
    return convert_reference_state_dict(state, "paper2021")


# ---------------------------------------------------------------------------------------------------------------
# Builders: training (issue 23 items 1, 13, 15)


def _damaged_last_pt(tamper: Callable[[dict], None]) -> Callable[[Path], object]:
    """Save a real ``last.pt`` of the tiny model, damage it with ``tamper``, resume from it."""

    def run(tmp: Path) -> object:
        from types import SimpleNamespace

        from vtamiq_metric.training import checkpoint

        def fresh():
            model = _tiny_model()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            model(*(torch.rand(1, 4, 3, 16, 16) for _ in range(2)), torch.rand(1, 4, 2)).sum().backward()
            optimizer.step()
            return {"model": model, "optimizer": optimizer,
                    "scheduler": torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1])}

        path = tmp / "last.pt"
        checkpoint.save_checkpoint(path, **fresh(), epoch=0, progress=checkpoint.Progress(0, 0.5, 0), config={},
                                   rng=checkpoint.rng_state(), world_size=1)
        state = torch.load(path, weights_only=True)
        tamper(state)
        torch.save(state, path)
        ctx = SimpleNamespace(is_main=True, distributed=False, rank=0, world_size=1)
        return checkpoint.resume(path, **fresh(), ctx=ctx, seed=0, log=None)

    return run


def _wrong_head_shape(state: dict) -> None:
    state["model"]["head.fc2.weight"] = torch.zeros(3, 16)


def _bad_rng_state(state: dict) -> None:
    state["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)


def _train_config(**settings) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.training.config import TrainConfig

        return TrainConfig.from_dict(settings)

    return run


def _train_config_file(name: str, content: bytes) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.training.config import TrainConfig, load_config_file

        (tmp / name).write_bytes(content)
        return TrainConfig.from_dict(load_config_file(tmp / name))

    return run


def _train_cli(*argv: str) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.training.cli import main

        return run_command(main, [arg.format(tmp=tmp) for arg in argv])

    return run


# A previous run's files next to the user's own, as --overwrite finds them (the files' content does not matter:
# nothing may be read or removed when the new run cannot start).
_PREVIOUS_RUN = {"checkpoints/last.pt": b"a checkpoint", "best/model.safetensors": b"weights",
                 "best/config.json": b"{}", "metrics.jsonl": b'{"epoch": 0}\n', "config.json": b"{}",
                 "best/my_photo.jpg": b"\xff\xd8 the user's", "run_notes/thesis.tex": b"\\chapter{}"}


def _overwrite_with_a_mistyped_data_root(tmp: Path) -> object:
    for name, data in _PREVIOUS_RUN.items():
        (tmp / "run" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "run" / name).write_bytes(data)
    return _train_cli("train", "--dataset", "kadid10k", "--data-root", "{tmp}/kadid_typo", "--output", "{tmp}/run",
                      "--overwrite", "--model-preset", "tiny")(tmp)


def _previous_run_is_intact(tmp: Path) -> None:
    files = {str(p.relative_to(tmp / "run")): p.read_bytes() for p in (tmp / "run").rglob("*") if p.is_file()}
    assert files == _PREVIOUS_RUN


def _plot_metrics(rows: list[dict]) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        pytest.importorskip("matplotlib")
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        return _train_cli("plot", "{tmp}", "--out", "{tmp}/curves.png")(tmp)

    return run


# ---------------------------------------------------------------------------------------------------------------
# Builders: inputs and files (issue 23 items 14, 17)


def _score_flipped_uint8(view: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric import score

        rng = np.random.default_rng(0)
        ref = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        dist = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        out = score(view(ref), view(dist), model=_tiny_model(), num_patches=8, precision="fp32")
        assert torch.equal(out, score(np.ascontiguousarray(view(ref)), np.ascontiguousarray(view(dist)),
                                      model=_tiny_model(), num_patches=8, precision="fp32"))
        return out

    return run


# ---------------------------------------------------------------------------------------------------------------
# Builders: image files and `vtamiq score` (issue 23 items 2-7, 9, 11, 15, 16)

# A minimal EPS file: Pillow reads its header, and decoding it would start Ghostscript on the PostScript.
_EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
        b"newpath 0 0 moveto 16 16 lineto stroke showpage\n%%EOF\n")
# A DDS header with an unknown pixel format (FourCC "XXXX"): Pillow's DDS plugin raises NotImplementedError on it.
_BAD_DDS = (b"DDS " + struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0) + bytes(44) + struct.pack("<2I", 32, 0x4)
            + b"XXXX" + bytes(40) + bytes(1024))


def _png(path: Path, seed: int = 0, size: tuple[int, int] = (24, 32)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _no_ghostscript(run: Callable[[Path], object]) -> Callable[[Path], object]:
    """``run`` with Pillow's Ghostscript call replaced by a failure: an EPS file must never get that far."""

    def guarded(tmp: Path) -> object:
        from unittest import mock

        from PIL import EpsImagePlugin

        def started(*args: object, **kwargs: object) -> None:
            raise AssertionError("Ghostscript was started on an untrusted file")

        with mock.patch.object(EpsImagePlugin, "Ghostscript", started):
            return run(tmp)

    return guarded


def _load_file(name: str, content: bytes) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric._validation import load_image

        (tmp / name).write_bytes(content)
        return load_image(tmp / name, name="dist")

    return run


def _score_file(name: str, content: bytes) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric import score

        (tmp / name).write_bytes(content)
        return score(_png(tmp / "ref.png"), tmp / name, model=_tiny_model(), num_patches=4)

    return run


def _score_cli(*argv: str, files: dict[str, bytes] | None = None, pngs: Sequence[str] = ()) -> Callable[[Path], object]:
    """``vtamiq score`` with the tiny model (``{tmp}`` and ``{model}`` in ``argv`` are filled in) on ``files`` (given
    bytes) and ``pngs`` (random 24 x 32 images), all under the temporary folder."""

    def run(tmp: Path) -> object:
        from vtamiq_metric.cli import main

        for k, name in enumerate(pngs):
            _png(tmp / name, seed=k)
        for name, content in (files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        model = _tiny_model().save_pretrained(tmp / "model")
        args = [arg.format(tmp=tmp, model=model) for arg in argv]
        return run_command(main, [*args, "--no-progress"] if args[0] == "score" else args)

    return run


def _map_cli_of_a_huge_header(tmp: Path) -> object:
    pytest.importorskip("matplotlib")
    from tests.helpers import write_png_header
    from vtamiq_metric.cli import main

    huge = write_png_header(tmp / "huge.png", 16_000, 10_000)
    model = _tiny_model().save_pretrained(tmp / "model")
    return run_command(main, ["map", str(huge), str(huge), "--model", str(model), "--output", str(tmp / "m.png")])


def _map_cli_out_of_memory(tmp: Path) -> object:
    """``vtamiq map`` whose computation runs out of memory as torch's CPU allocator reports it."""
    from unittest import mock

    from vtamiq_metric import _plotting, maps
    from vtamiq_metric.cli import main

    def allocation_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 3435973836 bytes. Error code 12 (Cannot allocate memory)")

    _png(tmp / "a.png")
    with mock.patch.object(_plotting, "check_figure_path"), mock.patch.object(maps, "plot_damage_map",
                                                                              allocation_fails):
        return run_command(main, ["map", str(tmp / "a.png"), str(tmp / "a.png"), "--output", str(tmp / "m.png")])


def _nothing_written(name: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert not (tmp / name).exists()

    return check


def _folder_args(tmp: Path, names: Sequence[str] = ("a.png", "b.png"), *extra: str) -> list[str]:
    """``vtamiq score`` of two folders ``tmp/r`` and ``tmp/d`` holding ``names`` (random PNGs), with the tiny model."""
    for k, name in enumerate(names):
        _png(tmp / "r" / name, seed=2 * k)
        _png(tmp / "d" / name, seed=2 * k + 1)
    model = tmp / "model"
    if not model.exists():
        _tiny_model().save_pretrained(model)
    return ["score", "--ref-dir", str(tmp / "r"), "--dist-dir", str(tmp / "d"), "--model", str(model),
            "--patches", "4", "--no-progress", "--device", "cpu", *extra]


def _score_twice(first: Sequence[str], second: Sequence[str], *, prepare: Callable[[Path], None] | None = None,
                 names: Sequence[str] = ("a.png", "b.png")) -> Callable[[Path], object]:
    """A first ``vtamiq score`` run (which must succeed), ``prepare``, then a second one: its stdout."""

    def run(tmp: Path) -> object:
        from vtamiq_metric.cli import main

        run_command(main, _folder_args(tmp, names, *(arg.format(tmp=tmp) for arg in first)))
        if prepare is not None:
            prepare(tmp)
        return run_command(main, _folder_args(tmp, names, *(arg.format(tmp=tmp) for arg in second)))

    return run


def _save_other_model(path: Path) -> None:
    """Save a tiny model with other weights than :func:`_tiny_model`'s to ``path``."""
    from vtamiq_metric import VTAMIQ

    torch.manual_seed(1)
    VTAMIQ("tiny").eval().save_pretrained(path)


def _pairs_file(tmp: Path, content: bytes) -> Path:
    _png(tmp / "a.png")
    _png(tmp / "b.png", seed=1)
    (tmp / "pairs.csv").write_bytes(content)
    return tmp / "pairs.csv"


def _score_pairs_file(content: bytes, *extra: str) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.cli import main

        pairs = _pairs_file(tmp, content)
        model = _tiny_model().save_pretrained(tmp / "model")
        return run_command(main, ["score", "--pairs", str(pairs), "--model", str(model), "--patches", "4",
                                  "--no-progress", *(arg.format(tmp=tmp) for arg in extra)])

    return run


def _pairs_file_unchanged(tmp: Path) -> None:
    assert (tmp / "pairs.csv").read_bytes() == b"ref,dist\na.png,b.png\n"


def _hold_the_lock(run: Callable[[Path], object]) -> Callable[[Path], object]:
    """``run`` while another holder (an open lock, as another process's) has ``tmp/scores.csv`` locked."""

    def locked(tmp: Path) -> object:
        from vtamiq_metric.cli.outfile import OutputLock

        (tmp / "scores.csv").write_text("ref,dist,score,std,error\n")
        holder = OutputLock(tmp / "scores.csv").acquire()
        try:
            return run(tmp)
        finally:
            holder.release()

    return locked


def _score_into(name: str) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.cli import main

        return run_command(main, [*_folder_args(tmp), "--output", str(tmp / name)])

    return run


def _other_runs_file_is_intact(tmp: Path) -> None:
    assert (tmp / "scores.csv").read_text() == "ref,dist,score,std,error\n"


def _replace_the_output(name: str, content: bytes) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        (tmp / name).write_bytes(content)

    return prepare


def _merge_rows(content: bytes) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.cli import main

        (tmp / "s.shard-0-of-1.json").write_bytes(content)
        return run_command(main, ["merge-scores", str(tmp / "s.json")])

    return run


def _json_nan_scores(tmp: Path) -> object:
    """``vtamiq score --json --output s.json`` with a model whose scores are NaN: both JSON outputs stay JSON, each
    pair a failed row (``score: null``, an ``error``), and the exit status says every pair failed."""
    from unittest import mock

    from vtamiq_metric import api
    from vtamiq_metric.cli import main

    def nan_scores(scorer: object, ref: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((len(ref),), float("nan")), torch.zeros(len(ref))

    def not_json(constant: str) -> None:
        raise AssertionError(f"invalid JSON: a bare {constant}")

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(api, "score_batch", nan_scores), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        status = main([*_folder_args(tmp), "--json", "--output", str(tmp / "s.json")])
    for rows in (json.loads(out.getvalue(), parse_constant=not_json),
                 json.loads((tmp / "s.json").read_text(), parse_constant=not_json)):
        assert [row["score"] for row in rows] == [None, None]
        assert all("the model gave a non-finite score (nan" in row["error"] for row in rows)
    assert status == 1 and "non-finite score" in err.getvalue()
    return rows


def _output_is_an_input_image(tmp: Path) -> object:
    """A pairs list whose reference is a PNG named ``img.json``, and ``--output img.json``."""
    from PIL import Image

    from vtamiq_metric.cli import main

    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp / "img.json", format="PNG")
    _png(tmp / "b.png")
    (tmp / "pairs.csv").write_text("ref,dist\nimg.json,b.png\n")
    model = _tiny_model().save_pretrained(tmp / "model")
    return run_command(main, ["score", "--pairs", str(tmp / "pairs.csv"), "--model", str(model), "--output",
                              str(tmp / "img.json")])


def _image_json_is_intact(tmp: Path) -> None:
    from PIL import Image

    with Image.open(tmp / "img.json") as image:
        assert image.format == "PNG"


# Names a spreadsheet would run as formulas, and one that starts with the quote that neutralises them.
_FORMULA_NAMES = ("=1+1.png", "+a.png", "-b.png", "@c.png", "'q.png")


def _formula_names(tmp: Path) -> object:
    """A pairs list of names a spreadsheet runs as formulas, scored into CSV from the list's folder, then resumed."""
    from vtamiq_metric.cli import main
    from vtamiq_metric.cli.formats import CsvWriter

    for k, name in enumerate(_FORMULA_NAMES):
        _png(tmp / name, seed=k)
    (tmp / "pairs.csv").write_text("ref,dist\n" + "".join(f'"{n}","{n}"\n' for n in _FORMULA_NAMES))
    model = _tiny_model().save_pretrained(tmp / "model")
    args = ["score", "--pairs", "pairs.csv", "--model", str(model), "--patches", "4", "--no-progress", "--output",
            "s.csv"]
    with contextlib.chdir(tmp):  # relative paths: the cells start with the names themselves
        run_command(main, args)
        text = Path("s.csv").read_text()
        assert [Path(row["ref"]).name for row in CsvWriter.load(Path("s.csv"))] == list(_FORMULA_NAMES)
        run_command(main, [*args, "--resume"])
        assert Path("s.csv").read_text() == text
    return text


def _formula_cells_are_quoted(tmp: Path) -> None:
    lines = (tmp / "s.csv").read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == ["'=1+1.png", "'+a.png", "'-b.png", "'@c.png", "''q.png"]


# A file name that is not UTF-8 (Latin-1 "café"), as Python holds it: with a lone surrogate for the byte 0xE9.
_LATIN1_NAME = os.fsdecode(b"caf\xe9.png")


def _latin1_names_resume(suffix: str) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        from vtamiq_metric.cli import main

        args = _folder_args(tmp, (_LATIN1_NAME, "b.png"), "--output", str(tmp / f"s{suffix}"))
        run_command(main, args)
        data = (tmp / f"s{suffix}").read_bytes()
        assert (b"caf\xe9.png" if suffix == ".csv" else b"caf\\udce9.png") in data
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([*args, "--resume"]) == 0
        assert "2 of 2 pairs already scored" in err.getvalue()
        assert (tmp / f"s{suffix}").read_bytes() == data
        return data

    return run


def _disk_full_after_the_first_write(tmp: Path) -> object:
    """Every write of a results file after the first fails with ENOSPC (the rows are appended to the open CSV before
    the disk fills up): the run and a --resume of it both finish."""
    import errno
    from unittest import mock

    from vtamiq_metric.cli import formats, main

    real, calls = formats.atomic_write_text, []

    def full(path: Path, text: str, **kwargs: object) -> Path:
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text, **kwargs)

    args = _folder_args(tmp, ("a.png", "b.png", "c.png"), "--output", str(tmp / "s.csv"), "--batch-size", "1")
    with mock.patch.object(formats, "atomic_write_text", full):
        run_command(main, args)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main([*args, "--resume"]) == 0
    assert "3 of 3 pairs already scored" in err.getvalue()
    return calls


def _json_rewrite_fails_once(tmp: Path) -> object:
    """The final rewrite of a JSON file fails once with ENOSPC: a clean error that says how to complete the file,
    and the --resume that follows completes it."""
    import errno
    from unittest import mock

    from vtamiq_metric.cli import formats, main

    real, calls = formats.atomic_write_text, []

    def fails_once(path: Path, text: str, **kwargs: object) -> Path:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text, **kwargs)

    args = _folder_args(tmp, ("a.png", "b.png"), "--output", str(tmp / "s.json"))
    with mock.patch.object(formats, "atomic_write_text", fails_once):
        try:
            run_command(main, args)
        except CommandFailed as failed:
            assert failed.status == 1 and "make room and run the same command with --resume" in failed.stderr
        run_command(main, [*args, "--resume"])
    assert [row["score"] is not None for row in json.loads((tmp / "s.json").read_text())] == [True, True]
    return calls


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def _folder_run_kept_the_good_pair(tmp: Path) -> None:
    rows = _rows(tmp / "scores.csv")
    assert [Path(row["dist"]).name for row in rows] == ["a.png", "b.png"]
    assert float(rows[0]["score"]) >= 0 and rows[0]["error"] == ""
    assert rows[1]["score"] == "" and "DDS format" in rows[1]["error"]


# ---------------------------------------------------------------------------------------------------------------
# The table

CASES: list[Hostile] = [
    # Issue 23 item 11: a crafted config, finite in float64 and infinite in float32, gave NaN scores.
    Hostile("weights-config-mean-1e300", "23.11", lambda tmp: _load(_weights_file(tmp, mean=[1e300, 0.0, 0.0])),
            ValueError, "VTAMIQConfig.mean must be finite in float32"),
    Hostile("weights-config-norm-eps-1e-50", "23.11", lambda tmp: _load(_weights_file(tmp, norm_eps=1e-50)),
            ValueError, "norm_eps must be a finite number > 0 in float32"),
    # Issue 23 item 15: tracebacks instead of messages.
    Hostile("weights-float8-e4m3fn", "23.15", lambda tmp: _load(_weights_file(tmp, dtype=torch.float8_e4m3fn)),
            ValueError, "float16, bfloat16, float32 or float64, got torch.float8_e4m3fn"),
    Hostile("weights-float8-e5m2", "23.15", lambda tmp: _load(_weights_file(tmp, dtype=torch.float8_e5m2)),
            ValueError, "float16, bfloat16, float32 or float64, got torch.float8_e5m2"),
    Hostile("model-config-json-not-utf8", "23.15", _config_json_not_utf8, ValueError,
            "m/config.json: expected UTF-8 JSON text, got a byte that is not UTF-8 at offset 30"),
    Hostile("convert-zero-row-conv-du", "23.15", _convert_zero_row_channel_attention, ValueError,
            "'diff_net.0.body.0.body.4.conv_du.0.weight' to be a 3-D or 4-D tensor with a non-empty dimension 0"),
    Hostile("last-pt-wrong-tensor-shape", "23.15", _damaged_last_pt(_wrong_head_shape), ValueError,
            "key 'head.fc2.weight' has shape (3, 16), the model expects (1, 16)"),
    Hostile("last-pt-bad-rng-state", "23.15", _damaged_last_pt(_bad_rng_state), ValueError,
            "its RNG state 'rng' cannot be restored: the torch state is not valid"),
    Hostile("train-config-file-not-utf8", "23.15", _train_config_file("c.toml", b'output = "caf\xe9"\n'), ValueError,
            "c.toml: expected UTF-8 text, got a byte that is not UTF-8 at offset 13"),
    Hostile("evaluate-repeats-0", "23.15", _train_cli("evaluate", "--checkpoint", "{tmp}", "--dataset", "kadid10k",
                                                      "--data-root", "{tmp}", "--repeats", "0"),
            CommandFailed, "argument --repeats: expected an integer >= 1, got 0"),
    Hostile("plot-metrics-1e308", "23.15",
            _plot_metrics([{"epoch": 0, "train_loss": 1e308, "val_srocc": -1e308, "val_selection": -1e308},
                           {"epoch": 1, "train_loss": 0.5, "val_srocc": 0.5, "val_selection": 0.5}]),
            None, "not drawn, beyond +-1e+100: train_loss=1e+308 (epoch 0)"),
    # Issue 23 item 13: training config misreads.
    Hostile("train-config-lr-milestones-string", "23.13", _train_config(lr_milestones="12"), TypeError,
            "TrainConfig.lr_milestones must be a list of ints, got '12' (a string)"),
    Hostile("train-config-lr-gamma-nan", "23.13", _train_config_file("c.toml", b"lr_gamma = nan\n"), ValueError,
            "TrainConfig.lr_gamma must be a finite number, got nan"),
    Hostile("train-config-lr-string", "23.13", _train_config_file("c.toml", b'lr = "1e-3"\n'), TypeError,
            "TrainConfig.lr must be a finite number, got '1e-3' (a string)"),
    Hostile("train-flag-lr-gamma-nan", "23.13", _train_cli("train", "--data-root", "{tmp}", "--output", "{tmp}/run",
                                                           "--lr-gamma", "nan"),
            CommandFailed, "TrainConfig.lr_gamma must be a finite number, got nan"),
    # Issue 23 item 1: --overwrite with a mistyped data root removed the previous run (and the user's files).
    Hostile("train-overwrite-mistyped-data-root", "23.1", _overwrite_with_a_mistyped_data_root, CommandFailed,
            "kadid_typo", after=_previous_run_is_intact),
    # Issue 23 item 14: uint8 views with negative strides were refused with torch's internal message.
    Hostile("score-uint8-flipud", "23.14", _score_flipped_uint8(np.flipud), None, ""),
    Hostile("score-uint8-rot90", "23.14", _score_flipped_uint8(np.rot90), None, ""),
    # Issue 23 item 7: an EPS file renamed .png made Pillow start Ghostscript on attacker-supplied PostScript.
    Hostile("eps-renamed-png-load-image", "23.7", _no_ghostscript(_load_file("x.png", _EPS)), ValueError,
            "it is in the EPS format, which is not one of the supported formats (PNG, JPEG, BMP, TIFF, WEBP"),
    Hostile("eps-renamed-png-score", "23.7", _no_ghostscript(_score_file("x.png", _EPS)), ValueError,
            "dist: cannot decode image file"),
    Hostile("eps-renamed-png-cli", "23.7",
            _no_ghostscript(_score_cli("score", "{tmp}/ref.png", "{tmp}/x.png", "--model", "{model}",
                                       files={"x.png": _EPS}, pngs=["ref.png"])),
            CommandFailed, "it is in the EPS format"),
    # Issue 23 item 5: a malformed DDS raised NotImplementedError and stopped a folder run with a traceback.
    Hostile("dds-malformed-load-image", "23.5", _load_file("x.dds", _BAD_DDS), ValueError, "DDS format"),
    Hostile("dds-malformed-in-a-folder-run", "23.5",
            _score_cli("score", "--ref-dir", "{tmp}/r", "--dist-dir", "{tmp}/d", "--model", "{model}", "--output",
                       "{tmp}/scores.csv", files={"d/b.png": _BAD_DDS}, pngs=["r/a.png", "d/a.png", "r/b.png"]),
            CommandFailed, "exit status 3: ", after=_folder_run_kept_the_good_pair),
    # Issue 23 item 2: two runs writing one --output, and an --output that is one of the inputs.
    Hostile("score-output-locked-by-another-run", "23.2",
            _hold_the_lock(_score_into("scores.csv")),
            CommandFailed, "scores.csv is being written by another vtamiq run (process ",
            after=_other_runs_file_is_intact),
    Hostile("score-output-is-the-pairs-file", "23.2", _score_pairs_file(b"ref,dist\na.png,b.png\n", "--output",
                                                                        "{tmp}/pairs.csv"),
            CommandFailed, "pairs.csv is one of the inputs", after=_pairs_file_unchanged),
    Hostile("score-output-is-an-input-image", "23.2", _output_is_an_input_image, CommandFailed,
            "img.json is one of the inputs", after=_image_json_is_intact),
    # Issue 23 item 3: --resume with other options appended scores of another metric to the same file.
    Hostile("score-resume-with-another-seed", "23.3",
            _score_twice(["--output", "{tmp}/s.csv"], ["--output", "{tmp}/s.csv", "--resume", "--seed", "1"]),
            CommandFailed, "made with other options than this run's: seed: 0 -> 1"),
    Hostile("score-resume-with-other-patches-and-repeats", "23.3",
            _score_twice(["--output", "{tmp}/s.json"], ["--output", "{tmp}/s.json", "--resume", "--patches", "8",
                                                        "--repeats", "2"]),
            CommandFailed, "num_patches: 4 -> 8; num_repeats: 1 -> 2"),
    Hostile("score-resume-with-another-model", "23.3",
            _score_twice(["--output", "{tmp}/s.csv"], ["--output", "{tmp}/s.csv", "--resume", "--model",
                                                       "{tmp}/model2"],
                         prepare=lambda tmp: _save_other_model(tmp / "model2")),
            CommandFailed, "/model2' (sha256 "),
    Hostile("score-resume-without-a-record", "23.3",
            _score_twice(["--output", "{tmp}/s.csv"], ["--output", "{tmp}/s.csv", "--resume"],
                         prepare=lambda tmp: (tmp / "s.csv.meta.json").unlink()),
            CommandFailed, "holds scores but no s.csv.meta.json recording the options"),
    # Issue 23 item 4: a full disk after the last row: the run and its --resume must be able to finish.
    Hostile("score-disk-full-after-the-last-row", "23.4", _disk_full_after_the_first_write, None, ""),
    Hostile("score-json-final-rewrite-fails", "23.4", _json_rewrite_fails_once, None, ""),
    # Issue 23 item 6: names that are not UTF-8 stopped a CSV run with a codec error, and --resume forever.
    Hostile("score-csv-names-not-utf8", "23.6", _latin1_names_resume(".csv"), None, ""),
    Hostile("score-json-names-not-utf8", "23.6", _latin1_names_resume(".json"), None, ""),
    # Issue 23 item 11: `--json` printed a bare NaN, which is not JSON.
    Hostile("score-json-nan", "23.11", _json_nan_scores, None, ""),
    # Issue 23 item 15: tracebacks instead of messages (the command line's part).
    Hostile("pairs-csv-cell-over-131072", "23.15", _score_pairs_file(b"ref,dist\n" + b"x" * 140_000 + b",b.png\n"),
            CommandFailed, "pairs.csv at line 2: field larger than field limit (131072)"),
    Hostile("pairs-csv-not-utf8", "23.15", _score_pairs_file(b"ref,dist\ncaf\xe9.png,b.png\n"), CommandFailed,
            "pairs.csv: expected UTF-8 text, got a byte that is not UTF-8 at offset 12; save it as UTF-8"),
    Hostile("resume-csv-cell-over-131072", "23.15",
            _score_twice(["--output", "{tmp}/s.csv"], ["--output", "{tmp}/s.csv", "--resume"],
                         prepare=_replace_the_output("s.csv", b"ref,dist,score,std,error\n" + b"x" * 140_000
                                                     + b",b.png,0.5,0.0,\n")),
            CommandFailed, "s.csv: line 2: field larger than field limit (131072)"),
    Hostile("resume-json-100000-deep", "23.15",
            _score_twice(["--output", "{tmp}/s.json"], ["--output", "{tmp}/s.json", "--resume"],
                         prepare=_replace_the_output("s.json", b"[" * 100_000 + b"]" * 100_000)),
            CommandFailed, "its JSON is nested too deeply to be a results file"),
    Hostile("merge-scores-rows-not-objects", "23.15", _merge_rows(b"[1, 2]"), CommandFailed,
            "s.shard-0-of-1.json: row 1 is not an object of named fields"),
    # Issue 23 item 16: names that a spreadsheet runs as formulas were written as they are into CSV output.
    Hostile("score-csv-formula-names", "23.16", _formula_names, None, "", after=_formula_cells_are_quoted),
    # Issue 23 item 9: `vtamiq map` had no pixel limit and died in an allocation with a traceback.
    Hostile("map-header-of-160-megapixels", "23.9", _map_cli_of_a_huge_header, CommandFailed,
            "expected at most max_pixels=150,000,000 pixels, got a 16000x10000 image", after=_nothing_written("m.png")),
    Hostile("map-out-of-memory", "23.9", _map_cli_out_of_memory, CommandFailed,
            "exit status 1: vtamiq: error: out of memory drawing the damage map of", after=_nothing_written("m.png")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_gives_a_clean_outcome(case: Hostile, tmp_path: Path, caplog) -> None:
    if case.raises is None:
        with caplog.at_level(logging.WARNING):
            case.run(tmp_path)
        assert case.fragment in caplog.text
    else:
        with pytest.raises(case.raises) as info:
            case.run(tmp_path)
        message = str(info.value)
        assert case.fragment in message
        assert "Traceback (most recent call last)" not in message
    if case.after is not None:
        case.after(tmp_path)


def test_the_table_has_unique_ids_and_names_its_issues() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert all(case.issue and case.issue[0].isdigit() for case in CASES)
