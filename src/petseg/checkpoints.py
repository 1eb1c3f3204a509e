"""Reading and writing petseg's model files safely: Lightning ``.ckpt``, self-describing ``.pth``.

Every file is read with ``torch.load(..., weights_only=True)``: tensors and plain values only, so
a crafted file cannot run code. petseg's own files hold nothing else, so nothing needs allowing.

A ``.pth`` written by ``petseg-train`` describes itself::

    {"format": "petseg-weights", "version": 1, "arch": "resnet34_unet",
     "model_options": {"base_channels": 64, "bilinear": False}, "image_size": 256,
     "threshold": 0.5, "data_root": "/data/oxford-iiit-pet",
     "normalization": {"mean": [...], "std": [...]}, "state_dict": {...}}

so ``build_model(w["arch"], **w["model_options"]).load_state_dict(w["state_dict"])`` rebuilds it.
This module imports neither Lightning nor albumentations: loading a model stays quick.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.errors import PetsegError
from petseg.models import build_model

WEIGHTS_FORMAT = "petseg-weights"
WEIGHTS_VERSION = 1
MODEL_OPTIONS = ("base_channels", "bilinear")  # the hyperparameters that shape the network
# How torch's weights-only unpickler says the bytes are no pickle it can parse (junk, a text
# file), as opposed to naming a Python object it refuses to build.
_NOT_A_PICKLE = re.compile(r"Unsupported operand \d+|String is too long")


@dataclass(frozen=True)
class ModelSpec:
    """What it takes to rebuild and use a trained model, besides its weights."""

    arch: str
    model_options: dict[str, Any] = field(default_factory=dict)
    image_size: int = 256
    threshold: float = 0.5
    data_root: str | None = None  # the data it was trained on (absolute), for petseg-test

    def build(self) -> nn.Module:
        return build_model(self.arch, **self.model_options)


def read_file(path: str | Path) -> Any:
    """``torch.load`` a petseg file on the CPU with ``weights_only=True``, or fail in one line."""
    path = Path(path)
    if not path.is_file():
        raise PetsegError(
            f"checkpoint not found: {path} (petseg-train prints the best checkpoint's path; "
            "runs live in saved_models/<arch>/version_N/)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise PetsegError(f"cannot read checkpoint {path}: {_first_line(err)}") from None
        unparsed = _NOT_A_PICKLE.search(str(err))
        if unparsed:  # bytes the safe unpickler cannot parse: not an object it refused
            raise PetsegError(
                f"cannot read checkpoint {path}: not a PyTorch file ({unparsed[0]})"
            ) from None
        raise PetsegError(
            f"refusing to load {path}: it holds Python objects besides tensors and plain values, "
            "which could run code when loaded; petseg's own .ckpt and .pth files never do, so "
            "use a file written by petseg-train"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise PetsegError(f"cannot read checkpoint {path}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint written by ``petseg-train``, read safely, or a one-line error."""
    ckpt = read_file(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "arch" not in hparams or "state_dict" not in ckpt:
        raise PetsegError(
            f"{path} is not a petseg checkpoint (no architecture in its hyperparameters); "
            "pass a .ckpt or .pth written by petseg-train"
        )
    return ckpt


def checkpoint_spec(ckpt: dict[str, Any]) -> ModelSpec:
    """The ``ModelSpec`` of a loaded Lightning checkpoint."""
    hparams = ckpt["hyper_parameters"]
    options = {k: hparams[k] for k in MODEL_OPTIONS if k in hparams}
    data = ckpt.get("datamodule_hyper_parameters") or {}
    return ModelSpec(
        hparams["arch"],
        options,
        int(data.get("image_size", 256)),
        hparams.get("threshold", 0.5),
        ckpt.get("data_root") or data.get("root"),
    )


def checkpoint_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The plain ``nn.Module`` state dict inside a Lightning checkpoint (its ``net.`` entries)."""
    return {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }


def load_model(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a trained model, in eval mode on the CPU, from a ``.ckpt`` or a ``.pth``."""
    content = read_file(path)
    if isinstance(content, dict) and content.get("format") == WEIGHTS_FORMAT:
        fields = {k: content[k] for k in ("arch", "model_options", "image_size", "threshold")}
        spec = ModelSpec(**fields, data_root=content.get("data_root"))
        weights = content["state_dict"]
    else:
        ckpt = load_checkpoint(path)
        spec, weights = checkpoint_spec(ckpt), checkpoint_weights(ckpt)
    model = spec.build()
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise PetsegError(
            f"the weights in {path} do not fit a {spec.arch} with {spec.model_options}: "
            f"{_first_line(err)}"
        ) from None
    return model.eval(), spec


def save_weights(model: nn.Module, spec: ModelSpec, path: str | Path) -> Path:
    """Write a self-describing ``.pth``: the state dict with everything needed to rebuild it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        **asdict(spec),
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def export_weights(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Save the model of a ``.ckpt`` as a self-describing ``.pth`` (see the module docstring)."""
    model, spec = load_model(ckpt_path)
    return save_weights(model, spec, out_path)
