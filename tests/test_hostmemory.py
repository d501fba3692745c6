import platform
import subprocess
import sys

import pytest

from stylenet.core.hostmemory import keep_freed_memory

# Page faults in the last 3 of 8 "steps" that each hold and then free the same large tensors (64, 32, 16, 64 MB).
# With freed memory kept, the heap settles within 5 steps (measured: faults 45 k, 16-33 k, 8-16 k, 0-16 k, 0...).
FAULTS = """
import resource, sys, torch
from stylenet.core.hostmemory import keep_freed_memory
kept = sys.argv[1] == "keep" and keep_freed_memory()
for step in range(8):
    if step == 5:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.empty(n * 2**20).fill_(1.0) for n in (16, 8, 4, 16)]
    del tensors
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    kept, count = result.stdout.split()
    return kept, int(count)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults() -> None:
    kept, kept_faults = faults("keep")
    _, default_faults = faults("default")
    assert kept == "True"
    assert default_faults > 3 * 30_000  # 176 MB is 45 k pages of 4 KB, faulted in again each step
    assert kept_faults < default_faults / 20


@pytest.mark.parametrize("name,value", [
    ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2"), ("MALLOC_ARENA_MAX", "2"), ("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0"),
])
def test_the_users_allocator_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert keep_freed_memory() is False
