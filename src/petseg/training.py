"""Training as a function: ``petseg.train(...)`` fits a model, tests its best checkpoint and
returns the run folder and its scores. ``petseg-train``, ``petseg-sweep`` and ``petseg-bench`` all
call it.

It is LightningCLI over ``SegmentationModule`` and ``PetDataModule``, so a run from Python takes
exactly the options (and the checks, and the YAML configs) of the command line. Each run owns
``<save_dir>/<arch>/version_N/`` (checkpoints, the ``.pth``, the test report) and
``<log_dir>/<arch>/version_N/`` (TensorBoard), with the same N (``petseg.runs``). After fitting,
the best checkpoint is scored on the test split by the same code as ``petseg-test``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import set_loader
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from petseg.callbacks import BestCheckpoint
from petseg.checkpoint_io import RunCheckpointIO
from petseg.checkpoints import MODEL_OPTIONS, load_checkpoint
from petseg.data import PetDataModule
from petseg.data.download import ensure_data
from petseg.errors import PetsegError, first_line
from petseg.files import remove_stale_temporaries, writable_folder
from petseg.interrupts import SignalGuard
from petseg.models import Arch
from petseg.module import SegmentationModule
from petseg.options import bounded_yaml_load, check_trainer_options
from petseg.precision import auto_precision
from petseg.quiet import quiet_lightning
from petseg.runs import (
    BEST,
    LAST,
    Run,
    discard_if_unused,
    existing_run,
    new_run,
    newest_checkpoint,
    run_of_checkpoint,
)
from petseg.tensorboard import EPOCH_TAG

RUN_VERSION_ENV = "PETSEG_RUN_VERSION"  # hands rank 0's run number to DDP processes it launches


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced.

    ``best_*`` and ``weights`` are None when no validation ran; ``test`` is empty when the test
    split was not scored (``test=False``, or a process other than rank 0). ``val_dice`` holds
    the validation Dice of every epoch, in order.
    """

    run: Run
    best_checkpoint: Path | None = None
    weights: Path | None = None
    best_epoch: int | None = None
    best_val_dice: float | None = None
    test: dict[str, float] = field(default_factory=dict)
    val_dice: list[float] = field(default_factory=list)


class ValDiceHistory(Callback):
    """Collects the validation Dice of every epoch (not of the sanity check)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run before the module logs its epoch metrics
        if not trainer.sanity_checking and "val/dice" in trainer.callback_metrics:
            self.values.append(float(trainer.callback_metrics["val/dice"]))


class PetsegLogger(TensorBoardLogger):
    """TensorBoard logger whose HParams tab lists petseg's options only (no ``_instantiator``),
    and a run's summary numbers (best valid Dice, test scores) beside them: one value each, so
    they go to the HParams tab and not, as single-point charts, to the Scalars tab."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        # TensorBoard sorts its groups by name and opens the first two: Lightning's `epoch` and
        # the learning rate monitor's `lr-AdamW` go into the train group, so train and val open
        super().log_metrics({_tag(name): value for name, value in metrics.items()}, step)

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None) -> None:
        if not isinstance(params, dict):
            params = vars(params) if hasattr(params, "__dict__") else dict(params)
        clean = {k: v for k, v in params.items() if not str(k).startswith("_")}
        super().log_hyperparams(clean, metrics)

    def log_summary(self, params: dict[str, Any], results: dict[str, float]) -> None:
        """The run's settings and results as one HParams session (no scalars are written)."""
        from torch.utils.tensorboard.summary import hparams

        writer = self.experiment._get_file_writer()
        for summary in hparams({**params, **results}, {}):  # experiment, session start, end
            writer.add_summary(summary)
        self.experiment.flush()


def _tag(name: str) -> str:
    """The TensorBoard tag of a metric Lightning logs: ``epoch`` and ``lr-<optimizer>`` in the
    train group, the rest (``train/dice``, ``val/loss``) as they are."""
    if name == "epoch":
        return EPOCH_TAG
    return "train/lr" if name.startswith("lr-") else name


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

    def __init__(
        self,
        *args,
        verbosity: dict[str, bool],
        extra_callbacks: Sequence[Callback] = (),
        extra_hparams: Mapping[str, Any] | None = None,
        **kwargs,
    ) -> None:
        self.verbosity = verbosity
        self.extra_callbacks = list(extra_callbacks)
        self.extra_hparams = dict(extra_hparams or {})
        self.history = ValDiceHistory()
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        self.verbosity["verbose"] = bool(self.config.verbose)
        if not self.config.verbose:  # before seeding: Lightning's first line is "Seed set to"
            quiet_lightning()

    def add_arguments_to_parser(self, parser) -> None:
        # --help-all: petseg's options and the model's and data's before the Trainer's 360 lines
        parser._action_groups.remove(trainer := parser.groups["trainer"])
        parser._action_groups.append(trainer)
        parser.usage = "petseg-train [--arch ARCH] [--config FILE] [--OPTION VALUE ...]"
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
        check_trainer_options(cfg.trainer)
        writable_folder(cfg.save_dir, "--save_dir")
        writable_folder(cfg.log_dir, "--log_dir")
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
        best = BestCheckpoint(self.run.ckpt_dir)  # weights only; also as best.ckpt
        # Lightning's save_last only follows top-k saves; this rewrites last.ckpt every epoch.
        last = ModelCheckpoint(
            dirpath=self.run.ckpt_dir, filename=Path(LAST).stem, enable_version_counter=False
        )
        self.guard = SignalGuard(self.run.ckpt_dir / LAST)
        callbacks = [best, last, LearningRateMonitor("epoch")]
        callbacks += [StartLine(self.run), self.history, self.guard, *self.extra_callbacks]
        self.trainer_defaults["callbacks"] = callbacks
        kwargs["plugins"] = _with_checkpoint_io(trainer_cfg.get("plugins"), self.run.ckpt_dir)
        remove_stale_temporaries(self.run.ckpt_dir)  # what a killed save left in a resumed run
        try:
            return super().instantiate_trainer(**kwargs)
        except Exception as err:
            if self.resume is None:
                discard_if_unused(self.run)  # a Trainer that cannot start leaves no folders
            if isinstance(err, (ValueError, TypeError, ImportError, MisconfigurationException)):
                raise PetsegError(
                    f"the Trainer cannot start with these --trainer options: {first_line(err)}"
                ) from None
            raise

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


