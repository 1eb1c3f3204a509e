"""``petseg-train``: LightningCLI over ``SegmentationModule`` and ``PetDataModule``.

Each run owns ``<save_dir>/<arch>/version_N/`` (checkpoints, the ``.pth``, the test report) and
``<log_dir>/<arch>/version_N/`` (TensorBoard), with the same N (``petseg.runs``). After fitting,
the best checkpoint is scored on the test split by the same code as ``petseg-test``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from petseg.checkpoints import MODEL_OPTIONS, load_checkpoint
from petseg.cli import run_command, verbose_requested
from petseg.cli.quiet import quiet_lightning
from petseg.data import PetDataModule
from petseg.data.download import ensure_data
from petseg.errors import PetsegError
from petseg.models import Arch
from petseg.module import SegmentationModule
from petseg.runs import (
    LAST,
    Run,
    check_writable_dir,
    discard_if_unused,
    existing_run,
    new_run,
    newest_checkpoint,
    run_of_checkpoint,
)

RUN_VERSION_ENV = "PETSEG_RUN_VERSION"  # hands rank 0's run number to DDP processes it launches


def auto_precision(accelerator: str | None) -> str:
    """bf16 mixed precision on a GPU that has it, 16-bit mixed on other GPUs; on a CPU, bf16
    mixed where it has AMX matrix units, 32-bit elsewhere."""
    if accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_amx() else "32-true"


def cpu_has_amx(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has AMX bf16 units (Linux's ``amx_bf16`` flag).

    Measured on 2 vCPUs at 128 px, batch 8 (docs/recipe.md): with AMX a bf16 training step of
    ``resnet34_unet`` takes half the float32 time; with AVX-512 bf16 alone it is slower.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines()
    )


class PetsegLogger(TensorBoardLogger):
    """TensorBoard logger whose HParams tab lists petseg's options only (no ``_instantiator``)."""

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None) -> None:
        if not isinstance(params, dict):
            params = vars(params) if hasattr(params, "__dict__") else dict(params)
        clean = {k: v for k, v in params.items() if not str(k).startswith("_")}
        super().log_hyperparams(clean, metrics)


