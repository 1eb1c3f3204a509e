"""Data-path figures on a rehearsal dataset (``petseg-bench rehearse``), as JSON.

    python scripts/rehearsal_measure.py REHEARSAL_DIR CACHE_DIR --output docs/rehearsal_cpu.json

- the setup checks (``OxfordPetDataset.check_files``) of each split: wall and CPU seconds;
- the cache files in CACHE_DIR (built by a cached petseg-train run at 256 px): their sizes;
- the standard data path at 256 px, one worker: reading, decoding, resizing, augmenting and
  normalising a training image (``OxfordPetDataset.__getitem__``) for each augmentation preset,
  as images per wall second and per CPU second (on a loaded machine the CPU figure is the one to
  scale: a worker that has a core to itself runs at about its rate);
- each architecture's training FLOPs per image at 256 px at full width (forward and backward,
  ``torch.utils.flop_counter`` on the meta device), and the images/s that one H100/H200 would
  consume at a stated fraction of its dense bf16 peak: a calculation, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from petseg.data.dataset import OxfordPetDataset
from petseg.data.transforms import train_transform
from petseg.losses import SegmentationLoss
from petseg.models import ARCHS, build_model

H100_H200_BF16_DENSE_PEAK = 989e12  # FLOP/s, NVIDIA's dense bf16 tensor-core figure (SXM)
UTILISATION = 0.3  # a stated assumption for convolutional UNets in bf16, channels-last


def clocked(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def train_flops_per_image(arch: str, size: int, batch: int = 2) -> int:
    model = build_model(arch).to("meta")
    images = torch.randn(batch, 3, size, size, device="meta")
    masks = torch.zeros(batch, 1, size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        SegmentationLoss("bce_dice")(model(images), masks).backward()
    return counter.get_total_flops() // batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root")
    parser.add_argument("cache_dir")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=120, help="images timed per preset")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one worker's view: loader workers run one thread each
    result: dict = {
        "machine": f"{os.cpu_count()} CPU cores shared with other training runs "
        f"(load average {os.getloadavg()[0]:.1f} at start): times are upper bounds",
        "processor": platform.processor(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "image_size": args.size,
        "checks": {},
    }
    for split in ("train", "valid", "test"):
        dataset = OxfordPetDataset(args.root, split)
        _, wall, cpu = clocked(lambda d=dataset: d.check_files(progress=False))
        result["checks"][split] = {"pairs": len(dataset), "wall_s": wall, "cpu_s": cpu}
    result["cache_files"] = {p.name: p.stat().st_size for p in Path(args.cache_dir).glob("*.pt")}
    result["standard_path_one_worker"] = {}
    for preset in ("none", "basic", "strong"):
        dataset = OxfordPetDataset(args.root, "train", train_transform(args.size, preset))
        n = min(args.images, len(dataset))
        dataset[0]  # warm-up: imports, first allocations
        _, wall, cpu = clocked(lambda d=dataset, n=n: [d[i] for i in range(1, n + 1)])
        result["standard_path_one_worker"][preset] = {
            "images": n,
            "images_per_wall_s": n / wall,
            "images_per_cpu_s": n / cpu,
        }
    rate = H100_H200_BF16_DENSE_PEAK * UTILISATION
    result["gpu_consumption (calculated, not measured)"] = {
        "peak_flops": H100_H200_BF16_DENSE_PEAK,
        "utilisation": UTILISATION,
    }
    for arch in ARCHS:
        flops = train_flops_per_image(arch, args.size)
        consumes = rate / flops
        workers = {
            preset: consumes / r["images_per_cpu_s"]
            for preset, r in result["standard_path_one_worker"].items()
        }
        result["gpu_consumption (calculated, not measured)"][arch] = {
            "train_flops_per_image": flops,
            "images_per_s": consumes,
            "standard_path_workers_needed": workers,
        }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