def _with_checkpoint_io(plugins: Any, run_dir: Path) -> list[Any]:
    """The Trainer's plugins with ``RunCheckpointIO`` (atomic writes, checked resumes)."""
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
    from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO

    if any(isinstance(p, CheckpointIO) for p in plugins):
        raise PetsegError("--trainer.plugins: petseg-train writes its checkpoints itself; "
                          "pass no CheckpointIO plugin")  # fmt: skip
    return [*plugins, RunCheckpointIO(run_dir)]


def _check_resumable(ckpt: dict[str, Any], path: Path, cfg) -> None:
    """The checkpoint must be of ``--arch`` and the same network options as this run."""
    saved = ckpt["hyper_parameters"]
    if "optimizer_states" not in ckpt:
        raise PetsegError(
            f"checkpoint {path} holds the weights only (the best checkpoint), so training cannot "
            f"resume from it; resume from its run's {LAST} (--ckpt_path last)"
        )
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


def as_arguments(options: Mapping[str, Any]) -> list[str]:
    """``{"arch": "unet", "model": {"lr": 0.01}, "data.augment": "strong"}`` as command-line
    arguments (``--arch=unet --model.lr=0.01 --data.augment=strong``): nested mappings become
    dotted keys, values are written as YAML scalars (``true``, ``null``), lists as JSON."""
    args: list[str] = []
    for key, value in options.items():
        if isinstance(value, Mapping):
            args += as_arguments({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, bool) or value is None:
            args.append(f"--{key}={json.dumps(value)}")
        elif isinstance(value, (list, tuple)):
            args.append(f"--{key}={json.dumps(list(value))}")
        else:
            args.append(f"--{key}={value}")
    return args


class _Parsed(Exception):
    """Raised by ``_ParseOnlyCLI`` once the arguments are parsed (and checked)."""


class _ParseOnlyCLI(TrainCLI):
    """``TrainCLI`` that stops after parsing and building the model and data module (whose
    ``__init__`` check their options); with ``checks``, after the checks of output folders, the
    data root and ``--ckpt_path`` too. It claims no run folder and trains nothing."""

    checks = False

    def before_instantiate_classes(self) -> None:
        if self.checks:
            super().before_instantiate_classes()
        self.parser.instantiate_classes(self.config)
        raise _Parsed(self.config)


def check_args(args: Sequence[str], *, checks: bool = False) -> Any:
    """Parse ``petseg-train`` arguments and build the model and data module without training;
    return the parsed config.

    Raises jsonargparse's ``ArgumentError`` for an option ``petseg-train`` refuses, and
    ``PetsegError`` for a value the model or data module refuses; with ``checks``, also for
    unusable output folders, data or ``--ckpt_path``.
    """
    cls = type("_CheckingCLI", (_ParseOnlyCLI,), {"checks": checks})
    try:
        _make_cli(list(args), {"verbose": False}, (), None, cls=cls)
    except _Parsed as parsed:
        return parsed.args[0]
    raise AssertionError("unreachable: the CLI stops after parsing")


def _make_cli(
    argv: list[str] | None,
    verbosity: dict[str, bool],
    callbacks: Sequence[Callback],
    hparams: Mapping[str, Any] | None,
    cls: type[TrainCLI] = TrainCLI,
) -> TrainCLI:
    set_loader("yaml", bounded_yaml_load)  # a small config must not expand to gigabytes
    return cls(
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
        extra_callbacks=callbacks,
        extra_hparams=hparams,
    )


def train(
    args: Sequence[str] | Mapping[str, Any] | None = (),
    *,
    callbacks: Sequence[Callback] = (),
    test: bool = True,
    hparams: Mapping[str, Any] | None = None,
    _verbosity: dict[str, bool] | None = None,
) -> TrainResult:
    """Train a model as ``petseg-train`` does, and return its run folder and scores.

    Args:
        args: ``petseg-train``'s options, as command-line arguments
            (``["--arch", "unet", "--config", "configs/quick.yaml"]``) or as a mapping
            (``{"arch": "unet", "model": {"lr": 0.01}}``, see ``as_arguments``). Every check of
            the command line applies; a bad option raises ``PetsegError`` or jsonargparse's
            ``ArgumentError`` before a run folder is made. ``None`` reads ``sys.argv``.
        callbacks: extra Lightning callbacks (a sweep's pruning callback, say).
        test: score the best checkpoint on the test split and write the report in
            ``<run>/test/``, as ``petseg-train`` does.
        hparams: extra TensorBoard HParams for the run (``petseg-sweep`` names its study and
            trial there).

    Raises:
        TrainingInterrupted: on SIGINT or SIGTERM (``petseg.interrupts``); its ``last`` is the
            checkpoint to resume from.

    Example:
        >>> from petseg import train
        >>> result = train({"arch": "unet", "data": {"root": "data"}, "trainer": {"max_epochs": 3}})
        >>> result.run.ckpt_dir, result.best_val_dice, result.test["dice"]
    """
    # None: the process's own command line (LightningCLI reads sys.argv; passing a copy of it
    # would make Lightning warn that arguments came both ways)
    if isinstance(args, Mapping):
        argv: list[str] | None = as_arguments(args)
    else:
        argv = None if args is None else list(args)
    verbosity = _verbosity if _verbosity is not None else {"verbose": False}
    cli = _make_cli(argv, verbosity, callbacks, hparams)
    trainer, data = cli.trainer, cli.datamodule
    with cli.guard:  # SIGINT, SIGTERM: TrainingInterrupted, with a last.ckpt when it can
        try:
            if test and trainer.is_global_zero:  # scored after the fit: a bad file stops it now
                data.check_split("test")
            trainer.fit(cli.model, datamodule=data, ckpt_path=cli.resume, weights_only=True)
        except BaseException:
            if cli.resume is None and trainer.is_global_zero:
                discard_if_unused(cli.run)  # a run that failed before training leaves no folders
            raise
        result = TrainResult(cli.run, val_dice=list(cli.history.values))
        if trainer.is_global_zero:
            result = _finish(cli, trainer, result, test)
    return result


def _finish(cli: TrainCLI, trainer: L.Trainer, result: TrainResult, test: bool) -> TrainResult:
    """Export the best weights, score them on the test split, log and print the results."""
    from dataclasses import replace

    from petseg.checkpoints import export_weights
    from petseg.report import score_test_split
    from petseg.segmenter import Segmenter

    callback = trainer.checkpoint_callback
    best = callback.best_model_path
    if not best:
        print(f"no validation ran, so there is no best checkpoint; see {cli.run.ckpt_dir}")
        return result
    pth = export_weights(best, cli.run.ckpt_dir / f"{cli.config.arch}.pth")
    best_dice = float(callback.best_model_score)
    best_epoch = int(load_checkpoint(best)["epoch"])
    print(f"best epoch         {best_epoch} (val/dice {best_dice:.4f})")
    summary: dict[str, float] = {}
    if test:
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
        summary = {k: float(v) for k, v in evaluation.summary.items()}
    if isinstance(trainer.logger, PetsegLogger):
        # named to sort first: the HParams table shows the first five columns by name
        results = {"best_val_dice": best_dice, "best_epoch": best_epoch}
        results |= {f"best_test_{k}": summary[k] for k in ("dice", "iou") if k in summary}
        trainer.logger.log_summary(_hparams(cli), results)
    stable = cli.run.ckpt_dir / BEST  # the same file as `best`, under a name that stays
    print(f"best checkpoint    {stable} (= {Path(best).name}, weights only)")
    print(f"best weights       {pth}")
    print(f"last checkpoint    {cli.run.ckpt_dir / LAST} (resume: --ckpt_path last)")
    print(f"test it            petseg-test --ckpt {shlex.quote(str(stable))}")
    print(f"see the curves     tensorboard --logdir {shlex.quote(str(cli.config.log_dir))}")
    return replace(
        result,
        best_checkpoint=Path(best),
        weights=Path(pth),
        best_epoch=best_epoch,
        best_val_dice=best_dice,
        test=summary,
    )


def _hparams(cli: TrainCLI) -> dict[str, Any]:
    """The run's settings as flat TensorBoard HParams (plain values only)."""
    flat: dict[str, Any] = {"arch": cli.config.arch, "seed": cli.config.seed_everything}
    for prefix, values in (("model", cli.model.hparams), ("data", cli.datamodule.hparams)):
        flat |= {f"{prefix}.{k}": v for k, v in values.items() if not k.startswith("_")}
    for key in ("max_epochs", "precision", "accumulate_grad_batches", "gradient_clip_val"):
        flat[f"trainer.{key}"] = cli.config.trainer.get(key)
    flat["trainer.precision"] = str(cli.trainer.precision)
    flat |= cli.extra_hparams
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
