"""Which torch device a name means: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available).

One resolver for every command (protect, serve, evaluate, verify --probe, train): ``cuda`` becomes
an indexed device (``cuda:0``, or the local rank's GPU under torchrun), so code that needs an index
(``torch.cuda.set_device``, DDP's ``device_ids``) always has one. torch is imported inside the
function: the CLI can name :data:`DEVICE_HELP` without loading it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda when available, else cpu)"


class DeviceError(ValueError):
    """A device name is malformed, not supported, or names a GPU this machine does not have."""


def resolve_device(name: "str | torch.device" = "auto", local_rank: int | None = None) -> "torch.device":
    """The device ``name`` means on this machine.

    Args:
        name: ``cpu``, ``cuda``, ``cuda:N``, ``auto`` (any case) or a ``torch.device``.
        local_rank: the GPU a bare ``cuda`` means (torchrun's ``LOCAL_RANK``); None: 0.

    Raises DeviceError (a ValueError) for anything else, for ``cuda`` without CUDA and for an
    index beyond ``torch.cuda.device_count()``.
    """
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {str(name)!r}; use {DEVICE_HELP}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise DeviceError(f"device {str(name)!r} is not supported; use {DEVICE_HELP}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {str(name)!r} asked for, but no CUDA device is available")
    index = device.index if device.index is not None else (local_rank or 0)
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise DeviceError(f"cuda:{index} asked for, but this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


@functools.cache
def _cpu_has_bf16_kernels() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_is_fast(device: "torch.device") -> bool:
    """Whether bf16 autocast speeds ``device`` up: always on CUDA; on the CPU only where oneDNN has
    native bf16 kernels (AVX-512 BW/VL/DQ or newer). On an AVX2-only CPU (seen: an AMD EPYC) a
    UNet-ResNet18 training step at 8 x 128 x 160 took 20 s in bf16 against 1.5 s in fp32."""
    return device.type != "cpu" or _cpu_has_bf16_kernels()  # asked once per process: autocast runs every step


_slow_bf16_warned = False


def mixed_precision(device: "torch.device", enabled: bool = True, dtype: "torch.dtype | None" = None):
    """``torch.autocast`` on ``device`` in ``dtype`` (bf16 unless given) when ``enabled``; bf16 on a
    CPU where :func:`bf16_is_fast` is false runs in fp32 instead, with one warning, because the
    presets ask for bf16 for speed, not for its numbers."""
    import warnings

    import torch

    global _slow_bf16_warned
    dtype = dtype or torch.bfloat16
    if enabled and dtype == torch.bfloat16 and not bf16_is_fast(device):
        if not _slow_bf16_warned:
            warnings.warn("bf16 autocast asked for, but this CPU has no native bf16 kernels (it would run "
                          "13x slower on one AVX2 CPU): running in fp32", RuntimeWarning, stacklevel=2)
            _slow_bf16_warned = True
        enabled = False
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def flush_denormals() -> bool:
    """Treat subnormal floats (magnitude under 1.2e-38) as zero in CPU arithmetic (x86 FTZ/DAZ); returns
    whether this CPU supports it.

    Training on a CPU slows down as such values appear: the CamVid ``sam`` victim's epochs grew from
    ~78 s to 156–160 s by epochs 20–29 without it, and stayed at 59–88 s with it (fp32, one thread,
    2-core Xeon; benchmarks/results/evaluate_protection_square_fit_cpu/README.md). Values change only
    below 1.2e-38. The flag belongs to the calling thread and to threads it starts later (intra-op
    workers inherit it when created), so training entry points call it before their first torch op.
    """
    import torch

    return bool(torch.set_flush_denormal(True))
