"""Process settings of the CPU runs: glibc's malloc thresholds (speed) and torch's thread count (identity).

A forward pass of a model on a batch allocates its activations (about 1 MiB each for a thousand rows of the
digits MLP, ten times more for the batches of HSJA's gradient estimates) and frees them at the end. With
glibc's defaults, blocks of that size may be served by ``mmap`` and given back to the kernel when freed, or
trimmed from the top of the heap, so the next pass page-faults its activations in again. On the 2-core
reference machine, HSJA against g_{sigma,n} (n = 50, 50 digits, 500 queries) took 2.4-2.8 s with the
thresholds below instead of 3.3-4.2 s, SurFree 3.6-4.3 s instead of 4.6-4.9 s; ``bench/bench_oracle.py``
times the oracle under both settings. Raising the mmap and trim thresholds keeps the freed memory in the
process for the next pass. The numbers computed do not change, only the time.

The chapter kernels and the local Dask workers start with :func:`malloc_env` (see
:func:`rs_repro.pipeline.book.run_chapter`); :func:`keep_freed_memory` applies the same setting to the running
process (glibc only), as the compute step does (:func:`rs_repro.pipeline.headless.compute_values`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator

#: glibc's ``mallopt`` parameter numbers (``malloc.h``) for the two thresholds.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap instead of ``mmap`` (glibc's ceiling on 64-bit: 32 MiB).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap is given back to the kernel only beyond this size.
TRIM_THRESHOLD = 1 << 30


def malloc_env() -> dict[str, str]:
    """Environment variables giving a new process the thresholds above, unless the caller set them."""
    wanted = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
    return {name: os.environ.get(name, value) for name, value in wanted.items()}


def keep_freed_memory() -> bool:
    """Set the thresholds in the running process with glibc's ``mallopt``.

    Returns
    -------
    bool
        Whether both settings were applied (False on a C library without ``mallopt``, e.g. macOS).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


#: CPU threads of torch while a work unit runs or a model trains, wherever that happens. Torch's
#: multi-threaded reductions add in an order that depends on the number of threads, so the same computation
#: on another number of threads differs in the last bits (and, through an attack's path or a training run,
#: sometimes more).
COMPUTE_THREADS = 1


@contextlib.contextmanager
def compute_threads(threads: int = COMPUTE_THREADS) -> Iterator[None]:
    """Run the block on ``threads`` torch CPU threads; the process's own setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
