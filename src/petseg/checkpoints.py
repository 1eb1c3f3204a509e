"""Reading and writing petseg's model files safely: Lightning ``.ckpt``, self-describing ``.pth``.

Every file is read with ``torch.load(..., weights_only=True)``: tensors and plain values only, so
a crafted file cannot run code. petseg's own files hold nothing else, so nothing needs allowing.

A ``.pth`` written by ``petseg-train`` describes itself::

    {"format": "petseg-weights", "version": 1, "arch": "resnet34_unet",
     "model_options": {"base_channels": 64, "bilinear": False}, "image_size": 256,
     "threshold": 0.5, "data_root": "/data/oxford-iiit-pet",
     "normalization": {"mean": [...], "std": [...]}, "state_dict": {...}}

so ``build_model(w["arch"], **w["model_options"]).load_state_dict(w["state_dict"])`` rebuilds it.
Every file petseg writes here is written atomically (``atomic_save``): into a hidden temporary
file in the destination folder, flushed to disk, then renamed over the real name, so a kill or a
full disk at any moment leaves either the earlier file or the new one, never a truncated one.
The metadata of every file read is checked (``check_spec``) before a model is built from it.

This module imports neither Lightning nor albumentations: loading a model stays quick.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.errors import PetsegError, first_line
from petseg.files import atomic_write
from petseg.models import ARCHS, build_model

WEIGHTS_FORMAT = "petseg-weights"
WEIGHTS_VERSION = 1
MODEL_OPTIONS = ("base_channels", "bilinear")  # the hyperparameters that shape the network
# the one input normalisation petseg trains with, recorded in every .pth and checked on reading
NORMALIZATION = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 4096  # the image sizes petseg trains and loads
MAX_BASE_CHANNELS = 512  # 8x the published width: a larger one is a crafted file, not a model


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


def check_spec(fields: Mapping[str, Any], path: str | Path) -> ModelSpec:
    """A ``ModelSpec`` from the metadata of the file ``path``, checked field by field.

    A file edited by hand or crafted must not build a huge network, pick an unknown architecture
    or threshold every pixel the same: anything out of range is one line naming file and field.
    """

    def bad(name: str, value: Any, expected: str) -> PetsegError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return PetsegError(f"{path}: metadata field {name} is {shown}; it must be {expected}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    arch = fields.get("arch")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise bad("arch", arch, f"one of {', '.join(ARCHS)}")
    options = fields.get("model_options", {})
    if not isinstance(options, Mapping):
        raise bad("model_options", options, "a mapping of " + ", ".join(MODEL_OPTIONS))
    for name in options:
        if name not in MODEL_OPTIONS:
            raise bad(f"model_options.{name}", options[name], f"one of {', '.join(MODEL_OPTIONS)}")
    channels = options.get("base_channels", 64)
    if not is_int(channels) or not 1 <= channels <= MAX_BASE_CHANNELS:
        raise bad("base_channels", channels, f"an integer from 1 to {MAX_BASE_CHANNELS}")
    if not isinstance(options.get("bilinear", False), bool):
        raise bad("bilinear", options["bilinear"], "true or false")
    size = fields.get("image_size", 256)
    if not is_int(size) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise bad("image_size", size, f"an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")
    threshold = fields.get("threshold", 0.5)
    if not _is_probability(threshold):
        raise bad("threshold", threshold, "a number between 0 and 1 (both excluded)")
    data_root = fields.get("data_root")
    if data_root is not None and not isinstance(data_root, str):
        raise bad("data_root", data_root, "a path (text) or absent")
    normalization = fields.get("normalization")  # .pth files: what the inputs were scaled by
    if normalization is not None and normalization != NORMALIZATION:
        raise bad("normalization", normalization, f"{NORMALIZATION} (ImageNet's), or absent")
    return ModelSpec(arch, dict(options), size, float(threshold), data_root)


def _is_probability(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and 0 < value < 1


def check_threshold(threshold: Any, option: str = "threshold") -> float:
    """``threshold`` as a float strictly between 0 and 1, or a one-line error naming ``option``."""
    if not _is_probability(threshold):
        raise PetsegError(f"{option} {threshold!r} must be a number between 0 and 1 (excluded)")
    return float(threshold)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically and durably (``petseg.files.atomic_write``)."""
    return atomic_write(path, partial(torch.save, obj), durable=True)


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
    except pickle.UnpicklingError as err:  # the safe unpickler stopped: refused or unreadable
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise PetsegError(
                f"refusing to load {path}: it holds Python objects besides tensors and plain "
                f"values ({', '.join(unsafe[:3])}), which could run code when loaded; petseg's "
                "own .ckpt and .pth files never do, so use a file written by petseg-train"
            ) from None
        raise PetsegError(f"cannot read checkpoint {path}: {first_line(err)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise PetsegError(f"cannot read checkpoint {path}: {first_line(err)}") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The Python objects (module.name) a file torch.save wrote would build on loading, beyond
    what ``weights_only`` allows, as torch lists them; [] for a file it cannot list."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip archive written by torch.save, or a damaged one
        return []


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint written by ``petseg-train``, read safely, or a one-line error."""
    ckpt = read_file(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "arch" not in hparams or "state_dict" not in ckpt:
        raise PetsegError(
            f"{path} is not a petseg checkpoint (no architecture in its hyperparameters); "
            "pass a .ckpt or .pth written by petseg-train"
        )
    if not isinstance(ckpt["state_dict"], dict) or not all(map(_is_str, ckpt["state_dict"])):
        raise PetsegError(f"{path}: field state_dict is not a mapping of names to tensors")
    checkpoint_spec(ckpt, path)  # its metadata must be in range before anything uses it
    return ckpt


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def checkpoint_spec(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> ModelSpec:
    """The ``ModelSpec`` of a loaded Lightning checkpoint, checked (``check_spec``)."""
    hparams = ckpt["hyper_parameters"]
    options = {k: hparams[k] for k in MODEL_OPTIONS if k in hparams}
    data = ckpt.get("datamodule_hyper_parameters") or {}
    if not isinstance(data, Mapping):
        raise PetsegError(f"{path}: metadata field datamodule_hyper_parameters is not a mapping")
    fields = {"arch": hparams["arch"], "model_options": options}
    fields["image_size"] = data.get("image_size", 256)
    fields["threshold"] = hparams.get("threshold", 0.5)
    fields["data_root"] = ckpt.get("data_root") or data.get("root")
    return check_spec(fields, path)


def checkpoint_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The plain ``nn.Module`` state dict inside a Lightning checkpoint (its ``net.`` entries)."""
    return {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }


def load_model(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a trained model, in eval mode on the CPU, from a ``.ckpt`` or a ``.pth``."""
    content = read_file(path)
    if isinstance(content, dict) and content.get("format") == WEIGHTS_FORMAT:
        spec, weights = check_spec(content, path), content.get("state_dict")
        if not isinstance(weights, dict):
            raise PetsegError(f"{path}: field state_dict is not a mapping of tensors")
    else:
        ckpt = load_checkpoint(path)
        spec, weights = checkpoint_spec(ckpt, path), checkpoint_weights(ckpt)
    model = spec.build()
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError, KeyError) as err:
        raise PetsegError(
            f"the weights in {path} do not fit a {spec.arch} with {spec.model_options}: "
            f"{first_line(err)}"
        ) from None
    return model.eval(), spec


def save_weights(model: nn.Module, spec: ModelSpec, path: str | Path) -> Path:
    """Write a self-describing ``.pth``: the state dict with everything needed to rebuild it."""
    payload = {
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        **asdict(spec),
        "normalization": NORMALIZATION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return atomic_save(payload, path)


def export_weights(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Save the model of a ``.ckpt`` as a self-describing ``.pth`` (see the module docstring)."""
    model, spec = load_model(ckpt_path)
    return save_weights(model, spec, out_path)
