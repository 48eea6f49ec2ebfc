"""The work of one reference: distort it at every (type, level), write the PNGs, compute the labels.

:func:`run_task` is what a worker process runs; :func:`run_serial` and :func:`run_parallel` feed it the pending tasks
in this process or in ``spawn``-ed worker processes. Torch runs single-threaded while a reference is processed, so
float reductions, hence labels, do not depend on the number of workers.

A worker exits by itself when the process that started it dies, even by SIGKILL (which runs no clean-up): a daemon
thread in each worker checks twice a second that its parent is still its parent (:func:`_watch_parent`). Once the
workers are gone, multiprocessing's resource tracker sees its pipe close and exits too, so a killed
``make-kadis`` leaves no process behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..._io import atomic_path
from ..._validation import load_image
from ..distortions import apply_distortion
from ..labels import compute_label
from ..seeds import kadis_image_seed
from .plan import RefTask

__all__ = ["PARENT_CHECK_INTERVAL", "Result", "make_executor", "run_parallel", "run_serial", "run_task"]

Result = tuple[str, dict | None, str | None]
"""``(reference name, journal record, None)`` on success, ``(reference name, None, error message)`` on failure."""


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch single-threaded so that float reductions, hence labels, do not depend on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: Seconds between two checks of a worker's parent (:func:`_watch_parent`).
PARENT_CHECK_INTERVAL = 0.5


def _watch_parent(parent_pid: int, interval: float) -> None:
    """Exit this process as soon as ``parent_pid`` is no longer its parent (the parent died and the worker was
    re-parented); runs in a daemon thread of every worker."""
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)  # no clean-up to run: the parent that would collect our result is gone


def _init_worker(parent_pid: int, interval: float = PARENT_CHECK_INTERVAL) -> None:
    torch.set_num_threads(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="parent-watchdog", daemon=True).start()


def make_executor(workers: int) -> cf.ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that run torch single-threaded and exit when this process dies."""
    context = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                  initargs=(os.getpid(),))


def _load_reference(path: str) -> np.ndarray:
    """A reference as (H, W, 3) uint8 RGB, the input of the distortions (exactly the file's pixels if 8-bit)."""
    image = load_image(path, name="reference")  # (3, H, W) float32 in [0, 1]
    return image.mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)


def _write_png(array: np.ndarray, path: Path, compress_level: int) -> None:
    # No fsync per image: a reference counts as done only once its journal record (fsynced) is written, and a resumed
    # run checks that the images exist.
    with atomic_path(path, fsync=False) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=compress_level)


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(N, H, W, 3) uint8 images -> (N, 3, H, W) float64 in [0, 1]."""
    stacked = torch.from_numpy(np.stack(images))  # (N, H, W, 3)
    return stacked.permute(0, 3, 1, 2).to(torch.float64) / 255.0  # (N, 3, H, W)


def process_reference(task: RefTask) -> dict:
    """Distort one reference at every (type, level), write the PNGs and compute the labels.

    Returns:
        The journal record: ``{"key": task.key(), "rows": [[dist_file, type, level, {label: value}], ...]}``.
    """
    with _single_thread():
        ref = _load_reference(task.path)
        ref_tensor = _to_tensor([ref])  # (1, 3, H, W)
        rows: list[list] = []
        for type_id in task.types:
            dists = []
            for level in task.levels:
                seed = kadis_image_seed(task.seed, task.name, type_id, level)
                dist = apply_distortion(ref, type_id, level, seed=seed)
                _write_png(dist, Path(task.dist_dir) / task.dist_name(type_id, level), task.png_compress_level)
                dists.append(dist)
            dist_tensor = _to_tensor(dists)  # (levels, 3, H, W)
            values = {name: compute_label(name, ref_tensor, dist_tensor).tolist() for name in task.labels}
            for index, level in enumerate(task.levels):
                rows.append(
                    [task.dist_name(type_id, level), type_id, level, {n: values[n][index] for n in task.labels}]
                )
    return {"key": task.key(), "rows": rows}


def run_task(task: RefTask) -> Result:
    """Worker entry point: never raises for a failing reference, which is reported by name instead."""
    try:
        return task.name, process_reference(task), None
    except Exception as error:  # noqa: BLE001 - a failing reference is reported by name, not fatal
        return task.name, None, f"{type(error).__name__}: {error}"


def run_serial(pending: Sequence[RefTask]) -> Iterator[Result]:
    """Run the tasks one after the other in this process; yields each result as it finishes."""
    for task in pending:
        yield run_task(task)


def run_parallel(pending: Sequence[RefTask], workers: int) -> Iterator[Result]:
    """Run tasks in spawned worker processes, keeping at most 2 x workers in flight; yields results as they finish."""
    executor = make_executor(workers)
    queue = iter(pending)
    in_flight: set[cf.Future] = set()
    try:
        for task in queue:
            in_flight.add(executor.submit(run_task, task))
            if len(in_flight) >= 2 * workers:
                break
        while in_flight:
            done, in_flight = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                yield future.result()
                next_task = next(queue, None)
                if next_task is not None:
                    in_flight.add(executor.submit(run_task, next_task))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
