"""Reference-level train/val/test splits (paper counts, seeding, JSON round trip, tamper detection)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vtamiq_metric.training.datasets import Split, make_split, split_dataset


def _ids(n: int) -> list[str]:
    return [f"I{k + 1:02d}" for k in range(n)]


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [("LIVE", 29, (17, 6, 6)), ("CSIQ", 30, (18, 6, 6)), ("TID2013", 25, (15, 5, 5)), ("KADID-10k", 81, (49, 16, 16))],
)
def test_paper_counts(name: str, n: int, expected: tuple[int, int, int]) -> None:
    for seed in range(5):
        split = make_split(_ids(n), seed=seed)
        assert split.counts() == expected, name
        parts = [set(split.train), set(split.val), set(split.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert set().union(*parts) == set(_ids(n))


def test_seeded_reproducible_and_order_independent() -> None:
    ids = _ids(30)
    a = make_split(ids, seed=7)
    assert make_split(list(reversed(ids)), seed=7) == a  # input order does not matter
    assert make_split(ids, seed=8) != a
    before = np.random.get_state()[1].copy()
    make_split(ids, seed=3)
    assert np.array_equal(np.random.get_state()[1], before)  # the global RNG is untouched
    assert a.seed == 7


def test_make_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"repeated.*I01"):
        make_split(["I01", "I02", "I01"], seed=0)
    with pytest.raises(ValueError, match="at least one training reference"):
        make_split(["a", "b"], seed=0, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"val_fraction in \[0, 1\)"):
        make_split(_ids(10), seed=0, val_fraction=1.5)
    with pytest.raises(TypeError, match="seed"):
        make_split(_ids(10), seed=-1)
    with pytest.raises(TypeError, match="sequence"):
        make_split("I01", seed=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    split = make_split(_ids(29), seed=11)
    path = tmp_path / "split.json"
    split.save(path)
    assert Split.load(path) == split


def test_tampered_or_malformed_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    make_split(_ids(25), seed=0).save(path)
    data = json.loads(path.read_text())

    moved = dict(data, test=data["test"][1:], train=data["train"] + data["test"][:1])
    path.write_text(json.dumps(moved))
    with pytest.raises(ValueError, match=r"split\.json: the id lists do not match the file's checksum"):
        Split.load(path)

    overlap = dict(data, val=data["val"] + data["train"][:1])
    overlap.pop("checksum")  # a hand-edited file without checksum is still validated
    path.write_text(json.dumps(overlap))
    with pytest.raises(ValueError, match=rf"split\.json: .*{data['train'][0]}.*\['train', 'val'\]"):
        Split.load(path)

    path.write_text(json.dumps(dict(data, train="I01")))
    with pytest.raises(ValueError, match="'train' to be a list"):
        Split.load(path)
    path.write_text(json.dumps({"train": [], "val": [], "test": []}))
    with pytest.raises(ValueError, match="format"):
        Split.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        Split.load(path)
    with pytest.raises(FileNotFoundError):
        Split.load(tmp_path / "missing.json")


def test_split_dataset_groups_by_reference(tmp_path: Path) -> None:
    from PIL import Image

    from vtamiq_metric.training.datasets import get_dataset

    lines = []
    rng = np.random.default_rng(0)
    for r in range(1, 11):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"ref{r}.png")
        for k in range(3):
            Image.fromarray(np.full((4, 4, 3), k, np.uint8)).save(tmp_path / f"d{r}_{k}.png")
            lines.append(f"ref{r}.png,d{r}_{k}.png,{rng.uniform(1, 5):.3f}")
    (tmp_path / "pairs.csv").write_text("ref,dist,score\n" + "\n".join(lines) + "\n")
    ds = get_dataset("csv", tmp_path / "pairs.csv", higher_is_better=True)
    split = make_split(ds.ref_ids(), seed=0)
    train, val, test = split_dataset(ds, split)
    assert (len(train), len(val), len(test)) == (18, 6, 6)
    assert set(train.ref_ids()) == set(split.train) and set(test.ref_ids()) == set(split.test)
    with pytest.raises(ValueError, match="unknown"):
        split_dataset(ds, Split(("ref1.png",), ("nope",), ()))
