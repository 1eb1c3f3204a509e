"""Models: plain ``nn.Module``s returning logits ``(N, 1, H, W)``, and a name -> class registry."""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn

from petseg.errors import PetsegError
from petseg.models.resnet34_unet import ResNet34Encoder, ResNet34UNet
from petseg.models.unet import UNet

Arch = Literal["unet", "resnet34_unet"]  # the one list of architecture names
ARCHS: tuple[str, ...] = get_args(Arch)
MODELS: dict[str, type[nn.Module]] = {"unet": UNet, "resnet34_unet": ResNet34UNet}
assert set(MODELS) == set(ARCHS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the architecture ``name`` (``unet`` or ``resnet34_unet``) with ``kwargs``."""
    if name not in MODELS:
        raise PetsegError(f"architecture {name!r} is not one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["ARCHS", "MODELS", "Arch", "ResNet34Encoder", "ResNet34UNet", "UNet", "build_model"]
