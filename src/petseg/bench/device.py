"""``petseg-bench device``: the one prepared GPU check, one command of at most 10 minutes.

It needs nothing beyond the repository and its carried wheels (no network, no dataset): the data
is generated (``petseg.data.synthetic``) unless ``--root`` names a folder in the official layout.
Everything trains through ``petseg.train``, as ``petseg-train`` does:

1. each architecture in ``bf16-mixed`` and ``16-mixed``, on the standard path (decoding and
   albumentations in loader workers) and on the cached path (uint8 tensors on the GPU, kornia's
   batched augmentation, channels-last, ``torch.compile``): training images/s over the steps
   after the warm-up (data loading included), peak GPU memory, and the checks that the loss is
   finite at every step and falls (mean of the last steps below the mean of the first);
2. a short time-to-Dice: ``resnet34_unet`` on the cached/compiled path, validated every epoch,
   the wall time at which validation Dice first reaches each target, then the best checkpoint
   scored on the test split.

It writes one JSON and exits 1 when a check failed. A wall-time budget (``--budget_s``, 420 s on
a GPU, none in the dry run) skips what would not fit (named in the JSON as skipped) rather than
being killed half-way.

``--dry-run`` runs the same steps on the CPU at tiny sizes (CI runs it). There ``16-mixed``,
which Lightning does not run on a CPU, is replaced by ``32-true``, and ``torch.compile`` uses
dynamo's ``eager`` backend (graph capture without code generation: inductor's CPU code
generation takes 75 to 115 s per model on a 2-core machine).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from petseg.bench.time_to_dice import Clock
from petseg.bench.timing import sync
from petseg.files import empty_folder, new_file

PRECISIONS = ("bf16-mixed", "16-mixed")
PATHS = ("standard", "cached")
TARGETS = (0.85, 0.90, 0.95)


class StepMeter(L.Callback):
    """Every training step's loss and wall time (from one step's end to the next, so data
    loading counts), the GPU's peak memory, and the rate after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.losses: list[float] = []
        self.step_s: list[float] = []
        self.images = 0
        self._last = 0.0

    def on_train_start(self, trainer, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))  # waits for the step to finish
        sync(module.device)
        now = time.perf_counter()
        self.step_s.append(now - self._last)
        self._last = now
        if len(self.step_s) > self.warmup:
            self.images += len(batch[0])

    def summary(self, device: torch.device) -> dict[str, Any]:
        timed = self.step_s[self.warmup :]
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        return {
            "steps": len(self.losses),
            "timed_steps": len(timed),
            "first_steps_s": sum(self.step_s[: self.warmup]),
            "images_per_s": self.images / sum(timed) if timed else None,
            "peak_gpu_memory_bytes": peak,
            "losses": self.losses,
            **loss_checks(self.losses),
        }


