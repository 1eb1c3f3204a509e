"""FLOPs: what a training step costs (``torch.utils.flop_counter``) and what the device peaks at
(a large matrix product), so each model's step rate reads as a fraction of the device's."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from petseg.bench.timing import median_time


def matmul_flops(device: torch.device) -> dict:
    """FLOP/s of a large square matrix product: fp32 on the CPU, bf16 on a GPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_time(lambda: a @ b, device, repeats=10, warmup=3)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops": 2 * n**3 / seconds}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (which runs once, counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
