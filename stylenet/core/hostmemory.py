"""Keep freed host memory for reuse: glibc's default costs a CPU training step about 15% of its time.

glibc hands every block of 32 MB or more (a 4 x 64 x 256 x 256 activation is 64 MB) to the kernel when it is
freed, and the next step's allocation of the same size page-faults it back in, zeroed by the kernel. On a
2-core CPU that was 8 of 35 s of a training benchmark in the kernel; serving large blocks from the heap and
keeping freed memory there took it to 2 s and a step from 6.1 to 5.3 s, for 5% more peak memory
(BENCHMARKS.md). jemalloc and tcmalloc (LD_PRELOAD) keep freed memory too; we set glibc's own options.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>: free memory at the heap top above this goes back to the kernel
M_MMAP_MAX = -4  # <malloc.h>: how many blocks may be mmap-ed at once (0: none, all from the heap)
KEEP_FREE_BYTES = 2**31 - 1  # the most mallopt takes (a C int)


def user_chose_allocator() -> bool:
    """Any MALLOC_* option, glibc.malloc tunable or preloaded library (jemalloc, tcmalloc) in the environment."""
    return (
        any(name.startswith("MALLOC_") for name in os.environ)
        or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
        or bool(os.environ.get("LD_PRELOAD"))
    )


def keep_freed_memory() -> bool:
    """Make glibc serve large blocks from the heap and keep freed memory; True if it was set.

    Does nothing off glibc, or where the user chose an allocator or its options (user_chose_allocator()).
    Process-wide and for the life of the process: call it in entry points, not libraries.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if user_chose_allocator():
        log.debug("host allocator left as configured by the environment")
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES) == 1
    except (OSError, AttributeError):
        return False
    return done
