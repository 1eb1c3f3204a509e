"""The LightningModule that trains any petseg model: loss, metrics, optimizer and logging."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from petseg.errors import PetsegError
from petseg.inference import predicted_mask
from petseg.losses import LossName, SegmentationLoss
from petseg.metrics import BinarySegmentationScores
from petseg.models import build_model
from petseg.optim import OptimizerName, SchedulerName, build_optimizer, lr_scheduler_config
from petseg.options import (
    DecayFactor,
    Momentum,
    NonNegativeFloat,
    NonNegativeInt,
    OpenUnitInterval,
    PositiveFloat,
    Width,
    check_arguments,
    plain,
)
from petseg.visualize import comparison_grid, denormalize

STAGES = ("train", "val")
FINITE_CHECK_EVERY = 32  # steps between host reads of the non-finite-loss flag


class SegmentationModule(L.LightningModule):
    """Trains a binary segmentation model (``unet`` or ``resnet34_unet``) from scratch.

    Every argument is saved in the checkpoint, so a checkpoint alone rebuilds the model.

    Args:
        arch: Architecture name from the model registry (set by ``petseg-train --arch``).
        base_channels: Width of the model's first level (64 is the published width).
        bilinear: Bilinear upsampling in the decoder instead of transposed convolutions.
        loss: ``bce``, ``dice``, ``bce_dice``, ``lovasz``, ``bce_lovasz`` or ``mse``.
        dice_weight: Weight of the second term in ``bce_dice`` and ``bce_lovasz``.
        optimizer: ``adamw``, ``adam``, ``radam`` or ``sgd``.
        lr: Learning rate (the peak rate for ``onecycle``).
        weight_decay: Weight decay of the optimizer.
        momentum: Momentum for ``sgd`` (Nesterov).
        scheduler: ``cosine`` (per step, to zero), ``onecycle`` (per step, and keeping pace
            with ``--trainer.max_time`` when that is set, so that a run stopped by the time
            budget ends the cycle), ``exponential`` (per epoch, by ``gamma``) or ``none``.
        gamma: Decay per epoch of the ``exponential`` scheduler.
        threshold: Probability above which a pixel counts as pet in the metrics.
        log_images: Validation images (the first ones, the same every epoch) drawn into
            TensorBoard each epoch as image / ground truth / prediction rows; 0 turns it off.
        channels_last: Run the network in the channels-last memory layout (faster convolutions
            on tensor-core GPUs).
        compile: Compile the network with ``torch.compile`` before training.
    """

    def __init__(
        self,
        arch: str = "resnet34_unet",
        base_channels: Width = 64,
        bilinear: bool = False,
        loss: LossName = "bce_dice",
        dice_weight: NonNegativeFloat = 1.0,
        optimizer: OptimizerName = "adamw",
        lr: PositiveFloat = 1e-3,
        weight_decay: NonNegativeFloat = 1e-4,
        momentum: Momentum = 0.9,
        scheduler: SchedulerName = "cosine",
        gamma: DecayFactor = 0.95,
        threshold: OpenUnitInterval = 0.5,
        log_images: NonNegativeInt = 8,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # the parser checks these while parsing; this covers Python callers, from the same types
        check_arguments(SegmentationModule.__init__, locals(), "model")
        # plain numbers in the checkpoint, not the parser's restricted types (weights_only)
        base_channels, dice_weight, lr = plain(base_channels), plain(dice_weight), plain(lr)
        weight_decay, momentum, gamma = plain(weight_decay), plain(momentum), plain(gamma)
        threshold, log_images = plain(threshold), plain(log_images)
        self.save_hyperparameters()
        self.net: nn.Module = build_model(arch, base_channels=base_channels, bilinear=bilinear)
        self.criterion = SegmentationLoss(loss, dice_weight)
        # One metric object per stage ("train" is taken as a ModuleDict key by nn.Module.train).
        self.scores = nn.ModuleDict({f"{s}_": BinarySegmentationScores(threshold) for s in STAGES})
        self._examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.register_buffer("_first_bad_step", torch.tensor(-1), persistent=False)

    def configure_model(self) -> None:
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.net.compile()  # in place: parameter names (and checkpoints) stay the same
            self._compiled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1, H, W)`` for normalised images ``(N, 3, H, W)``."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def _common_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = batch  # (N, 3, H, W) float, (N, H, W) uint8
        masks = masks.unsqueeze(1).float()  # (N, 1, H, W)
        logits = self(images)
        loss = self.criterion(logits, masks)
        self.scores[f"{stage}_"].update(logits, masks)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(images),
                 sync_dist=True, prog_bar=stage == "train")  # fmt: skip
        return loss, logits

    def _log_scores(self, stage: str) -> None:
        scores = self.scores[f"{stage}_"].compute()  # synced across processes by torchmetrics
        keys = ("dice",) if stage == "train" else tuple(scores)
        for key in keys:
            self.log(f"{stage}/{key}", scores[key], prog_bar=f"{stage}/{key}" == "val/dice")
        self.scores[f"{stage}_"].reset()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._common_step(batch, "train")[0]
        # Remember the first step whose loss is not finite, on the device: reading it back every
        # step would stall the GPU, so it is checked every FINITE_CHECK_EVERY steps and at the end.
        bad = ~torch.isfinite(loss.detach())
        step = torch.full_like(self._first_bad_step, self.global_step)
        self._first_bad_step = torch.where(
            bad & (self._first_bad_step < 0), step, self._first_bad_step
        )
        if batch_idx % FINITE_CHECK_EVERY == 0:
            self._check_finite()
        return loss

    def _check_finite(self) -> None:
        first_bad = int(self._first_bad_step)
        if first_bad >= 0:
            raise PetsegError(
                f"the training loss became NaN or infinite at global step {first_bad} "
                f"(epoch {self.current_epoch}); lower --model.lr, or try "
                "--trainer.precision 32-true or --trainer.gradient_clip_val 1.0"
            )

    def validation_step(self, batch, batch_idx: int) -> None:
        _, logits = self._common_step(batch, "val")
        wanted = self.hparams.log_images - sum(len(e[0]) for e in self._examples)
        if wanted > 0 and not self.trainer.sanity_checking:
            images, masks = batch
            preds = predicted_mask(logits, self.hparams.threshold)
            self._examples.append(
                (images[:wanted].cpu(), masks[:wanted].cpu(), preds[:wanted].cpu())
            )

    def on_train_epoch_end(self) -> None:
        self._check_finite()
        self._log_scores("train")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")
        if self._examples and isinstance(self.logger, TensorBoardLogger) and self.global_rank == 0:
            images, masks, preds = (torch.cat(parts) for parts in zip(*self._examples, strict=True))
            grid = comparison_grid(denormalize(images), masks, preds)
            self.logger.experiment.add_image("val/examples", grid, self._scalar_step())
        self._examples.clear()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the absolute data root: `petseg-test --ckpt` scores a checkpoint without --data.root
        # (a hook of the module, not a callback: Lightning calls it for weights-only files too)
        root = getattr(self._trainer and self._trainer.datamodule, "root", None)
        if root is not None:
            checkpoint["data_root"] = str(Path(root).resolve())

    def _scalar_step(self) -> int:
        """The step Lightning logs this validation's scalars at, so that the images sit on the
        same axis (Lightning counts optimizer steps; this is its own counter for that)."""
        loop = getattr(self.trainer.fit_loop, "epoch_loop", None)
        return int(getattr(loop, "_batches_that_stepped", self.global_step))

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(
            hp.optimizer, self.parameters(), hp.lr, hp.weight_decay, hp.momentum
        )
        schedule = lr_scheduler_config(hp.scheduler, optimizer, self.trainer, hp.lr, hp.gamma)
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule}
