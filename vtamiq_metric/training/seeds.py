"""Seed derivation for training and data generation: one module, one policy.

**Policy.** Every seed the training code needs is derived from the run's seed and a few labels that say what the
seed is for, with :func:`derive_seed`: ``derive_seed(seed, "order", epoch)`` orders an epoch,
``derive_seed(seed, epoch, index)`` draws an item's CAPS patches, ``derive_seed(seed, "rank", rank)`` separates the
dropout streams of distributed ranks. The result depends only on the parts (not on the process, the number of
workers or ranks, or the Python version), so a resumed or re-sharded run draws exactly what an uninterrupted one
would. New code derives its seeds the same way, with a label of its own.

The KADIS-700k generator predates this module and keeps its own two formulas, :func:`kadis_image_seed` and
:func:`kadis_type_rng` (numpy ``SeedSequence`` over the seed and the CRC-32 of the reference file name), and the pool
that :func:`kadis_type_rng` draws from, :data:`KADIS_TYPE_IDS` (the 25 KADID types, whatever other types the
distortion table holds). They are **frozen**: they define the images and labels that ``vtamiq-train make-kadis``
writes, which are the published generator's data. The additional types of ``make-kadis --extra-types`` (26 and up)
are drawn from a stream of their own, :func:`kadis_extra_type_rng` (a :func:`derive_seed` label), so adding them
never moves the draws of the 25.

**Frozen outputs.** The bundled default model (``vtamiq_tiny_patch16.kadis_photos_robust``) was trained on
``make-kadis`` output and with the data order and CAPS draws of :func:`derive_seed`. Changing any formula here moves
that model's recipe: ``examples/bundled_model/train.sh`` would no longer reproduce the shipped weights. The test
``tests/training/test_seeds.py`` pins values of each function so that this cannot happen by accident.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

__all__ = ["KADIS_TYPE_IDS", "derive_seed", "kadis_extra_type_rng", "kadis_image_seed", "kadis_type_rng"]

KADIS_TYPE_IDS: tuple[int, ...] = tuple(range(1, 26))
"""The 25 KADID-10k / KADIS-700k distortion type ids (frozen): the pool of the KADIS type draw, before
``skip_types``. Types added to the distortion table later (26 and up) are not in it, so they never change a
reference's KADIS types."""


def derive_seed(*parts: object) -> int:
    """A 63-bit non-negative seed from any parts (stable across processes, platforms and Python versions).

    The parts are joined with ``":"`` as strings (``str(part)``) and hashed with BLAKE2b (8-byte digest, read
    little-endian, shifted right by one bit).

    Args:
        *parts: ints and strings that say what the seed is for, e.g. ``(seed, "order", epoch)``.

    Returns:
        An int in ``[0, 2**63)``, a valid ``torch.Generator.manual_seed`` argument.

    Example:
        >>> derive_seed(0, "order", 0)
        7134422430951335918
    """
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _name_crc(ref_name: str) -> int:
    return zlib.crc32(ref_name.encode("utf-8"))


def kadis_image_seed(seed: int, ref_name: str, type_id: int, level: int) -> int:
    """Seed of one KADIS distorted image, independent of processing order and worker count (frozen formula).

    Args:
        seed: the generator's non-negative global seed.
        ref_name: reference file name (e.g. ``"a-fleshy-plant-1464418.png"``).
        type_id: distortion type id (1..25 KADID; the same formula seeds the additional types 26 and up).
        level: level 1..5.

    Returns:
        A 64-bit non-negative int: ``SeedSequence([seed, crc32(ref_name), type_id, level]).generate_state(1,
        uint64)[0]``.
    """
    state = np.random.SeedSequence([seed, _name_crc(ref_name), type_id, level]).generate_state(1, dtype=np.uint64)
    return int(state[0])


def kadis_type_rng(seed: int, ref_name: str) -> np.random.Generator:
    """The generator that draws one reference's distortion types (frozen formula).

    A reference keeps its types when other references are added or removed.

    Args:
        seed: the generator's non-negative global seed.
        ref_name: reference file name.

    Returns:
        ``numpy.random.default_rng(SeedSequence([seed, crc32(ref_name)]))``.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, _name_crc(ref_name)]))



def kadis_extra_type_rng(seed: int, ref_name: str) -> np.random.Generator:
    """The generator that draws one reference's additional types (``make-kadis --extra-types-per-ref``; frozen).

    A stream of its own, separate from :func:`kadis_type_rng`, so that asking for additional types leaves the
    reference's KADIS types as they were.

    Args:
        seed: the generator's non-negative global seed.
        ref_name: reference file name.

    Returns:
        ``numpy.random.default_rng(derive_seed(seed, "kadis-extra-types", ref_name))``.
    """
    return np.random.default_rng(derive_seed(seed, "kadis-extra-types", ref_name))
