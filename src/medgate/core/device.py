"""What a measurement on a CUDA device needs from torch: the peak of one step's allocations."""

from __future__ import annotations

import torch


def start_cuda_peak() -> int:
    """Reset CUDA's peak statistics; return the bytes allocated now.

    The run keeps earlier cases' sessions on the GPU, so the raw peak would depend on which cases
    ran before (the order is shuffled); a figure is the peak above what was resident here."""
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def cuda_peak_since(resident: int) -> int:
    return torch.cuda.max_memory_allocated() - resident
