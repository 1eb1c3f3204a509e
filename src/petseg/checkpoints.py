"""Reading petseg checkpoints back: the model from its saved hyperparameters, and .pth export."""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from petseg.errors import PetsegError
from petseg.module import SegmentationModule


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint written by ``petseg-train`` (on the CPU), or fail in one line."""
    path = Path(path)
    if not path.is_file():
        raise PetsegError(
            f"checkpoint not found: {path} (petseg-train prints the best checkpoint's path; "
            "they live in saved_models/<arch>/)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise PetsegError(f"cannot read checkpoint {path}: {err}".splitlines()[0]) from None
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "arch" not in hparams or "state_dict" not in ckpt:
        raise PetsegError(
            f"{path} is not a petseg checkpoint (no architecture in its hyperparameters); "
            "pass a .ckpt written by petseg-train"
        )
    return ckpt


def module_from_checkpoint(ckpt: dict[str, Any]) -> SegmentationModule:
    """Rebuild the trained ``SegmentationModule`` from a loaded checkpoint, in eval mode."""
    accepted = inspect.signature(SegmentationModule.__init__).parameters
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if k in accepted}
    module = SegmentationModule(**hparams)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def saved_image_size(ckpt: dict[str, Any]) -> int:
    """The image size the checkpoint's model was trained at (its datamodule's hyperparameter)."""
    return ckpt.get("datamodule_hyper_parameters", {}).get("image_size", 256)


def export_state_dict(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Save the plain ``nn.Module`` state dict of a checkpoint's model as a ``.pth`` file.

    Load it back with ``build_model(arch).load_state_dict(torch.load(out_path))``.
    """
    ckpt = load_checkpoint(ckpt_path)
    weights = ckpt["state_dict"].items()
    state = {k.removeprefix("net."): v for k, v in weights if k.startswith("net.")}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out_path)
    return out_path