class StartLine(Callback):
    """Prints what is being trained, on what data and where, once the data is set up."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        params = sum(p.numel() for p in pl_module.parameters()) / 1e6
        data = trainer.datamodule
        sizes = " / ".join(f"{split} {len(ds)}" for split, ds in data.datasets.items())
        print(
            f"training {pl_module.hparams.arch} ({params:.1f} M parameters) on {sizes} images at "
            f"{data.image_size} px, {trainer.precision} on {trainer.strategy.root_device}; "
            f"run {self.run.ckpt_dir} (logs {self.run.log_dir})",
            flush=True,
        )


class TrainCLI(LightningCLI):
    """LightningCLI with ``--arch``, run folders, safe resuming and petseg's trainer defaults.

    ``verbosity["verbose"]`` is set once the arguments are parsed: ``--verbose`` on the command
    line or ``verbose: true`` in a config file.
    """

    def __init__(self, *args, verbosity: dict[str, bool], **kwargs) -> None:
        self.verbosity = verbosity
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        self.verbosity["verbose"] = bool(self.config.verbose)
        if not self.config.verbose:  # before seeding: Lightning's first line is "Seed set to"
            quiet_lightning()

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--arch", type=Arch, default="resnet34_unet", help="Architecture to train."
        )
        parser.link_arguments("arch", "model.arch")
        parser.add_argument(
            "--save_dir",
            default="saved_models",
            help="Checkpoints, weights and test report go to SAVE_DIR/<arch>/version_N/.",
        )
        parser.add_argument(
            "--log_dir", default="logs", help="TensorBoard logs: LOG_DIR/<arch>/version_N/."
        )
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="Resume training from this checkpoint; 'last' resumes the newest run of --arch. "
            "A checkpoint inside SAVE_DIR/<arch>/version_N/ continues that run's folders.",
        )
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="Tracebacks on errors, and all of Lightning's messages (in a config file: "
            "verbose: true).",
        )

    def before_instantiate_classes(self) -> None:
        """Checks that need no model or data: output folders, and the checkpoint to resume."""
        cfg = self.config
        check_writable_dir(cfg.save_dir, "--save_dir")
        check_writable_dir(cfg.log_dir, "--log_dir")
        self.resume: Path | None = None
        if cfg.ckpt_path is not None:  # before the data: a wrong path must not wait on a download
            path = cfg.ckpt_path
            self.resume = Path(
                newest_checkpoint(cfg.save_dir, cfg.arch) if path == "last" else path
            )
            _check_resumable(load_checkpoint(self.resume), self.resume, cfg)
        if int(os.environ.get("RANK", 0)) == 0 and "LOCAL_RANK" not in os.environ:
            # the data (one process: the others start later, or run prepare_data)
            ensure_data(cfg.data.root, allow_download=cfg.data.download)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        cfg, trainer_cfg = self.config, self.config_init.trainer
        if trainer_cfg.get("precision") is None:
            kwargs["precision"] = auto_precision(trainer_cfg.get("accelerator"))
        self.run = self._claim_run()
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = PetsegLogger(
                cfg.log_dir, name=cfg.arch, version=self.run.version, default_hp_metric=False
            )
        if self.resume is not None:  # keep the first config.yaml: name this one after the resume
            taken = len(list(self.run.log_dir.glob("config*.yaml")))
            self.save_config_kwargs["config_filename"] = f"config-resume{taken}.yaml"
        best = ModelCheckpoint(
            dirpath=self.run.ckpt_dir,
            filename="epoch{epoch:03d}-dice{val/dice:.4f}",
            auto_insert_metric_name=False,
            monitor="val/dice",
            mode="max",
        )
        # Lightning's save_last only follows top-k saves; this rewrites last.ckpt every epoch.
        last = ModelCheckpoint(
            dirpath=self.run.ckpt_dir, filename=Path(LAST).stem, enable_version_counter=False
        )
        callbacks = [best, last, LearningRateMonitor("epoch"), StartLine(self.run)]
        self.trainer_defaults["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)

    def _claim_run(self) -> Run:
        """The resumed run's folders, or a new ``version_N`` (claimed by rank 0 only)."""
        cfg = self.config
        version = None
        if self.resume is not None:
            version = run_of_checkpoint(self.resume, cfg.save_dir, cfg.arch)
        if version is None and "LOCAL_RANK" in os.environ and RUN_VERSION_ENV in os.environ:
            version = int(os.environ[RUN_VERSION_ENV])  # a DDP process launched by rank 0
        if version is None:
            run = new_run(cfg.save_dir, cfg.log_dir, cfg.arch)
            os.environ[RUN_VERSION_ENV] = str(run.version)
            return run
        return existing_run(cfg.save_dir, cfg.log_dir, cfg.arch, version)


def _check_resumable(ckpt: dict[str, Any], path: Path, cfg) -> None:
    """The checkpoint must be of ``--arch`` and the same network options as this run."""
    saved = ckpt["hyper_parameters"]
    if saved["arch"] != cfg.arch:
        raise PetsegError(
            f"checkpoint {path} is a {saved['arch']} checkpoint but --arch is {cfg.arch}; "
            f"pass --arch {saved['arch']} to resume it"
        )
    for option in MODEL_OPTIONS:
        if option in saved and saved[option] != cfg.model[option]:
            raise PetsegError(
                f"checkpoint {path} was trained with --model.{option} {saved[option]} but this "
                f"run has {cfg.model[option]}; pass --model.{option} {saved[option]} to resume it"
            )


