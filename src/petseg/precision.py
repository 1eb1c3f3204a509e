"""petseg's precision pick: what ``--trainer.precision`` means when it is left unset."""

from __future__ import annotations

from pathlib import Path

import torch


def auto_precision(accelerator: str | None) -> str:
    """bf16 mixed precision on a GPU that has it, 16-bit mixed on other GPUs; on a CPU, bf16
    mixed where it has AMX matrix units, 32-bit elsewhere."""
    if accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_amx() else "32-true"


def cpu_has_amx(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AMX bf16 units (Linux's ``amx_bf16`` flag).

    Measured on 2 vCPUs at 128 px, batch 8 (docs/recipe.md): with AMX a bf16 training step of
    ``resnet34_unet`` takes half the float32 time; with AVX-512 bf16 alone it is slower.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines()
    )
