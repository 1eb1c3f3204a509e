"""Console entry points: ``petseg-train`` and ``petseg-test``.

Each is a function ``main(argv=None)`` returning an exit code, so tests call it in-process. Bad
input (a ``PetsegError``) is printed as one line, ``<prog>: error: <what> <what to do>``, with exit
code 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from jsonargparse import ArgumentError, ArgumentParser
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from petseg.checkpoints import export_state_dict, load_checkpoint, module_from_checkpoint
from petseg.data import PetDataModule
from petseg.data.datamodule import DEFAULT_ROOT
from petseg.errors import PetsegError
from petseg.models import ARCHS
from petseg.module import SegmentationModule

Arch = Literal["unet", "resnet34_unet"]
LAST = "last"  # saved_models/<arch>/last.ckpt, rewritten every epoch; --ckpt_path last resumes it
assert set(Arch.__args__) == set(ARCHS)  # the CLI's choices are the registry's names


def auto_precision(accelerator: str | None) -> str:
    """bf16 mixed precision on a GPU that has it, 16-bit mixed on other GPUs, 32-bit on CPU."""
    if accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _run(prog: str, argv: list[str] | None, body: Callable[[list[str] | None], int]) -> int:
    verbose = "--verbose" in (sys.argv[1:] if argv is None else argv)
    try:
        return body(argv)
    except (PetsegError, ArgumentError) as err:
        if verbose:
            raise
        message = " ".join(str(err).split())  # jsonargparse's messages span several lines
        hint = f" (see {prog} --help)" if isinstance(err, ArgumentError) else ""
        print(f"{prog}: error: {message}{hint}", file=sys.stderr)
        return 2


def _print_metrics(metrics: dict[str, float]) -> None:
    for key in ("test/dice", "test/dice_dataset", "test/iou", "test/loss"):
        if key in metrics:
            print(f"{key:<18} {float(metrics[key]):.4f}")


class TrainCLI(LightningCLI):
    """LightningCLI with ``--arch``, output folders, resuming and petseg's trainer defaults."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--arch", type=Arch, default="resnet34_unet", help="Architecture to train."
        )
        parser.link_arguments("arch", "model.arch")
        parser.add_argument(
            "--save_dir", default="saved_models", help="Checkpoints go to SAVE_DIR/<arch>/."
        )
        parser.add_argument("--log_dir", default="logs", help="TensorBoard logs: LOG_DIR/<arch>/.")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Resume training from this checkpoint ('last' for the run's newest).",
        )
        parser.add_argument("--verbose", type=bool, default=False, help="Tracebacks on errors.")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        cfg, trainer_cfg = self.config, self.config_init.trainer
        if trainer_cfg.get("precision") is None:
            kwargs["precision"] = auto_precision(trainer_cfg.get("accelerator"))
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(cfg.log_dir, name=cfg.arch)
        ckpt_dir = Path(cfg.save_dir) / cfg.arch
        best = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="epoch{epoch:03d}-dice{val/dice:.4f}",
            auto_insert_metric_name=False,
            monitor="val/dice",
            mode="max",
        )
        # Lightning's save_last only follows top-k saves; this rewrites last.ckpt every epoch.
        last = ModelCheckpoint(dirpath=ckpt_dir, filename=LAST, enable_version_counter=False)
        self.trainer_defaults["callbacks"] = [best, last, LearningRateMonitor("epoch")]
        return super().instantiate_trainer(**kwargs)


def _train(argv: list[str] | None) -> int:
    cli = TrainCLI(
        SegmentationModule,
        PetDataModule,
        run=False,
        args=argv,
        seed_everything_default=42,
        trainer_defaults={"max_epochs": 50},
        auto_configure_optimizers=False,
        parser_kwargs={
            "prog": "petseg-train",
            "exit_on_error": False,
            "description": "Train UNet or ResNet34-UNet on Oxford-IIIT Pet, then test the best "
            "checkpoint. Options can also come from a YAML file (--config configs/<arch>.yaml).",
        },
    )
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    ckpt_path = cli.config.ckpt_path
    if ckpt_path == "last":
        ckpt_path = Path(cli.config.save_dir) / cli.config.arch / f"{LAST}.ckpt"
    if ckpt_path is not None:
        load_checkpoint(ckpt_path)  # a clear error before any training starts
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path
    results = trainer.test(model, datamodule=data, ckpt_path=best or None, verbose=False)
    if trainer.is_global_zero:
        print(f"best checkpoint    {best or '(none: no validation ran)'}")
        if best:
            pth = export_state_dict(best, Path(cli.config.save_dir) / f"{cli.config.arch}.pth")
            print(f"best weights       {pth}")
        _print_metrics(results[0] if results else {})
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """``petseg-train``: fit a model, test its best checkpoint, print where it is and its Dice."""
    return _run("petseg-train", argv, _train)


def _test_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="petseg-test",
        exit_on_error=False,
        description="Evaluate a petseg checkpoint on the test split (annotations/test.txt): mean "
        "per-image Dice, dataset-level Dice and IoU. The architecture and image size come from "
        "the checkpoint.",
    )
    parser.add_argument("--ckpt", required=True, help="A .ckpt written by petseg-train.")
    parser.add_argument("--data.root", default=DEFAULT_ROOT, help="Data root (official layout).")
    parser.add_argument(
        "--data.image_size", type=int | None, default=None, help="Default: the checkpoint's."
    )
    parser.add_argument("--data.batch_size", type=int, default=16, help="Images per batch.")
    parser.add_argument(
        "--data.num_workers", type=int | None, default=None, help="Loader processes."
    )
    parser.add_argument(
        "--data.download", type=bool, default=False, help="Download the data if root is empty."
    )
    parser.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, ...")
    parser.add_argument("--precision", type=str | None, default=None, help="Default: automatic.")
    parser.add_argument("--verbose", type=bool, default=False, help="Tracebacks on errors.")
    return parser


def _test(argv: list[str] | None) -> int:
    args = _test_parser().parse_args(argv)
    ckpt = load_checkpoint(args.ckpt)
    model = module_from_checkpoint(ckpt)
    data_hparams = ckpt.get("datamodule_hyper_parameters", {})
    data = PetDataModule(
        root=args.data.root,
        image_size=args.data.image_size or data_hparams.get("image_size", 256),
        batch_size=args.data.batch_size,
        num_workers=args.data.num_workers,
        download=args.data.download,
    )
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=1,
        precision=args.precision or auto_precision(args.accelerator),
        logger=False,
        enable_checkpointing=False,
    )
    results = trainer.test(model, datamodule=data, verbose=False)
    print(f"checkpoint         {args.ckpt} ({model.hparams.arch}, {data.image_size}px)")
    print(f"test images        {len(data.datasets['test'])}")
    _print_metrics(results[0])
    return 0


def test_main(argv: list[str] | None = None) -> int:
    """``petseg-test --ckpt CKPT``: test a checkpoint and print its Dice and IoU."""
    return _run("petseg-test", argv, _test)
