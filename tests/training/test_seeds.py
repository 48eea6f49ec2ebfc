"""Seed derivation (``vtamiq_metric.training.seeds``): values pinned, because the bundled model's recipe depends on
them.

The bundled default model was trained on ``make-kadis`` output (images seeded by :func:`kadis_image_seed`, types drawn
with :func:`kadis_type_rng`) in the data order and with the CAPS draws of :func:`derive_seed`. If one of these tests
fails, the change moves that recipe: ``examples/bundled_model/train.sh`` would no longer reproduce the shipped
weights. Do not update the numbers; restore the formula (see the module docstring and the CHANGELOG).
"""

from __future__ import annotations

from vtamiq_metric.training.distortions import DISTORTION_TYPES, DISTORTIONS
from vtamiq_metric.training.kadis import image_seed
from vtamiq_metric.training.kadis.plan import _draw_types
from vtamiq_metric.training.seeds import (
    KADIS_TYPE_IDS,
    derive_seed,
    kadis_extra_type_rng,
    kadis_image_seed,
    kadis_type_rng,
)


def test_derive_seed_values_are_frozen():
    assert derive_seed(0, "order", 0) == 7134422430951335918  # epoch 0's data order of a seed-0 run
    assert derive_seed(7, "order", 3) == 7388688178822444103
    assert derive_seed(0, 1, 2) == 217875049918638303  # CAPS draw of item 2 in epoch 1
    assert derive_seed(12345, "val-0", 99) == 5842445651304765940
    assert derive_seed(0, "rank", 1, 2) == 727821530067311369
    assert all(0 <= derive_seed(s, "x") < 2**63 for s in range(100))
    assert derive_seed(0, 1, 2) != derive_seed(0, 2, 1)  # the order of the parts matters
    assert derive_seed(0, 1, 2) == derive_seed("0", "1", "2")  # parts are joined as strings


def test_kadis_image_seed_values_are_frozen():
    assert kadis_image_seed(0, "a.png", 1, 1) == 9905192816872655977
    assert kadis_image_seed(5, "d.bmp", 23, 3) == 1806973424668963534
    assert kadis_image_seed(123, "a-fleshy-plant-1464418.png", 25, 5) == 16692038866692525627
    assert image_seed is kadis_image_seed  # the generator's public name


def test_kadis_type_draws_are_frozen():
    pool = [t for t in range(1, 26) if t != 15]
    assert _draw_types(0, "a.png", pool, 3) == (7, 12, 17)
    assert _draw_types(7, "zz.jpg", list(range(1, 26)), 1) == (3,)
    first = kadis_type_rng(0, "a.png").random(3)
    assert first.tolist() == kadis_type_rng(0, "a.png").random(3).tolist()


def test_kadis_type_pool_is_frozen():
    # The pool of the KADIS type draw: the 25 KADID types, never the types added to the distortion table later.
    assert KADIS_TYPE_IDS == tuple(range(1, 26))
    assert tuple(DISTORTIONS) == KADIS_TYPE_IDS and len(DISTORTION_TYPES) > len(KADIS_TYPE_IDS)
    pool = [t for t in KADIS_TYPE_IDS if t != 15]
    assert [_draw_types(0, name, pool, 1) for name in ("a.png", "b.png", "I01.png")] == [(7,), (4,), (12,)]


def test_kadis_extra_type_stream_is_frozen():
    assert kadis_extra_type_rng(0, "a.png").random(2).tolist() == [0.2559289144100284, 0.41097110144791493]
    # a stream of its own: not the KADIS type stream of the same reference
    assert kadis_extra_type_rng(0, "a.png").random() != kadis_type_rng(0, "a.png").random()
