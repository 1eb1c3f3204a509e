"""Model throughput on random tensors: training steps (images/s, FLOPs, peak memory) and
inference through petseg-predict's model path."""

from __future__ import annotations

import contextlib

import torch

from petseg.bench.flops import count_flops
from petseg.bench.timing import median_time
from petseg.inference import autocast, predict_logits
from petseg.losses import SegmentationLoss


def train_step_bench(
    model: torch.nn.Module,
    device: torch.device,
    batch: int,
    size: int,
    steps: int,
    bf16: bool | None = None,
) -> dict:
    """Images/s of forward + backward + AdamW step, FLOPs per step and peak GPU memory.

    With ``bf16`` (the default on a GPU) the step runs channels-last under bf16 autocast, as
    ``petseg-train`` runs it with ``--trainer.precision bf16-mixed --model.channels_last true``;
    otherwise in float32.
    """
    bf16 = device.type == "cuda" if bf16 is None else bf16
    model = model.to(device).train()
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = SegmentationLoss("bce_dice")
    images = torch.randn(batch, 3, size, size, device=device)  # (N, 3, S, S)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()  # (N, 1, S, S)

    def precision():  # on a GPU, inference's choice: bf16 where it has it, else fp16
        if not bf16:
            return contextlib.nullcontext()
        if device.type == "cuda":
            return autocast(device)
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with precision():
            loss = criterion(model(images), masks)
        loss.backward()
        optimizer.step()

    flops = count_flops(step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = median_time(step, device, repeats=steps, warmup=1)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "images_per_s": batch / seconds,
        "step_s": seconds,
        "flops_per_step": flops,
        "flops_per_s": flops / seconds,
        "peak_memory_bytes": peak,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def inference_bench(
    model: torch.nn.Module, device: torch.device, batch: int, size: int, steps: int
) -> dict:
    """Images/s of petseg-predict's model path (``predict_logits``) on random images."""
    model = model.to(device).eval()
    images = torch.randn(batch, 3, size, size, device=device)
    seconds = median_time(lambda: predict_logits(model, images), device, steps, warmup=1)
    return {"images_per_s": batch / seconds}
