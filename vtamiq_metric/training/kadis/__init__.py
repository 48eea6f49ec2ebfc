"""KADIS-700k without MATLAB: distort pristine references with our KADID port and label them (VSI by default).

This is the generator behind ``vtamiq-train make-kadis --refs DIR --out DIR``. It replaces the MATLAB script
``generate_kadis700k.m`` of the KADIS-700k release (which writes BMPs and no labels) and the unpublished score file
VTAMIQ trained on, and can also build a KADIS-like set from any folder of pristine images.

Output layout (a vtamiq-metric format, not an official KADIS file; the KADIS-700k dataset reader expects exactly
this)::

    <out>/dist_imgs/<stem>_<TT>_<LL>.png   one distorted image per (reference, type, level)
    <out>/kadis700k_scores.csv              dist_img,ref_img,dist_type,dist_level,<label...>
    <out>/.kadis_progress.jsonl             resume journal (safe to delete once the CSV exists)
    <out>/.kadis_progress.shard-I-of-N.jsonl  the journal of shard I of N (``--shard I/N``)

- ``stem`` is the reference file name up to its first ``.`` (as ``generate_kadis700k.m`` names files), ``TT`` the
  type id (01..25 KADID; 26 and up for our additional types) and ``LL`` the level (01..05), both two digits, e.g.
  ``dist_imgs/a-fleshy-plant_07_01.png``.
  Images are PNG rather than MATLAB's BMP: lossless as well, and smaller (25-60 % smaller than BMP for our 512 x 384
  test images at the default zlib level 1, which writes up to 6x faster than Pillow's default level 6 for files
  5-15 % larger; ``png_compress_level`` / ``--png-compress-level`` chooses).
- CSV columns: ``dist_img`` relative to ``<out>`` with ``/`` separators; ``ref_img`` relative to ``<out>`` as well
  (``ref_imgs/x.png`` for references inside ``<out>``, ``../refs/x.png`` for references beside it), so the folder can
  be moved or copied together with its references (CSVs of older versions hold absolute paths for references outside
  ``<out>``; the readers accept both); ``dist_type`` (1..25, or 26 and up) and ``dist_level`` (1..5) as integers;
  then one column per label (e.g. ``vsi``), a similarity in [0, 1] where 1 = identical, written with full float
  precision. Rows are sorted by (reference file name, type, level). The file is written once, atomically, when
  every reference is done.

Distortion types: with ``ref_csv`` (KADIS-700k's ``kadis700k_ref_imgs.csv``, header
``ref_im,dist_type_1,dist_type_2``), each reference gets the type in column 2 and column 3 is ignored, as in the
MATLAB script. Otherwise ``types_per_ref`` distinct types (default 1, as in KADIS) are drawn per reference from the
25 KADIS types (:data:`~vtamiq_metric.training.seeds.KADIS_TYPE_IDS`, frozen: types added to the distortion table
never enter this draw) with a generator seeded by (``seed``, reference file name), so a reference keeps its types when
other references are added or removed. Types in ``skip_types`` (default 15, denoise, which VTAMIQ skipped: 671,300
instead of 700,000 pairs) are never drawn, and CSV rows with such a type are left out.

Additional types (``extra_types``, ``--extra-types``: our colour casts, hue rotation and stacks, ids 26 and up) come
on top of a reference's KADIS types, which stay exactly as without them: every reference gets all of them, or
``extra_types_per_ref`` of them drawn from a seed stream of their own
(:func:`~vtamiq_metric.training.seeds.kadis_extra_type_rng`). Their images are seeded like the others.

Determinism: each distorted image uses its own seed, derived from (``seed``, CRC-32 of the reference file name, type,
level) through ``numpy.random.SeedSequence`` (:func:`vtamiq_metric.training.seeds.kadis_image_seed`, a frozen formula:
it defines the generator's data), and label computations run single-threaded, so the images and the CSV do not
depend on the number of workers or the processing order. References are decoded with the package's image decoder
(:func:`vtamiq_metric._validation.load_image`) and quantised to 8 bits, exactly their pixels for 8-bit files.

Resuming: workers handle one reference at a time; images are written to a temporary file and renamed
(``os.replace``), and when a reference is finished its rows (with labels) are appended to the journal and flushed to
disk. A run that is killed at any moment leaves no partial PNG or CSV; rerunning the same command skips every
reference whose journal record matches the current settings and whose images exist, and writes the CSV from the
journal (one record per reference, so a reference recorded twice never gives duplicate rows). Changing the seed,
levels or labels redoes the affected references. Do not run two generators on the same output folder at once,
except the shards of one split (below).

Many machines (``shard=(i, n)``, ``--shard I/N``): the sorted reference list (after ``limit``) is split by index,
shard ``i`` taking references ``k`` with ``k % n == i``, so ``n`` machines (e.g. a Slurm array over a shared
filesystem) write disjoint images into the same ``<out>/dist_imgs/`` and each appends to its own journal
``.kadis_progress.shard-i-of-n.jsonl``. A shard writes no CSV. When all are finished, :func:`merge_kadis`
(``--merge``, with the same references and settings) checks that every reference has exactly one valid record (its
settings match and its images exist; none missing, none recorded twice with different rows) and writes the CSV
atomically; it is byte-identical to the CSV of one unsharded run. Every run reads every journal in ``<out>``, so
references already done (by any shard, or unsharded) are never redone, and a plain rerun without ``--shard`` also
completes and writes the CSV.

Parallelism uses ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start method; a script that calls
:func:`generate_kadis` with ``workers > 1`` must guard its entry point with ``if __name__ == "__main__":``.

The package follows the run's seams: :mod:`.plan` (the settings, :class:`KadisSettings`, and one task per reference),
:mod:`.worker` (distort and label one reference, in worker processes), :mod:`.journal` (the resume journal and the
CSV) and :mod:`.generate` (:func:`generate_kadis` and :func:`merge_kadis`, which drive the others).

Example:
    >>> from vtamiq_metric.training.kadis import KadisSettings, generate_kadis
    >>> settings = KadisSettings(ref_csv="kadis700k/kadis700k_ref_imgs.csv")
    >>> csv_path = generate_kadis("kadis700k/ref_imgs", "kadis_out", settings, workers=16)  # doctest: +SKIP
"""

from ..seeds import kadis_image_seed as image_seed
from .generate import KadisGenerationError, generate_kadis, merge_kadis
from .journal import JOURNAL_NAME, SCORES_NAME
from .plan import ALL_LEVELS, DEFAULT_SKIP_TYPES, DIST_DIR, REF_EXTENSIONS, KadisSettings

__all__ = [
    "ALL_LEVELS",
    "DEFAULT_SKIP_TYPES",
    "DIST_DIR",
    "JOURNAL_NAME",
    "REF_EXTENSIONS",
    "SCORES_NAME",
    "KadisGenerationError",
    "KadisSettings",
    "generate_kadis",
    "image_seed",
    "merge_kadis",
]