def _train(argv: list[str] | None, verbosity: dict[str, bool]) -> int:
    cli = TrainCLI(
        SegmentationModule,
        PetDataModule,
        run=False,
        args=argv,
        seed_everything_default=42,
        trainer_defaults={"max_epochs": 50, "enable_model_summary": False},
        auto_configure_optimizers=False,
        parser_kwargs={
            "prog": "petseg-train",
            "exit_on_error": False,
            "description": "Train UNet or ResNet34-UNet on Oxford-IIIT Pet, then test the best "
            "checkpoint. Options can also come from a YAML file (--config configs/full.yaml).",
        },
        verbosity=verbosity,
    )
    trainer, data = cli.trainer, cli.datamodule
    try:
        trainer.fit(cli.model, datamodule=data, ckpt_path=cli.resume, weights_only=True)
    except BaseException:
        if cli.resume is None and trainer.is_global_zero:
            discard_if_unused(cli.run)  # a run that failed before training leaves no folders
        raise
    if trainer.is_global_zero:
        _finish(cli, trainer)
    return 0


def _finish(cli: TrainCLI, trainer: L.Trainer) -> None:
    """Export the best weights, score them on the test split, log and print the results."""
    from petseg.checkpoints import export_weights
    from petseg.report import score_test_split
    from petseg.segmenter import Segmenter

    best = trainer.checkpoint_callback.best_model_path
    callback = trainer.checkpoint_callback
    if not best:
        print(f"no validation ran, so there is no best checkpoint; see {cli.run.ckpt_dir}")
        return
    pth = export_weights(best, cli.run.ckpt_dir / f"{cli.config.arch}.pth")
    best_dice = float(callback.best_model_score)
    best_epoch = int(load_checkpoint(best)["epoch"])
    print(f"best epoch         {best_epoch} (val/dice {best_dice:.4f})")
    device, batch_size = trainer.strategy.root_device, cli.datamodule.batch_size
    seg = Segmenter.load(best, device=device, batch_size=batch_size)
    evaluation = score_test_split(
        seg,
        cli.datamodule.root,
        cli.run.ckpt_dir / "test",
        num_workers=cli.datamodule.num_workers,
        progress=False,
        info={"checkpoint": best},
        skip_missing=cli.datamodule.skip_missing,
    )
    test = {f"test/{k}": v for k, v in evaluation.summary.items()}
    if trainer.logger is not None:
        trainer.logger.log_metrics({**test, "epoch": trainer.current_epoch}, trainer.global_step)
        hp_metrics = {"hp/best_val_dice": best_dice, "hp/best_epoch": best_epoch}
        hp_metrics |= {f"hp/test_{k}": v for k, v in evaluation.summary.items()}
        trainer.logger.log_hyperparams(_hparams(cli), hp_metrics)
        trainer.logger.save()
    print(f"best checkpoint    {best}")
    print(f"best weights       {pth}")
    print(f"curves             tensorboard --logdir {cli.config.log_dir}  ({cli.run.log_dir})")


def _hparams(cli: TrainCLI) -> dict[str, Any]:
    """The run's settings as flat TensorBoard HParams (plain values only)."""
    flat: dict[str, Any] = {"arch": cli.config.arch, "seed": cli.config.seed_everything}
    for prefix, values in (("model", cli.model.hparams), ("data", cli.datamodule.hparams)):
        flat |= {f"{prefix}.{k}": v for k, v in values.items() if not k.startswith("_")}
    for key in ("max_epochs", "precision", "accumulate_grad_batches", "gradient_clip_val"):
        flat[f"trainer.{key}"] = cli.config.trainer.get(key)
    flat["trainer.precision"] = str(cli.trainer.precision)
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}


def main(argv: list[str] | None = None) -> int:
    verbosity = {"verbose": verbose_requested(argv)}  # until the config files are read
    body = functools.partial(_train, verbosity=verbosity)
    return run_command("petseg-train", argv, body, verbose=lambda: verbosity["verbose"])