def loss_checks(losses: list[float], window: int = 5) -> dict[str, bool]:
    """``finite``: every loss is a number; ``falls``: the mean of the last ``window`` losses is
    below the mean of the first ``window``."""
    finite = bool(losses) and all(math.isfinite(x) for x in losses)
    k = max(1, min(window, len(losses) // 2))
    falls = finite and len(losses) >= 2 and sum(losses[-k:]) / k < sum(losses[:k]) / k
    return {"finite": finite, "falls": bool(falls)}


@contextlib.contextmanager
def compile_backend(backend: str):
    """``nn.Module.compile`` (what ``--model.compile true`` calls) with ``backend`` meanwhile."""
    if backend == "inductor":
        yield
        return
    original = torch.nn.Module.compile

    def compile_with(module, *args, **kwargs):
        return original(module, *args, **{"backend": backend, **kwargs})

    torch.nn.Module.compile = compile_with
    try:
        yield
    finally:
        torch.nn.Module.compile = original


class Settings:
    """The sizes of a run: the GPU check's, or the dry run's tiny ones."""

    def __init__(self, dry_run: bool, args: argparse.Namespace) -> None:
        self.dry_run = dry_run
        self.accelerator = "cpu" if dry_run else "gpu"
        self.image_size = args.image_size or (32 if dry_run else 256)
        # the dry run's batch is its whole train split (10 images), so that its few steps
        # see the same images and the loss falls within them
        self.batch_size = args.batch_size or (10 if dry_run else 64)
        self.base_channels = 4 if dry_run else 64
        self.steps = args.steps or (6 if dry_run else 40)
        self.warmup = 2 if dry_run else 15
        self.lr, self.scheduler = (0.01, "none") if dry_run else (0.003, "onecycle")
        self.epochs = args.epochs or (2 if dry_run else 25)
        self.workers = 0 if dry_run else None  # None: petseg's default, min(8, CPU count)
        self.synthetic = (12, 6, (40, 64)) if dry_run else (640, 160, (250, 500))
        self.compile_backend = "eager" if dry_run else "inductor"

    def precision(self, name: str) -> str:
        return "32-true" if self.dry_run and name == "16-mixed" else name


def train_options(
    s: Settings, arch: str, precision: str, cached: bool, root: Path, work: Path
) -> dict[str, Any]:
    """``petseg.train`` options of one run: the fast recipe's model settings (AdamW at 0.003,
    one-cycle; the dry run a constant 0.01), the standard or the cached path, run folders under
    ``work``."""
    return {
        "arch": arch,
        "seed_everything": 0,
        "save_dir": str(work / "saved_models"),
        "log_dir": str(work / "logs"),
        "model": {
            "base_channels": s.base_channels,
            "lr": s.lr,
            "scheduler": s.scheduler,
            "log_images": 0,
            "channels_last": cached,
            "compile": cached,
        },
        "data": {
            "root": str(root),
            "image_size": s.image_size,
            "batch_size": s.batch_size,
            "num_workers": 0 if cached else s.workers,
            "augment": "basic",
            "download": False,
            "cache": cached,
            "cache_dir": str(work / "cache"),
        },
        "trainer": {
            "accelerator": s.accelerator,
            "devices": 1,
            "precision": s.precision(precision),
            "benchmark": not s.dry_run,
            "enable_progress_bar": False,
        },
    }


def throughput_run(s: Settings, arch: str, precision: str, path: str, root: Path, work: Path):
    """One training run of ``s.steps`` steps without validation: its StepMeter summary."""
    from petseg.training import train

    options = train_options(s, arch, precision, path == "cached", root, work)
    options["trainer"] |= {"max_steps": s.steps, "limit_val_batches": 0}
    meter = StepMeter(s.warmup)
    start = time.perf_counter()
    try:
        with compile_backend(s.compile_backend):
            train(options, callbacks=[meter], test=False)
        device = torch.device("cuda" if s.accelerator == "gpu" else "cpu")
        return {
            "precision": s.precision(precision),
            "path": path,
            "wall_s": time.perf_counter() - start,
            **meter.summary(device),
        }
    finally:  # the next run starts from an empty compile cache and free GPU memory
        torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def dice_run(s: Settings, root: Path, work: Path, max_s: float) -> dict[str, Any]:
    """``resnet34_unet`` on the cached/compiled path in bf16, validated every epoch: when
    validation Dice first reaches each target, and the test Dice of the best checkpoint."""
    from petseg.training import train

    options = train_options(s, "resnet34_unet", "bf16-mixed", True, root, work)
    seconds = max(1, int(max_s))
    options["trainer"] |= {
        "max_epochs": s.epochs,
        "max_time": f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        "num_sanity_val_steps": 0,
    }
    clock, meter = Clock(TARGETS), StepMeter(0)
    start = time.perf_counter()
    with compile_backend(s.compile_backend):
        result = train(options, callbacks=[clock, meter], test=True)
    return {
        "arch": "resnet34_unet",
        "precision": s.precision("bf16-mixed"),
        "path": "cached",
        "epochs_run": len(clock.epoch_s),
        "wall_s": time.perf_counter() - start,
        "seconds_to_val_dice": clock.reached,
        "first_epoch_s": clock.epoch_s[0] if clock.epoch_s else None,
        "epoch_s": clock.epoch_s,
        "val_dice": result.val_dice,
        "best_val_dice": result.best_val_dice,
        "test_dice": result.test.get("dice"),
        **loss_checks(meter.losses),
    }


def device_check(args: argparse.Namespace) -> dict[str, Any]:
    """Run the check and return its JSON-ready result (``ok``: every check passed)."""
    from petseg.data.synthetic import make_synthetic_dataset
    from petseg.errors import PetsegError, first_line
    from petseg.models import ARCHS

    start = time.perf_counter()
    s = Settings(args.dry_run, args)
    budget = args.budget_s or (math.inf if s.dry_run else 420.0)
    if not s.dry_run and not torch.cuda.is_available():
        raise PetsegError("no CUDA device here; petseg-bench device --dry-run runs on the CPU")
    work = empty_folder(args.work_dir or tempfile.mkdtemp(prefix="petseg-device-"), "--work_dir")
    root = Path(args.root) if args.root else work / "data"
    n_trainval, n_test, sides = s.synthetic
    synthetic = f"synthetic: {n_trainval} trainval, {n_test} test, sides {sides[0]}-{sides[1]} px"
    if not args.root:
        print(f"generating {n_trainval + n_test} synthetic images in {root} ...", file=sys.stderr)
        make_synthetic_dataset(root, n_trainval, n_test, sides, seed=0)
    result: dict[str, Any] = {
        "dry_run": s.dry_run,
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if not s.dry_run else platform.processor() or "cpu",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "cuda": torch.version.cuda,
        },
        "data": str(args.root) if args.root else synthetic,
        "image_size": s.image_size,
        "batch_size": s.batch_size,
        "base_channels": s.base_channels,
        "steps": s.steps,
        "warmup_steps": s.warmup,
        "compile_backend": s.compile_backend,
        "budget_s": budget if math.isfinite(budget) else None,
        "setup_s": time.perf_counter() - start,
        "throughput": {},
        "skipped": [],
        "errors": {},
    }
    # the standard runs first: they compile nothing, so the slow compiles come last
    runs = [(path, arch, p) for path in PATHS for arch in ARCHS for p in PRECISIONS]
    for i, (path, arch, precision) in enumerate(runs):
        name = f"{arch}/{s.precision(precision)}/{path}"
        left = budget - (time.perf_counter() - start)
        if left < args.reserve_s + args.dice_s:
            result["skipped"].append(name)
            continue
        print(f"[{i + 1}/{len(runs)}] {name} ...", file=sys.stderr)
        try:
            result["throughput"][name] = throughput_run(s, arch, precision, path, root, work)
        except Exception as err:  # one failed path must not hide the others' figures
            result["errors"][name] = f"{type(err).__name__}: {first_line(err)}"
    left = budget - (time.perf_counter() - start)
    if left < args.reserve_s / 2:
        result["skipped"].append("time_to_dice")
    else:
        print(f"time to Dice (at most {left:.0f} s) ...", file=sys.stderr)
        try:
            result["time_to_dice"] = dice_run(s, root, work, min(left - 30, 3600.0))
        except Exception as err:
            result["errors"]["time_to_dice"] = f"{type(err).__name__}: {first_line(err)}"
    checks = [r for r in result["throughput"].values()] + [result.get("time_to_dice") or {}]
    result["ok"] = not result["errors"] and all(
        r.get("finite") and r.get("falls") for r in checks if r
    )
    result["total_s"] = time.perf_counter() - start
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The printed table: one line a run, then the time to Dice."""
    lines = [f"{'run':<36} {'images/s':>9} {'peak GiB':>9} {'first s':>8}  finite falls"]
    for name, r in result["throughput"].items():
        rate = f"{r['images_per_s']:.1f}" if r["images_per_s"] else "-"
        peak = f"{r['peak_gpu_memory_bytes'] / 2**30:.2f}" if r["peak_gpu_memory_bytes"] else "-"
        lines.append(
            f"{name:<36} {rate:>9} {peak:>9} {r['first_steps_s']:>8.1f}  "
            f"{r['finite']!s:<6} {r['falls']!s}"
        )
    dice = result.get("time_to_dice")
    if dice:
        lines.append(
            f"time to val Dice {dice['seconds_to_val_dice']} in {dice['epochs_run']} epochs; "
            f"best val Dice {dice['best_val_dice']}, test Dice {dice['test_dice']}"
        )
    for name, err in result["errors"].items():
        lines.append(f"error in {name}: {err}")
    if result["skipped"]:
        lines.append(f"skipped (time budget): {', '.join(result['skipped'])}")
    skipped = f", {len(result['skipped'])} part(s) skipped" if result["skipped"] else ""
    lines.append(f"all checks passed: {result['ok']} ({result['total_s']:.0f} s{skipped})")
    return lines


def parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="the same steps on the CPU, tiny"
    )
    parser.add_argument("--root", default=None, help="data in the official layout (default: "
                        "a synthetic dataset generated in the work folder)")  # fmt: skip
    parser.add_argument("--work_dir", default=None, help="a new folder for data, cache and runs "
                        "(default: a temporary folder)")  # fmt: skip
    parser.add_argument("--image_size", type=int, default=None, help="default 256 (dry run 32)")
    parser.add_argument("--batch_size", type=int, default=None, help="default 64 (dry run 10)")
    parser.add_argument("--steps", type=int, default=None, help="steps of each throughput run")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the time-to-Dice run")
    parser.add_argument(
        "--budget_s",
        type=float,
        default=None,
        help="wall-time budget in seconds (default: 420 on a GPU, none in the dry run)",
    )
    parser.add_argument("--reserve_s", type=float, default=60.0,
                        help="a run starts only with this much of the budget left")  # fmt: skip
    parser.add_argument("--dice_s", type=float, default=0.0,
                        help="seconds kept for the time-to-Dice run: a throughput run starts "
                        "only with reserve_s + dice_s of the budget left")  # fmt: skip
    parser.add_argument("--output", default="device.json", help="the JSON results")
    parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    return parser


def main(argv: list[str] | None, prog: str = "petseg-bench device") -> int:
    """Run the check, print its table, write its JSON; 1 when a check failed."""
    from petseg.console import run_command

    def body(argv: list[str] | None) -> int:
        # petseg.train passes its own arguments to LightningCLI, which warns when sys.argv has any
        warnings.filterwarnings("ignore", "LightningCLI's args parameter")
        # the throughput runs validate nothing, so the best-checkpoint callback finds no val/dice
        warnings.filterwarnings("ignore", ".*could not find the monitored key")
        args = parser(prog).parse_args(argv)
        output = new_file(args.output)
        result = device_check(args)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2) + "\n")
        print("\n".join(summary_lines(result)))
        print(f"wrote {output}")
        return 0 if result["ok"] else 1

    return run_command(prog, argv, body)
