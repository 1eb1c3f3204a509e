"""The steps of running a trained model, each written once: device, autocast, logits with flip TTA,
resizing logits to an image's own size, and ``predicted_mask``: the one place where logits
become a pet/background decision. ``petseg.segmenter.Segmenter`` strings them together (with
``petseg.postprocess``)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from petseg.errors import PetsegError


def select_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks the GPU when there is one, else the CPU; a missing GPU is a one-line error."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PetsegError(
            f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise PetsegError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= count:
            raise PetsegError(f"--device {name}: only {count} GPU(s) here (cuda:0..{count - 1})")
    elif device.type not in ("cpu", "mps"):
        raise PetsegError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def autocast(device: torch.device):
    """bf16 autocast on GPUs that have it (else fp16); nothing on the CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Float32 logits ``(N, 1, H, W)``; with ``tta``, the mean of the image's and its mirror's."""
    with autocast(images.device):
        logits = model(images).float()
        if tta:
            logits = (logits + model(images.flip(-1)).float().flip(-1)) / 2
    return logits


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of logits ``(N, 1, h, w)`` to ``size`` (H, W)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def predicted_mask(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Boolean pet mask of the same shape as ``logits``: sigmoid probability above ``threshold``."""
    return torch.sigmoid(logits.float()) > threshold
