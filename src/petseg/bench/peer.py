"""The peer run: a plain training script that petseg's quick recipe is compared against.

It is the baseline a practitioner would write without petseg, so that petseg's quick recipe is
judged against it at equal wall time: segmentation-models-pytorch's ``Unet("resnet34",
encoder_weights=None)`` trained from scratch on images preloaded as tensors, random horizontal
flips only, BCE + per-image soft Dice (petseg's ``SegmentationLoss("bce_dice")``), AdamW with a
one-cycle schedule peaking at 1e-3, 15 epochs at 128 px with batch 8, no Lightning. The epoch
with the best validation Dice is scored on the test split at 128 px and at each image's
original size, by petseg's ``BinarySegmentationScores`` (mean per-image Dice).

    python -m petseg.bench.peer --root ../shared/oxford-pet-sample --seed 0 --output peer.json
    petseg-bench peer --root ../shared/oxford-pet-sample --seed 0 --output peer.json

It prints one line per epoch and a JSON summary, and writes the summary with the per-epoch
history (wall seconds since the start, validation Dice) to ``--output``. Needs
segmentation-models-pytorch (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from petseg.data.dataset import OxfordPetDataset
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.errors import PetsegError
from petseg.losses import SegmentationLoss
from petseg.metrics import BinarySegmentationScores

PROG = "python -m petseg.bench.peer"
SMP_MISSING = "segmentation-models-pytorch is not installed; pip install -e .[bench]"
EVAL_BATCH = 16
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def import_smp():
    """segmentation_models_pytorch, or a one-line ``PetsegError`` saying how to install it."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise PetsegError(SMP_MISSING) from None
    return smp


def peer_model() -> torch.nn.Module:
    """The peer network: smp's UNet on a ResNet34 encoder, random weights, one output channel."""
    return import_smp().Unet("resnet34", encoder_weights=None, classes=1)


def preload(dataset: OxfordPetDataset, size: int):
    """A split as normalised images ``(N, 3, S, S)``, masks ``(N, 1, S, S)`` and the masks at
    their original sizes."""
    images, masks, originals = [], [], []
    for i in range(len(dataset)):
        image, mask = dataset.load(i)
        images.append(np.asarray(Image.fromarray(image).resize((size, size), Image.BOX)))
        masks.append(np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST)))
        originals.append(torch.from_numpy(mask))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
    return (x - MEAN) / STD, torch.from_numpy(np.stack(masks)).float()[:, None], originals


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--root", default="../shared/oxford-pet-sample", help="data root")
    p.add_argument("--size", type=int, default=128, help="training and test image size")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="peak of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="JSON summary with the per-epoch history")
    p.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    return p


def train_and_score(args: argparse.Namespace) -> dict:
    """Train the peer, keep its best-validation epoch, score that on the test split."""
    import_smp()  # before anything is read or timed
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    tx, ty, _ = preload(OxfordPetDataset(args.root, "train"), args.size)
    vx, vy, _ = preload(OxfordPetDataset(args.root, "valid"), args.size)
    model = peer_model()
    criterion = SegmentationLoss("bce_dice")
    steps = args.epochs * (len(tx) // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps)
    best, best_state, best_epoch, history = -1.0, None, None, []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(tx))
        for i in range(len(tx) // args.batch):
            idx = order[i * args.batch : (i + 1) * args.batch]
            x, y = tx[idx], ty[idx]
            flip = torch.rand(len(x)) < 0.5
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            loss = criterion(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        scores = BinarySegmentationScores()
        with torch.no_grad():
            for i in range(0, len(vx), EVAL_BATCH):
                scores.update(model(vx[i : i + EVAL_BATCH]), vy[i : i + EVAL_BATCH])
        dice = float(scores.compute()["dice"])
        history.append((time.perf_counter() - start, dice))
        print(f"epoch {epoch} val/dice {dice:.4f} at {history[-1][0]:.0f} s", flush=True)
        if dice > best:
            best, best_state, best_epoch = dice, copy.deepcopy(model.state_dict()), epoch
    train_time = time.perf_counter() - start
    model.load_state_dict(best_state)
    sx, sy, originals = preload(OxfordPetDataset(args.root, "test"), args.size)
    small, full = BinarySegmentationScores(), BinarySegmentationScores()
    with torch.no_grad():
        for i in range(0, len(sx), EVAL_BATCH):
            logits = model(sx[i : i + EVAL_BATCH])
            small.update(logits, sy[i : i + EVAL_BATCH])
            for logit, original in zip(logits, originals[i : i + EVAL_BATCH], strict=True):
                up = F.interpolate(logit[None], size=tuple(original.shape), mode="bilinear")
                full.update(up, original[None, None].float())
    return {
        "seed": args.seed,
        "train_seconds": train_time,
        "best_epoch": best_epoch,
        "best_val_dice": best,
        "test_dice": float(small.compute()["dice"]),
        "test_dice_full_res": float(full.compute()["dice"]),
        "history": history,
    }


def _peer(argv: list[str] | None, prog: str) -> int:
    args = parser(prog).parse_args(argv)
    result = train_and_score(args)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f)
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the peer; a missing smp or bad data is one line on stderr and exit code 2."""
    from petseg.console import run_command

    return run_command(prog, argv, lambda args: _peer(args, prog))


if __name__ == "__main__":
    raise SystemExit(main())
