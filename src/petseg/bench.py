"""petseg-bench: throughput, FLOP efficiency, data path and time-to-Dice, printed and as JSON.

Every figure is measured in the same process and run: petseg's two models next to
segmentation-models-pytorch's ``Unet(encoder_name="resnet34")`` (the peer, when installed:
``pip install -e .[bench]``), each training step's FLOPs (``torch.utils.flop_counter``) against
a large matrix product timed on the same device, the standard and the cached data paths
against the model's consumption rate, inference, and on a GPU the time to reach a validation Dice.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from petseg.inference import autocast
from petseg.losses import SegmentationLoss
from petseg.models import ARCHS, build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(device: torch.device) -> dict:
    """FLOP/s of a large square matrix product: fp32 on the CPU, bf16 on a GPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = _median_time(lambda: a @ b, device, repeats=10, warmup=3)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops": 2 * n**3 / seconds}


def peer_model() -> torch.nn.Module | None:
    """segmentation-models-pytorch's ResNet34 UNet, random weights; None when not installed."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    return smp.Unet(encoder_name="resnet34", encoder_weights=None, classes=1)


def train_step_bench(
    model: torch.nn.Module, device: torch.device, batch: int, size: int, steps: int
) -> dict:
    """Images/s of forward + backward + AdamW step, FLOPs per step and peak GPU memory."""
    model = model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = SegmentationLoss("bce_dice")
    images = torch.randn(batch, 3, size, size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = criterion(model(images), masks)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _median_time(step, device, repeats=steps, warmup=1)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    flops = counter.get_total_flops()
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
    from petseg.inference import predict_logits

    model = model.to(device).eval()
    images = torch.randn(batch, 3, size, size, device=device)
    seconds = _median_time(lambda: predict_logits(model, images), device, steps, warmup=1)
    return {"images_per_s": batch / seconds}


def data_bench(
    root: str, size: int, batch: int, device: torch.device, batches: int, cache_dir: str
) -> dict:
    """Images/s delivered by the standard loader (decode + albumentations in workers) and by the
    cached path (tensor indexing + batched augmentation on ``device``), train split."""
    from petseg.data import PetDataModule, gpu_augment
    from petseg.data.cache import CachedSplit
    from petseg.data.dataset import OxfordPetDataset

    dm = PetDataModule(root, size, batch, augment="basic", download=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    count, start = 0, time.perf_counter()
    for i, (images, _) in enumerate(loader):
        if i == 0:  # worker start-up is a one-off; time the steady state
            count, start = 0, time.perf_counter()
        count += len(images)
        if i >= batches:
            break
    standard = count / (time.perf_counter() - start)

    split = OxfordPetDataset(root, "train")
    cached = CachedSplit.load_or_build(split, size, cache_dir).to(device)
    n = len(cached)

    def one_batch() -> None:
        index = torch.randint(0, n, (batch,)).tolist()
        images, masks = cached.__getitems__(index)
        gpu_augment.normalize(gpu_augment.augment(images, masks, "basic")[0])

    seconds = _median_time(one_batch, device, repeats=max(3, batches), warmup=1)
    return {
        "standard_images_per_s": standard,
        "standard_workers": dm.num_workers,
        "cached_images_per_s": batch / seconds,
    }


def time_to_dice(root: str, arch: str, epochs: int, targets=(0.85, 0.90)) -> dict:
    """GPU only: train ``arch`` with the fast settings on ``root`` and record the wall time at
    which validation Dice first reaches each target, the epoch time and the test Dice."""
    import lightning as L

    from petseg.data import PetDataModule
    from petseg.module import SegmentationModule

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.start = 0.0
            self.reached: dict[str, float] = {}
            self.epoch_s: list[float] = []
            self.epoch_start = 0.0

        def on_train_start(self, trainer, module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_start(self, trainer, module) -> None:
            self.epoch_start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            torch.cuda.synchronize()
            self.epoch_s.append(time.perf_counter() - self.epoch_start)

        def on_validation_epoch_end(self, trainer, module) -> None:
            dice = float(trainer.callback_metrics.get("val/dice", 0.0))
            for target in targets:
                if dice >= target and str(target) not in self.reached:
                    self.reached[str(target)] = time.perf_counter() - self.start

    L.seed_everything(42, workers=True)
    module = SegmentationModule(arch, lr=3e-3, scheduler="onecycle", channels_last=True,
                                compile=True, log_images=0)  # fmt: skip
    dm = PetDataModule(root, 256, 64, cache=True, download=False)
    clock = Clock()
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision="bf16-mixed", benchmark=True, max_epochs=epochs,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, callbacks=[clock],
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - start
    (test,) = trainer.test(module, datamodule=dm, verbose=False)
    train_images = len(dm.datasets["train"])
    steady = statistics.median(clock.epoch_s[2:]) if len(clock.epoch_s) > 2 else clock.epoch_s[-1]
    return {
        "arch": arch,
        "epochs": epochs,
        "train_images": train_images,
        "seconds_to_val_dice": clock.reached,
        "fit_s": fit_s,
        "first_epoch_s": clock.epoch_s[0],
        "steady_epoch_s": steady,
        "extrapolated_full_epoch_s (3312 images, an extrapolation)": steady * 3312 / train_images,
        "test_dice": test["test/dice"],
    }


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))  # fmt: skip
    on_gpu = device.type == "cuda"
    batch = args.batch_size or (64 if on_gpu else 8)
    result: dict = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "image_size": args.image_size,
        "batch_size": batch,
        "precision": "bf16 autocast, channels_last" if on_gpu else "fp32",
    }
    result["matmul"] = matmul_flops(device)
    models = {arch: build_model(arch) for arch in ARCHS}
    peer = peer_model()
    if peer is not None:
        models["smp_unet_resnet34"] = peer
        import segmentation_models_pytorch as smp

        result["versions"]["segmentation_models_pytorch"] = smp.__version__
    result["train"] = {}
    for name, model in models.items():
        print(f"timing training steps of {name} ...", file=sys.stderr)
        stats = train_step_bench(model, device, batch, args.image_size, args.steps)
        stats["fraction_of_matmul"] = stats["flops_per_s"] / result["matmul"]["flops"]
        result["train"][name] = stats
    if peer is not None:
        peer_rate = result["train"]["smp_unet_resnet34"]["images_per_s"]
        for arch in ARCHS:
            result["train"][arch]["ratio_to_peer"] = (
                result["train"][arch]["images_per_s"] / peer_rate
            )
    result["inference"] = {
        arch: inference_bench(models[arch], device, batch, args.image_size, args.steps)
        for arch in ARCHS
    }
    if args.root:
        print("timing the data paths ...", file=sys.stderr)
        data = data_bench(
            args.root, args.image_size, batch, device, args.data_batches, args.cache_dir
        )
        consumption = result["train"]["resnet34_unet"]["images_per_s"]
        data["model_consumes_images_per_s (resnet34_unet)"] = consumption
        data["standard_over_consumption"] = data["standard_images_per_s"] / consumption
        data["cached_over_consumption"] = data["cached_images_per_s"] / consumption
        result["data"] = data
        if on_gpu and args.time_to_dice_epochs:
            print("training resnet34_unet to time the validation Dice ...", file=sys.stderr)
            result["time_to_dice"] = time_to_dice(
                args.root, "resnet34_unet", args.time_to_dice_epochs
            )
    return result


def format_table(result: dict) -> str:
    """The headline figures as a plain-text table."""
    lines = [
        f"petseg-bench {result['date']}  device: {result['device']}  "
        f"torch {result['versions']['torch']}  {result['image_size']}x{result['image_size']}, "
        f"batch {result['batch_size']}, {result['precision']}",
        f"matmul {result['matmul']['n']}^3 {result['matmul']['dtype']}: "
        f"{result['matmul']['flops'] / 1e9:,.1f} GFLOP/s",
        "",
        f"{'training step':<20}{'images/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>10}{'of matmul':>11}"
        f"{'vs peer':>9}{'peak MiB':>10}",
    ]
    for name, s in result["train"].items():
        peak = "-" if s["peak_memory_bytes"] is None else f"{s['peak_memory_bytes'] / 2**20:,.0f}"
        ratio = f"{s['ratio_to_peer']:.2f}x" if "ratio_to_peer" in s else "-"
        lines.append(
            f"{name:<20}{s['images_per_s']:>10.2f}{s['flops_per_step'] / 1e9:>12.1f}"
            f"{s['flops_per_s'] / 1e9:>10.1f}{s['fraction_of_matmul']:>10.0%}{ratio:>9}{peak:>10}"
        )
    lines.append("")
    for name, s in result["inference"].items():
        lines.append(f"inference {name:<20}{s['images_per_s']:>10.2f} images/s")
    if "data" in result:
        d = result["data"]
        lines += [
            "",
            f"data: standard loader ({d['standard_workers']} workers) "
            f"{d['standard_images_per_s']:.1f} images/s = {d['standard_over_consumption']:.2f}x "
            "the model's consumption",
            f"data: cached path {d['cached_images_per_s']:.1f} images/s = "
            f"{d['cached_over_consumption']:.2f}x the model's consumption",
        ]
    if "time_to_dice" in result:
        t = result["time_to_dice"]
        lines.append(
            f"time to val Dice: {t['seconds_to_val_dice']}, test Dice {t['test_dice']:.4f}"
        )
    else:
        lines.append("time to val Dice: not measured (needs a GPU and --root)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``petseg-bench``: print the benchmark table and write it as JSON."""
    parser = argparse.ArgumentParser(prog="petseg-bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8 CPU, 64 GPU")
    parser.add_argument("--steps", type=int, default=3, help="timed repeats (median taken)")
    parser.add_argument("--root", default=None, help="real data for the data and Dice parts")
    parser.add_argument("--data_batches", type=int, default=10)
    parser.add_argument("--cache_dir", default="dataset/cache", help="for the cached data path")
    parser.add_argument("--time_to_dice_epochs", type=int, default=40, help="0 to skip (GPU)")
    parser.add_argument("--output", default="bench.json", help="JSON results")
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
