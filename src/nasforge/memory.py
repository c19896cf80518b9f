"""Peak memory of a search or training phase, measured the same way everywhere: the CUDA allocator's peak on a
GPU (resettable per phase), else the process's peak resident set size (monotone over the process's life)."""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["peak_memory_mib", "reset_peak_memory"]


def peak_memory_mib(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device`` since the last reset, else the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak on a GPU (the CPU's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
