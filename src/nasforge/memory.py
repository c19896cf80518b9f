"""Peak memory of a search or training phase, measured the same way everywhere: the CUDA allocator's peak on a
GPU (resettable per phase), else the process's peak resident set size (monotone over the process's life)."""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["peak_memory_mib", "peak_rss_mib", "reset_peak_memory"]


def peak_rss_mib() -> float:
    """This process's own peak resident set size. Linux: ``VmHWM``, since ``ru_maxrss`` survives ``exec`` and so
    reports a spawned worker's parent's peak; elsewhere ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def peak_memory_mib(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device`` since the last reset, else the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak on a GPU (the CPU's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
