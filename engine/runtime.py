"""Process settings the engine needs for steady CPU latency, applied when ``engine`` is imported.

Both are process-wide, so each defers to an explicit setting of the user's and is skipped where the
platform lacks it. ``import engine`` applies them without loading torch (the package's exports load
lazily), so a server can apply them first thing, before it starts threads.
"""
from __future__ import annotations

import ctypes
import os

# glibc mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Every activation of one prediction (the largest is ~11 MB at 576x768) stays below this, so the
# buffers are reused from the heap instead of being mapped and unmapped for each call.
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
# Free heap above this is returned to the system; below it is kept for the next prediction.
TRIM_THRESHOLD = 128 * 1024 * 1024


def limit_openmp_spinning() -> None:
    """Make idle OpenMP threads sleep soon instead of spinning ~300k iterations.

    When the CPU is oversubscribed (two predictions at once on 2 cores, or a busy CI box), spinning
    made 2-thread backbone inference ~20x slower here (35 -> 800 ms); a short spin keeps almost all
    of the quiet-machine speed and bounds the busy case (~100 ms). Only effective before torch is
    imported; GOMP_SPINCOUNT or OMP_WAIT_POLICY set by the user win.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def keep_freed_memory_for_reuse() -> bool:
    """Stop glibc from mapping and unmapping every large buffer (True if applied).

    By default glibc serves allocations over 128 KB-32 MB (a threshold it adapts) with fresh
    mmap()s, returns them on free, and trims the heap top past 128 KB; the extra arenas it gives
    threads are unmapped whenever one falls empty. A prediction allocates some fifty multi-megabyte
    activations, so a call page-faulted ~5,000-8,000 times and spent ~20 ms of kernel time zeroing
    pages: on 2 cores a third of predict's wall time (55 -> 36 ms p50 on 576x768 images). Hence:
    buffers up to 32 MB come from the heap, up to 128 MB of free heap is kept, and every thread
    allocates from the one main heap (effective for threads started after this call; the emulator
    applies it before it starts any). Buffers over 32 MB are still mapped and given back.
    MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or MALLOC_ARENA_MAX in the environment (read by
    glibc itself) mean the user chose already.
    """
    if any(f"MALLOC_{name}" in os.environ for name in ("MMAP_THRESHOLD_", "TRIM_THRESHOLD_", "ARENA_MAX")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc (musl's is a no-op; macOS/Windows have none)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_ARENA_MAX, 1))
    applied = [mallopt(option, value) == 1 for option, value in settings]  # each, even if one fails
    return all(applied)


limit_openmp_spinning()
keep_freed_memory_for_reuse()
