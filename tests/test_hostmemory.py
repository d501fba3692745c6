import platform
import subprocess
import sys

import pytest

from stylenet.hostmemory import keep_freed_memory

# Page faults in the last of a few "steps" that each hold and then free the same large tensors (64, 32, 16 MB).
FAULTS = """
import resource, sys, torch
from stylenet.hostmemory import keep_freed_memory
kept = sys.argv[1] == "keep" and keep_freed_memory()
for step in range(4):
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
    assert default_faults > 20_000  # 176 MB in 4 KB pages, faulted in again each step
    assert kept_faults < default_faults / 10


def test_the_users_allocator_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert keep_freed_memory() is False
