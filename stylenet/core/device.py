"""The machine a network runs on: which device, which precision ("auto" and what it picks here and why), the
machine's name that every measured figure carries, and how much memory one image may take.

Every command's --device and --precision resolve here (resolve_device, auto_precision); training
(trainer.precision=auto), inference (tiling.Runner), bench, eval and the backends' verdict cache ask the same
functions, so "auto" means one thing everywhere.
"""

from __future__ import annotations

import contextlib
import os

import torch

from stylenet.core.errors import StylenetError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
AUTO = "auto"  # bf16 where the hardware computes it natively, else fp32: the default everywhere
PRECISION_CHOICES = [AUTO, *PRECISIONS]  # what --precision takes


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when there is a GPU, else cpu; asking for a missing GPU is a StylenetError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StylenetError("--device cuda: no CUDA GPU is visible to torch (use --device cpu or auto)")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether the hardware computes bf16 itself: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX
    (there bf16 autocast trained 1.8x faster than fp32; on AVX2-only CPUs it is emulated and slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own CPUID checks
    return device.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def auto_precision(device: torch.device, inference: bool = False) -> str:
    """What precision "auto" means on this device: bf16 where it is native (measured 1.4-1.8x faster than fp32
    for inference and training on such CPUs, BENCHMARKS.md), else fp32 (on AVX2-only CPUs bf16 is emulated).
    Inference on a CUDA GPU: fp16 (on an H200 eager bf16 inference ran at 0.76-0.81x fp32's speed and fp16 at
    1.10-1.17x, 10x nearer the fp32 picture; training keeps bf16, which needs no loss scaling)."""
    if inference and device.type == "cuda":
        return "fp16"
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager[None]:
    """Mixed precision for a block in "bf16" or "fp16" (torch.autocast); nothing for "fp32". cache=False: no
    cached casts of the weights (a CUDA graph's capture needs that)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision], cache_enabled=cache)


def precision_note(precision: str, device: torch.device) -> str:
    """The one line that says what --precision auto chose, and why: printed once by the commands."""
    if precision == "fp16":
        return (f"precision auto: fp16 ({machine_name(device)}: half precision stylizes fastest on CUDA GPUs; "
                "--precision fp32 for full precision)")
    if precision == "bf16":
        return f"precision auto: bf16 ({machine_name(device)} computes bf16 natively; --precision fp32 for full precision)"
    return f"precision auto: fp32 ({machine_name(device)} has no native bf16)"


def auto_precision_note(device: str | torch.device, inference: bool = False) -> str:
    """precision_note for what --precision auto picks on this device ("auto", "cpu", "cuda")."""
    chosen = resolve_device(device)
    return precision_note(auto_precision(chosen, inference), chosen)


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, core count and the vector flags that decide its speed (CPUs of one
    model name differ: AVX2 only, or AVX-512 with native bf16): what every measured figure names."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu, flags = "CPU", set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and cpu == "CPU":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    named = " ".join(flag for flag in SPEED_FLAGS if flag in flags)
    return f"{cpu}, {os.cpu_count()} cores" + (f" ({named})" if named else "")


# On CPU one forward pass's activations stay under this many bytes: a 3840x2160 frame through the standard
# network untiled took 7.5 GB of RSS; with this budget it is tiled and `stylenet stylize` peaks under 3 GB
# (BENCHMARKS.md). Larger images run staged (exact statistics), and beyond that take their statistics from a
# thumbnail (tiling.py); --tile 0 runs any image whole, for whoever has the memory.
CPU_ACTIVATION_BYTES = 2 * 2**30


def memory_budget(device: torch.device) -> int:
    """Bytes one image's activations may take: 70% of the GPU's free memory, or on CPU the smaller of
    CPU_ACTIVATION_BYTES and half of the available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    try:
        with open("/proc/meminfo") as meminfo:
            available_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
        available = available_kib * 1024 // 2
    except (OSError, StopIteration, ValueError):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    return min(available, CPU_ACTIVATION_BYTES)


def out_of_memory(error: BaseException) -> bool:
    """A CUDA out-of-memory error, or a CPU allocation failure (a plain RuntimeError from torch's CPU allocator)."""
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)
